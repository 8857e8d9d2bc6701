"""Reports render from real run and eval folders, with non-empty PNG figures."""
import json
import math
import re

import numpy as np
import pytest

from test_evaluate import ROWS, STANDARD, tiny_checkpoint, write_data
from blockprune.errors import UserError
from blockprune.report import approximate, build, importance_grid, markdown_table, table_row, load_folder

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A tiny checkpoint, a BlockPruner run on it with its evaluation, and the dense model's evaluation."""
    from blockprune.api import prune
    from blockprune.evaluate import evaluate, load_subject

    root = tmp_path_factory.mktemp("report")
    ckpt = tiny_checkpoint(root / "ckpt")
    data = write_data(root / "data")
    calib = root / "calib.txt"
    calib.write_text("\n\n".join(ROWS))
    prune(str(ckpt), root / "run", num_blocks=3, calibration=str(calib), seqlen=16, export=False, progress=False)
    for target, out in ((root / "run", root / "run" / "eval"), (ckpt, root / "dense-eval")):
        evaluate(load_subject(str(target)), ["wikitext2"], out=out, seqlen=16, data_dir=data, latency_repeats=1,
                 latency_tokens=4, progress=False)
    return root


def test_report_renders_from_a_run_folder(folders, tmp_path):
    md = build([folders / "run", folders / "dense-eval"], tmp_path / "report")
    text = md.read_text()
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    pngs = sorted((tmp_path / "report" / "figures").glob("*.png"))
    assert {p.name for p in pngs} == {"removal_path.png", "run_importance.png", "run_architecture.png"}
    import matplotlib.image as mpimg
    for p in pngs:
        assert p.read_bytes()[:8] == PNG and p.stat().st_size > 2000
        img = mpimg.imread(p)
        assert img.shape[0] > 50 and img.shape[1] > 50 and img.std() > 0  # not a blank canvas
        assert f"figures/{p.name}" in text
    labels = [r["label"] for r in report["table"]]
    assert labels == ["run", "dense-eval"]
    assert [r["method"] for r in report["table"]] == ["blockpruner", "dense"]
    run_row = report["table"][0]
    assert run_row["ratio"] > 0 and math.isfinite(run_row["wikitext2"])
    assert "| run | blockpruner |" in text and "| dense-eval | dense | 0.0% |" in text
    assert len(report["runs"][0]["path_ratio"]) == 4  # dense + three removal steps


@pytest.mark.parametrize("order", ["run first", "eval first"])
def test_a_run_and_its_own_eval_folder_are_one_model(folders, tmp_path, order):
    dirs = [folders / "run", folders / "run" / "eval", folders / "dense-eval", folders / "dense-eval"]
    if order == "eval first":
        dirs = dirs[1::-1] + dirs[2:]
    md = build(dirs, tmp_path / "report")
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert [r["label"] for r in report["table"]] == ["run", "dense-eval"]
    cost_rows = [line for line in md.read_text().split("### Cost")[1].splitlines() if line.startswith("| ")]
    assert [line.split(" | ")[0] for line in cost_rows[1:]] == ["| run", "| dense-eval"]


def test_importance_grid_marks_each_steps_choice(folders):
    plan = load_folder(folders / "run").plan
    grids, chosen = importance_grid(plan, 4)
    assert len(grids) == len(plan.steps) == 3
    for step, g, c in zip(plan.steps, grids, chosen):
        # one coloured cell per candidate block with a final score (racing's early leavers and two-precision's
        # fast-only scores are drawn apart)
        assert (~np.isnan(g)).sum() == len(set(step["scores"]) - approximate(step))
        kind, layer = step["removed"].split(".")
        assert c == [(0 if kind == "attn" else 1, int(layer))]
    # a removed block is no longer a candidate at later steps
    first = plan.steps[0]["removed"]
    r, l = chosen[0][0]
    assert all(math.isnan(g[r, l]) for g in grids[1:]), first


def test_table_is_shaped_like_blockpruner_table_1():
    ev = {"subject": {"method": "blockpruner"}, "cost": {"ratio": 0.25},
          "perplexity": {"wikitext2": {"ppl": 12.345, "windows": 8}},
          # as lm-eval reports them: WinoGrande has acc alone, the others acc_norm too (the average takes it)
          "zero_shot": {t: {"acc": 0.5, "docs": 100} | ({} if t == "winogrande" else {"acc_norm": 0.6})
                        for t in STANDARD},
          "average": {"value": 0.58, "metrics": {t: "acc_norm" for t in STANDARD} | {"winogrande": "acc"}}}
    from blockprune.report import LoadedFolder
    from pathlib import Path
    row = table_row(LoadedFolder("m", Path("."), None, ev))
    table = markdown_table([row])
    assert table.splitlines()[0] == ("| Model | Method | Ratio | WikiText-2 PPL | PIQA | WinoGrande | HellaSwag | ARC-e | "
                                     "ARC-c | Avg. |")
    assert table.splitlines()[2] == "| m | blockpruner | 25.0% | 12.35 | 60.00 | 50.00 | 60.00 | 60.00 | 60.00 | 58.00 |"


def test_table_shows_ptb_beside_wikitext2_when_measured():
    from pathlib import Path

    from blockprune.report import LoadedFolder
    base = {"subject": {"method": "dense"}, "zero_shot": {}, "average": None}
    with_ptb = {**base, "perplexity": {"wikitext2": {"ppl": 20.0, "windows": 8}, "ptb": {"ppl": 51.25, "windows": 4}}}
    without = {**base, "perplexity": {"wikitext2": {"ppl": 30.0, "windows": 8}}}
    rows = [table_row(LoadedFolder("a", Path("."), None, with_ptb)), table_row(LoadedFolder("b", Path("."), None, without))]
    lines = markdown_table(rows).splitlines()
    assert lines[0].startswith("| Model | Method | Ratio | WikiText-2 PPL | PTB PPL | PIQA |")
    assert lines[2].startswith("| a | dense | 0.0% | 20.00 | 51.25 |") and lines[3].startswith("| b | dense | 0.0% | 30.00 | – |")
    assert "PTB" not in markdown_table(rows[1:]).splitlines()[0]  # no column where nothing measured it


def eval_folder(path, method, acc, tasks=STANDARD):
    path.mkdir()
    record = {"subject": {"method": method}, "cost": None, "perplexity": {"wikitext2": {"ppl": 20.0, "windows": 8}},
              "zero_shot": {t: {"acc": acc - 0.1, "acc_norm": acc, "docs": 100} for t in tasks}, "average": None}
    (path / "eval.json").write_text(json.dumps(record))
    return path


def test_eval_only_report_draws_accuracy_per_task_per_model(tmp_path):
    import matplotlib.image as mpimg

    dirs = [eval_folder(tmp_path / "dense", "dense", 0.7), eval_folder(tmp_path / "bp", "blockpruner", 0.5)]
    md = build(dirs, tmp_path / "report").read_text()
    png = tmp_path / "report" / "figures" / "accuracy.png"
    assert png.read_bytes()[:8] == PNG and mpimg.imread(png).std() > 0
    assert [p.name for p in (tmp_path / "report" / "figures").iterdir()] == ["accuracy.png"]
    assert "![zero-shot accuracy per task](figures/accuracy.png)" in md
    assert json.loads((tmp_path / "report" / "report.json").read_text())["figures"] == {"accuracy": "figures/accuracy.png"}


def test_a_report_with_nothing_to_draw_makes_no_figures_folder(tmp_path):
    build([eval_folder(tmp_path / "dense", "dense", 0.7, tasks=())], tmp_path / "report")
    assert (tmp_path / "report" / "report.md").exists() and not (tmp_path / "report" / "figures").exists()


def test_cost_table_shows_load_and_flags_noisy_latency(tmp_path):
    cost = {"params": 1000, "ratio": 0.25, "kv_cache_bytes_per_token": 64, "peak_memory": {"bytes": 2**20, "what": "rss"},
            "latency": {"mean_s": 28.0, "stdev_s": 17.7, "load_average": [3.5, 3.0, 2.0], "cpus": 2,
                        "caveat": "measured under load: spread 63% of the mean, load average 3.5 on 2 CPUs"}}
    folder = eval_folder(tmp_path / "bp", "blockpruner", 0.5)
    record = json.loads((folder / "eval.json").read_text())
    (folder / "eval.json").write_text(json.dumps({**record, "cost": cost}))
    md = build([folder], tmp_path / "report").read_text()
    assert "| bp | 1,000 | 25.0% | 28.000 ± 17.700 s ⚠ | 3.5 (2) |" in md
    assert "⚠ Latency bp: measured under load: spread 63% of the mean, load average 3.5 on 2 CPUs" in md


def test_report_refuses_a_folder_without_results(tmp_path):
    with pytest.raises(UserError, match="neither plan.json, eval.json nor heal.json"):
        build([tmp_path], tmp_path / "out")


def test_report_cli(folders, tmp_path, capsys):
    from blockprune.cli import main

    assert main(["report", str(folders / "run"), "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "report.md").exists() and "report.md" in capsys.readouterr().out


def _plan(steps, dense=None, **kw):
    from blockprune.plan import Plan

    return Plan(method="blockpruner", model={"layers": 3}, calibration={}, options={"scorer": "racing", "racing_z": 2.5},
                dense=dense or {"ppl": 10.0}, steps=steps, **kw)


RACED = [
    # attn.1 left the race early with a lower partial-window perplexity than the removed attn.0's full score
    {"step": 1, "removed": "attn.0", "ppl": 11.0, "ratio": 0.1,
     "scores": {"attn.0": 11.0, "attn.1": 9.5, "attn.2": 11.2, "mlp.0": 1e5, "mlp.1": 30.0, "mlp.2": 11.1},
     "partial": {"attn.1": 1, "mlp.1": 1}},
    {"step": 2, "removed": "mlp.2", "ppl": 12.0, "ratio": 0.2,
     "scores": {"attn.1": 12.5, "attn.2": 13.0, "mlp.0": 2e5, "mlp.1": 40.0, "mlp.2": 12.0}, "partial": {}},
]


def test_the_heatmap_under_racing_marks_early_leavers_and_never_shows_them_better(tmp_path):
    from blockprune.report import CLIP, importance_cells, plot_importance

    grids, chosen = importance_grid(_plan(RACED), 3)  # the grid the figure colours
    assert chosen[0] == [(0, 0)] and np.isnan(grids[0][0, 1]) and np.nanmin(grids[0]) == grids[0][0, 0]
    cells = importance_cells(_plan(RACED), 3)
    first = cells[0]
    assert first.early[0, 1] and first.early[1, 1] and np.isnan(first.rel[0, 1]) and np.isnan(first.rel[1, 1])
    assert first.rel[0, 0] == 0.0  # the removed unit is the step's best complete candidate
    assert np.nanmin(first.rel) == 0.0  # nothing is drawn as better than it
    assert first.rel[1, 0] == pytest.approx(math.log(CLIP["ppl"]))  # mlp.0 (1e5) is clipped, not the scale
    assert first.rel[0, 2] == pytest.approx(math.log(11.2 / 11.0))  # a near-tie keeps its own colour
    assert cells[1].removed_before[0, 0] and not cells[1].removed_before.sum() - 1
    import matplotlib.image as mpimg
    raced, plain = tmp_path / "raced.png", tmp_path / "plain.png"
    plot_importance(_plan(RACED), 3, raced)
    plot_importance(_plan([{**s, "partial": {}} for s in RACED]), 3, plain)
    assert raced.read_bytes()[:8] == PNG and mpimg.imread(raced).std() > 0
    assert raced.read_bytes() != plain.read_bytes()


def test_the_removal_path_names_each_unit_carries_validation_and_plain_ticks(monkeypatch, tmp_path):
    from pathlib import Path

    from blockprune import report
    from blockprune.report import LoadedFolder

    shown = {}

    def capture(fig, path):
        fig.canvas.draw()
        ax = fig.axes[0]
        shown.update(ticks=[t.get_text() for t in ax.get_yticklabels() if t.get_text()],
                     texts=[t.get_text() for t in ax.texts], lines=len(ax.get_lines()),
                     legend=[t.get_text() for t in ax.get_legend().get_texts()])
    monkeypatch.setattr(report.figures, "save_png", capture)  # the module that draws saves through its own name
    steps = [{**s, "validation_ppl": v} for s, v in zip(RACED, (11.8, 13.9))]
    plan = _plan(steps, dense={"ppl": 10.0, "validation_ppl": 10.4}, validation={"source": "alpaca (held out)"})
    report.plot_paths([LoadedFolder("run", Path("."), plan)], tmp_path / "p.png")
    assert shown["texts"] == ["attn.0", "mlp.2"]
    assert shown["lines"] == 2 and any("validation" in t for t in shown["legend"])
    assert shown["ticks"] and all(re.fullmatch(r"\d+(\.\d+)?", t) for t in shown["ticks"]), shown["ticks"]

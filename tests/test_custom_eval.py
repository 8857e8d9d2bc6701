"""Bring-your-own evaluation: task YAMLs from --include-path, --num-fewshot, perplexity of a local text
(ppl:FILE), and bad input refused before the model loads with nothing written."""
import json
import os
import textwrap
from pathlib import Path

import pytest

from conftest import save_tiny_checkpoint

REPO = Path(__file__).resolve().parents[1]
COLOURS = [("grass", ["green", "red", "blue"], 0), ("sky", ["yellow", "blue", "black"], 1),
           ("snow", ["brown", "pink", "white"], 2), ("coal", ["black", "white", "orange"], 0),
           ("blood", ["blue", "red", "grey"], 1), ("sun", ["purple", "green", "yellow"], 2),
           ("milk", ["white", "black", "red"], 0), ("night", ["gold", "dark", "light"], 1)]


def write_task(folder: Path, name: str = "colours", extra: str = "") -> Path:
    """A tiny multiple-choice task in lm-eval's own YAML, reading a JSONL written beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / f"{name}.jsonl"
    data.write_text("".join(json.dumps({"thing": t, "choices": c, "answer": a}) + "\n" for t, c, a in COLOURS))
    (folder / f"{name}.yaml").write_text(textwrap.dedent(f"""\
        task: {name}
        dataset_path: json
        dataset_kwargs:
          data_files:
            test: {data}
        test_split: test
        output_type: multiple_choice
        doc_to_text: "What colour is {{{{thing}}}}? Answer:"
        doc_to_choice: "{{{{choices}}}}"
        doc_to_target: answer
        metric_list:
          - metric: acc
          - metric: acc_norm
        metadata:
          version: 1.0
        """) + extra)
    return folder


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return str(save_tiny_checkpoint(tmp_path_factory.mktemp("custom") / "tiny"))


def _direct(ckpt: str, include: Path, task: str, shots: int) -> dict:
    """The same task through lm_eval.simple_evaluate itself: its own HFLM and TaskManager."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from blockprune.evaluate import load_subject

    s = load_subject(ckpt)
    lm = HFLM(pretrained=s.model, tokenizer=s.tokenizer, batch_size=16)
    return simple_evaluate(model=lm, tasks=[task], num_fewshot=shots, task_manager=TaskManager(include_path=str(include)),
                           bootstrap_iters=0)["results"][task]


@pytest.mark.parametrize("shots", [0, 2])
def test_custom_task_through_cli_equals_lm_eval(ckpt, tmp_path, shots):
    from blockprune.cli import main

    include = write_task(tmp_path / "tasks")
    out = tmp_path / "ev"
    assert main(["eval", ckpt, "--tasks", "colours", "--include-path", str(include), "--num-fewshot", str(shots),
                 "--no-cost", "--no-shared-prompts", "--out", str(out)]) == 0
    saved = json.loads((out / "eval.json").read_text())
    got = saved["zero_shot"]["colours"]
    want = _direct(ckpt, include, "colours", shots)
    assert got["acc"] == want["acc,none"] and got["acc_norm"] == want["acc_norm,none"]
    assert got["docs"] == len(COLOURS)
    assert saved["settings"]["num_fewshot"] == shots and got["num_fewshot"] == shots
    # recorded relative to the working directory: a record names no absolute path of its machine
    assert saved["settings"]["include_path"] == [os.path.relpath(include.resolve())]
    assert got["data"] == os.path.relpath(include.resolve() / "colours.yaml")
    assert saved["average"] is None  # the paper's five-task average needs its five tasks


def test_fewshot_changes_the_prompts(ckpt, tmp_path):
    """--num-fewshot reaches lm-eval: two examples make every request's context longer."""
    from blockprune.evaluate import evaluate, load_subject, prepare

    include = write_task(tmp_path / "tasks")
    subject = load_subject(ckpt)
    contexts = {}
    for shots in (0, 2):
        prepared = prepare(["colours"], include_path=include)
        evaluate(subject, prepared, num_fewshot=shots, with_cost=False, progress=False)
        contexts[shots] = [i.arguments[0] for i in prepared.harness["colours"][0].instances]
    assert len(contexts[0]) == len(contexts[2]) == 3 * len(COLOURS)
    assert all(b.endswith(a) and len(b) > len(a) for a, b in zip(contexts[0], contexts[2]))


def test_local_text_perplexity_equals_the_perplexity_module(ckpt, tmp_path):
    from blockprune.cli import main
    from blockprune.data import load_windows
    from blockprune.evaluate import load_subject
    from blockprune.window_nll import perplexity
    from blockprune.view import BlockView

    text = tmp_path / "notes.txt"
    text.write_text("Pruned models are judged on the text their users care about.\n" * 12)
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"text": f"Row {i}: a held-out sentence of the domain corpus."}) + "\n"
                            for i in range(10)))
    out = tmp_path / "ev"
    assert main(["eval", ckpt, "--tasks", f"wikitext2,ppl:{text},ppl:{rows}", "--seqlen", "32", "--no-cost",
                 "--data-dir", str(_wikitext(tmp_path)), "--out", str(out)]) == 0
    saved = json.loads((out / "eval.json").read_text())["perplexity"]
    s = load_subject(ckpt)
    for f in (text, rows):
        w = load_windows(str(f), s.tokenizer, 32)
        r = saved[f"ppl:{f}"]
        assert r["windows"] == len(w) >= 3 and r["text_tokens"] == w.tokens and r["sha256"] == w.sha256()
        assert r["ppl"] == pytest.approx(perplexity(BlockView(s.model), w), rel=1e-6)
        assert r["path"] == os.path.relpath(f)  # relative to the working directory: no absolute path recorded
    assert set(saved["ppl:" + str(text)]) - {"path"} == set(saved["wikitext2"])  # the built-in sets' record


def _wikitext(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    (d / "perplexity").mkdir(parents=True)
    (d / "perplexity" / "wikitext2_raw_test.jsonl").write_text(
        "".join(json.dumps({"text": " = Heading = \nSome article text about things ."}) + "\n" for _ in range(10)))
    return d


def test_worked_example_through_public_api(ckpt, tmp_path, monkeypatch):
    """The README's example: the task YAML and JSONL shipped in examples/custom_task, three lines of API."""
    import blockprune

    monkeypatch.chdir(REPO)  # the YAML's data_files is relative to the working directory, as lm-eval reads it
    record = blockprune.evaluate_model(ckpt, ["capitals"], include_path="examples/custom_task", num_fewshot=1,
                                       out=tmp_path / "ev")
    got = record["zero_shot"]["capitals"]
    assert got["docs"] == 10 and 0 <= got["acc"] <= 1 and got["num_fewshot"] == 1
    assert got["data"] == "examples/custom_task/capitals.yaml"
    assert json.loads((tmp_path / "ev" / "eval.json").read_text())["zero_shot"]["capitals"]["acc"] == got["acc"]


def _bad_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    good = write_task(tmp / "good")
    broken = tmp / "broken"
    broken.mkdir()
    (broken / "oops.yaml").write_text("task: oops\n  dataset_path: [\n")
    rejected = write_task(tmp / "rejected", "wrongtype", "")
    y = rejected / "wrongtype.yaml"
    y.write_text(y.read_text().replace("output_type: multiple_choice", "output_type: multiple_guess"))
    nodata = write_task(tmp / "nodata", "lost")
    (nodata / "lost.jsonl").unlink()
    (tmp / "corpus.md").write_text("some text\n")
    (tmp / "eval").mkdir()
    return {
        "missing folder": (["--tasks", "colours", "--include-path", str(tmp / "nowhere")], str(tmp / "nowhere")),
        "unreadable yaml": (["--tasks", "oops", "--include-path", str(broken)], "oops.yaml"),
        "rejected yaml": (["--tasks", "wrongtype", "--include-path", str(rejected)], "wrongtype"),
        "missing data file": (["--tasks", "lost", "--include-path", str(nodata)], "lost"),
        "unknown task": (["--tasks", "colors", "--include-path", str(good)], "close matches: colours"),
        "text path without ppl:": (["--tasks", str(tmp / "notes.txt")], "write ppl:"),
        "missing text": (["--tasks", f"ppl:{tmp / 'none.txt'}"], "none.txt"),
        "unsupported text": (["--tasks", f"ppl:{tmp / 'corpus.md'}"], ".md"),
        "no offline copy": (["--tasks", "boolq", "--data-dir", str(tmp)], str(tmp / "eval" / "boolq_validation.jsonl")),
        "negative few-shot": (["--tasks", "colours", "--include-path", str(good), "--num-fewshot", "-1"], "--num-fewshot"),
    }


@pytest.mark.parametrize("case", ["missing folder", "unreadable yaml", "rejected yaml", "missing data file",
                                  "unknown task", "text path without ppl:", "missing text", "unsupported text",
                                  "no offline copy", "negative few-shot"])
def test_bad_input_exits_2_before_the_model_loads(ckpt, tmp_path, monkeypatch, capsys, case):
    import blockprune.evaluate
    from blockprune.cli import main
    from lm_eval.api.task import ConfigurableTask

    def offline(self, *a, **k):  # this machine has no hub: fail at once rather than after retries
        raise ConnectionError("Couldn't reach the hub")
    original = ConfigurableTask.download
    monkeypatch.setattr(ConfigurableTask, "download", lambda self, dataset_kwargs=None, **k: (
        original(self, dataset_kwargs, **k) if self.config.dataset_path == "json" else offline(self)))

    def no_model(*a, **k):
        raise AssertionError("the model was loaded before the tasks were checked")
    monkeypatch.setattr(blockprune.evaluate, "load_subject", no_model)
    args, named = _bad_inputs(tmp_path)[case]
    out = tmp_path / "ev"
    assert main(["eval", ckpt, "--no-cost", "--out", str(out)] + args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("blockprune: error:") and named in err[0], err
    assert not out.exists()


def test_failed_evaluation_writes_no_eval_json(ckpt, tmp_path, capsys):
    """A failure before the first figure (here: windows longer than the model's context) leaves no file."""
    from blockprune.cli import main

    out = tmp_path / "ev"
    assert main(["eval", ckpt, "--tasks", "wikitext2", "--seqlen", "4096", "--no-cost",
                 "--data-dir", str(_wikitext(tmp_path)), "--out", str(out)]) == 2
    assert "above the model's context" in capsys.readouterr().err
    assert not (out / "eval.json").exists()


def test_reports_and_compare_show_custom_columns(tmp_path):
    from blockprune.compare import markdown
    from blockprune.report import LoadedFolder, markdown_table, table_row

    # as lm-eval reports them: WinoGrande has acc alone, the others acc_norm too (the average takes it)
    zs = {t: {"acc": 0.5, "docs": 10} | ({} if t == "winogrande" else {"acc_norm": 0.6})
          for t in ("piqa", "winogrande", "hellaswag", "arc_easy", "arc_challenge")}
    zs["colours"] = {"acc": 0.25, "docs": 8, "num_fewshot": 2}
    zs["facts"] = {"exact_match": 0.125, "docs": 8}
    ev = {"subject": {"method": "dense"}, "settings": {"num_fewshot": 2},
          "perplexity": {"wikitext2": {"ppl": 20.0, "windows": 4}, "ppl:/data/notes.txt": {"ppl": 31.5}},
          "zero_shot": zs, "average": {"value": 0.58}}
    row = table_row(LoadedFolder("dense", tmp_path, evaluation=ev))
    table = markdown_table([row])
    head = table.splitlines()[0]
    assert head.index("Avg.") < head.index("colours") and "facts (exact_match)" in head and "notes.txt PPL" in head
    assert "| 25.00 |" in table and "| 12.50 |" in table and "| 31.50 |" in table and "| 58.00 |" in table
    assert row["num_fewshot"] == 2

    from blockprune.compare import method_row
    result = {"tasks": ["wikitext2", "ppl:/data/notes.txt", "piqa", "winogrande", "hellaswag", "arc_easy",
                        "arc_challenge", "colours"], "target_ratio": 0.2, "model": "m", "calibration": {},
              "eval": {"num_fewshot": 2}, "rows": [method_row("dense", None, ev, None)]}
    md = markdown(result)
    assert "| notes.txt PPL |" in md and "| colours |" in md and "2-shot" in md and "not part of it" in md
    assert "colours PPL" not in md  # a custom task is not mistaken for a perplexity set


def test_compare_runs_custom_tasks_and_refuses_bad_ones_before_searching(ckpt, tmp_path, capsys):
    from blockprune.cli import main

    include = write_task(tmp_path / "tasks")
    calib = tmp_path / "calib.txt"
    calib.write_text("the cat sat on the mat and the model pruned a block of attention " * 4)
    base = ["compare", "--model", ckpt, "--ratio", "0.3", "--methods", "shortgpt", "--calibration", str(calib),
            "--nsamples", "8", "--seqlen", "32", "--include-path", str(include), "--quiet"]
    bad = tmp_path / "bad"
    assert main(base + ["--tasks", "colors", "--out", str(bad)]) == 2
    assert "close matches: colours" in capsys.readouterr().err and not bad.exists()  # no search ran

    out = tmp_path / "cmp"
    assert main(base + ["--tasks", f"ppl:{calib},colours", "--eval-seqlen", "32", "--num-fewshot", "1",
                        "--out", str(out)]) == 0
    result = json.loads((out / "comparison.json").read_text())
    assert result["eval"]["num_fewshot"] == 1 and [r["method"] for r in result["rows"]] == ["dense", "shortgpt"]
    assert all(0 <= r["zero_shot"]["colours"] <= 1 and r["perplexity"][f"ppl:{calib}"] > 0 for r in result["rows"])
    md = (out / "comparison.md").read_text()
    assert "| calib.txt PPL | colours |" in md and "1-shot" in md
    ev = json.loads((out / "shortgpt" / "eval.json").read_text())
    assert ev["zero_shot"]["colours"]["num_fewshot"] == 1

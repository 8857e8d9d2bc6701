"""Healing benchmark (issue 10): SmolLM2-135M pruned by BlockPruner at about 20%, healed with LoRA on
Alpaca, and dense / pruned / healed evaluated side by side. Recorded in bench/RESULTS.md ("Healing").

    OMP_NUM_THREADS=1 nohup python bench/heal/run.py --data-dir ../shared/data > bench/heal/run.log 2>&1 &

Stages, each kept on disk so that re-running the same command resumes:
1. OUT/run: the removal plan. `--plan PATH` copies an existing plan.json; otherwise `--method` runs
   here (default BlockPruner with the racing scorer on ../shared/data/calibration/alpaca_sample16.txt,
   256-token windows, ratio 0.2). The plan is exported to OUT/run/model (the format `auto` picks).
2. OUT/NAME (`--heal-name`, default healed): `blockprune.heal` with the paper's LoRA settings and a
   step budget that fits a small shared CPU (`--steps`, `--max-length`).
3. OUT/run/eval/eval.json (pruned), OUT/NAME/eval/eval.json (healed), OUT/eval/dense/eval.json: `blockprune.evaluate` on the first
   `--max-windows` WikiText-2 windows of 2048 tokens and the first `--limit` documents of each of the
   five zero-shot tasks; the same subset for all three models.
OUT/results.json collects everything, OUT/report is `blockprune report` of dense, pruned and every healed
folder side by side, and the markdown table is printed at the end."""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from pathlib import Path

from blockprune import atomic, heal, prune
from blockprune.report import build as build_report
from blockprune.evaluate import ZERO_SHOT, evaluate, load_subject
from blockprune.heal import export_run


def stage_plan(args, run: Path) -> None:
    if (run / "model" / "config.json").exists():
        return
    if args.plan:
        if json.loads(Path(args.plan).read_text())["status"] != "done":
            raise SystemExit(f"{args.plan} is not a finished plan")
        run.mkdir(parents=True, exist_ok=True)
        shutil.copy(args.plan, run / "plan.json")
        export_run(run, run / "model")
        return
    prune(args.model, run, method=args.method, ratio=args.ratio, calibration=args.calibration, seqlen=args.seqlen,
          nsamples=args.nsamples, scorer="racing" if args.method == "blockpruner" else "incremental",
          data_dir=args.data_dir, resume=(run / "plan.json").exists())


def stage_heal(args, run: Path, healed: Path) -> None:
    if (healed / "heal.json").exists():
        return
    resume = (healed / "adapter" / "state.json").exists()
    heal(run, healed, data="alpaca", data_dir=args.data_dir, steps=args.steps, max_length=args.max_length,
         val_size=args.val_size, save_every=args.save_every, eval_every=args.eval_every, resume=resume)


def stage_eval(args, name: str, target: str, out: Path) -> None:
    path = out / "eval.json"
    tasks = ("wikitext2",) + ZERO_SHOT
    if path.exists():
        record = json.loads(path.read_text())
        if record.get("average") is not None and record["settings"]["limit"] == args.limit \
                and record["settings"]["max_windows"] == args.max_windows:
            return
    evaluate(load_subject(target), tasks, out=out, max_windows=args.max_windows, limit=args.limit,
             data_dir=args.data_dir, with_cost=False, settings={"bench": "heal", "model": name})


def summarize(evals: dict[str, dict], healing: dict[str, dict], plan: dict) -> dict:
    def row(r: dict) -> dict:
        avg = r.get("average")
        return {"wikitext2_ppl": r["perplexity"]["wikitext2"]["ppl"],
                "zero_shot": {t: r["zero_shot"][t].get("acc_norm", r["zero_shot"][t].get("acc"))
                              for t in ZERO_SHOT if t in r["zero_shot"]},
                "average": avg["value"] if avg else None}
    rows = {k: row(v) for k, v in evals.items()}
    dense = rows.get("dense", {}).get("average")
    for r in rows.values():
        r["recovery_pct"] = 100 * r["average"] / dense if dense and r["average"] is not None else None
    last = plan["steps"][-1]
    return {"models": rows, "removed": plan_removed(plan), "ratio": last["ratio"],
            "healing": {name: {k: v for k, v in h.items() if k != "history"} for name, h in healing.items()}}


def plan_removed(plan: dict) -> list[str]:
    return [s["removed"] for s in plan["steps"]]


def table(summary: dict) -> str:
    lines = ["| model | WikiText-2 ppl | " + " | ".join(ZERO_SHOT) + " | average | % of dense |",
             "|---|---|" + "---|" * len(ZERO_SHOT) + "---|---|"]
    for name, r in summary["models"].items():
        cells = [f"{r['zero_shot'][t]:.3f}" if t in r["zero_shot"] else "-" for t in ZERO_SHOT]
        avg = f"{r['average']:.4f}" if r["average"] is not None else "-"
        rec = f"{r['recovery_pct']:.1f}" if r["recovery_pct"] is not None else "-"
        lines.append(f"| {name} | {r['wikitext2_ppl']:.2f} | " + " | ".join(cells) + f" | {avg} | {rec} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--out", default="bench/heal/smollm2-r20")
    ap.add_argument("--plan", default=None, help="an existing BlockPruner plan.json to use instead of pruning here")
    ap.add_argument("--method", default="blockpruner", help="blockpruner, or blockpruner-oneshot (one scoring pass)")
    ap.add_argument("--ratio", type=float, default=0.2)
    ap.add_argument("--nsamples", type=int, default=256, help="Alpaca rows sampled when --calibration alpaca")
    ap.add_argument("--calibration", default=None, help="default: DATA/calibration/alpaca_sample16.txt")
    ap.add_argument("--seqlen", type=int, default=256)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--val-size", type=int, default=50)
    ap.add_argument("--save-every", type=int, default=25)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--max-windows", type=int, default=4)
    ap.add_argument("--limit", type=int, default=50)
    ap.add_argument("--dense-eval", default=None,
                    help="a finished eval.json of the dense model on the same subset, used instead of evaluating it")
    ap.add_argument("--heal-name", default="healed", help="folder of this healing run (several budgets side by side)")
    ap.add_argument("--stages", default="plan,heal,pruned,healed,dense,summary",
                    help="what this invocation does (separate invocations can run stages side by side)")
    args = ap.parse_args()
    args.calibration = args.calibration or str(Path(args.data_dir) / "calibration" / "alpaca_sample16.txt")
    stages = set(args.stages.split(","))
    out = Path(args.out)
    run, healed = out / "run", out / args.heal_name

    if "plan" in stages:
        stage_plan(args, run)
    if "heal" in stages:
        stage_heal(args, run, healed)
    if args.dense_eval and Path(args.dense_eval).exists() and not (out / "eval" / "dense" / "eval.json").exists():
        (out / "eval" / "dense").mkdir(parents=True, exist_ok=True)
        shutil.copy(args.dense_eval, out / "eval" / "dense" / "eval.json")
    for stage, name, target, where in (("pruned", "pruned", str(run / "model"), run / "eval"),
                                       ("healed", args.heal_name, str(healed), healed / "eval"),
                                       ("dense", "dense", args.model, out / "eval" / "dense")):
        if stage in stages:
            print(f"bench/heal: evaluating {name}", file=sys.stderr)
            stage_eval(args, name, target, where)
    if "summary" not in stages:
        return
    healed_runs = sorted(p.parent.name for p in out.glob("*/heal.json"))
    where = {"dense": out / "eval" / "dense", "pruned": run / "eval"} | {k: out / k / "eval" for k in healed_runs}
    evals = {k: json.loads((p / "eval.json").read_text()) for k, p in where.items() if (p / "eval.json").exists()}
    healing = {k: json.loads((out / k / "heal.json").read_text()) for k in healed_runs}
    summary = summarize(evals, healing, json.loads((run / "plan.json").read_text()))
    summary["settings"] = vars(args)
    atomic.write_json(out / "results.json", summary)
    # the run folder (plan and evaluation) and each heal folder: the report adds the plan's figures and healing
    build_report([out / "eval" / "dense", run] + [out / k for k in healed_runs], out / "report")
    print(table(summary))
    for name, h in summary["healing"].items():
        print(f"\n{name}: {h['steps']} steps, {h['tokens']} tokens ({h['label_tokens']} with loss), {h['seconds']} s; "
              f"validation loss {h['val_loss_before']:.4f} -> {h['val_loss_after']:.4f} "
              f"(ppl {math.exp(h['val_loss_before']):.2f} -> {math.exp(h['val_loss_after']):.2f})")


if __name__ == "__main__":
    main()

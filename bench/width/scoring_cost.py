"""Scoring cost of every width method (issue 33): seconds and peak resident memory of each method's scoring
pass on this machine, LLM-Pruner's gradients included, beside a baseline that only loads the model and runs
one calibration forward pass.

    OMP_NUM_THREADS=1 python bench/width/scoring_cost.py [--model smollm2-135m] [--data-dir ../shared/data]
        [--calibration alpaca] [--nsamples 256] [--seqlen 2048] [--seed 42] [--ratio 0.2] [--layers 1:-1]
        [--batch-size 1] [--methods llm-bip,llm-bip:global,...] [--out bench/width/scoring-cost] [--fresh]
    python bench/width/scoring_cost.py --show bench/width/scoring-cost/<machine tag>.json

The defaults are bench/width/run.sh's paper protocol (256 Alpaca rows, seed 42, in 2048-token windows: 14
windows on SmolLM2-135M; --ratio 0.2, every method on layers 1..L-2, whole KV groups); --nsamples and
--seqlen shrink it. --methods takes compare's names (`method:allocation`); the default is every width
method: llm-bip, llm-bip:global, width-local, width-magnitude, wanda-sp, flap:global, flap-nobias:global,
llm-pruner, llm-pruner-vector, llm-pruner-element2.

Every measurement is its own process (this script with --child), one after the other, so its peak resident
memory (the child's own VmHWM: getrusage's ru_maxrss would keep this script's RSS at the fork) is that
measurement's alone:

- `baseline`: load the model, cut the calibration windows, one forward pass over them (the calibration
  perplexity every prune run starts with);
- each method: `blockprune.prune(..., export=False, progress=False)`, the run `blockprune prune --method M
  --ratio R --no-export --quiet --out TMP` makes (load, windows, the dense calibration perplexity, the method,
  the pruned model's calibration perplexity, plan.json into a temporary folder, removed afterwards), with
  `blockprune.width.prune_width` timed inside the process: the scoring pass (the method's statistics or
  gradients and the allocation; before 2026-12-07 also a narrowed copy of the model), its seconds and the peak RSS while it runs
  (the kernel's high-water mark reset just before it through /proc/self/clear_refs; absent where that cannot
  be written).

The table: process seconds and peak RSS of each process, each over the baseline's (the method process minus
load and one forward pass: its scoring pass, plus the pruned model's perplexity pass that prune records),
and the scoring pass alone. Results go to OUT/<machine tag>.json (`blockprune.machine.results_file`: another
kind of CPU writes beside it, never over it), rewritten after every process, each row with the machine
record of its own process (CPU, flags, threads, versions, load average at its start and end) and the
command line. Re-running the same command resumes: measured rows are kept (--fresh measures all again);
settings differing from the file's are refused. One process at a time, so on a 2-core machine keep other
work off it (each row's load average says what it shared the machine with).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DEFAULT_METHODS = ("llm-bip", "llm-bip:global", "width-local", "width-magnitude", "wanda-sp", "flap:global",
                   "flap-nobias:global", "llm-pruner", "llm-pruner-vector", "llm-pruner-element2")
BASELINE = "baseline"
#: what decides the figures: a results file made with other settings is never mixed with these
SETTINGS = ("model", "calibration", "nsamples", "seqlen", "seed", "ratio", "layers", "batch_size", "dtype")
MIB = 1024 * 1024
#: when width runs stopped building a narrowed copy of the model to score it (commit c1a02b7): rows measured
#: before hold it in their peak and seconds
COPY_REMOVED = "2026-12-07T12:14:19+00:00"


def child(args: argparse.Namespace) -> None:
    """One measurement, in this process: the baseline or one method's prune run; its record to --child-out."""
    from blockprune import machine

    def phase_record(phase: machine.Phase) -> dict:  # MiB; no peak where the kernel would not reset it
        return {"seconds": round(phase.wall, 3), "rss_before_mib": round(phase.rss_before / MIB, 1),
                "peak_rss_mib": round(phase.peak / MIB, 1) if phase.reset else None}

    rec: dict = {"machine": machine.describe()}
    options = dict(calibration=args.calibration, nsamples=args.nsamples, seqlen=args.seqlen, seed=args.seed,
                   dtype=args.dtype, batch_size=args.batch_size)
    if args.child == BASELINE:
        from blockprune import PruneOptions, models
        from blockprune.data import load_windows
        from blockprune.view import BlockView
        from blockprune.window_nll import perplexity

        opts = PruneOptions(**options)
        start = time.perf_counter()
        net, tok = models.load(args.model, opts.dtype, "cpu")
        rec["load_seconds"] = round(time.perf_counter() - start, 3)
        windows = load_windows(opts.calibration, tok, opts.seqlen, nsamples=opts.nsamples, seed=opts.seed,
                               data_dir_=args.data_dir)
        rec["calibration"] = windows.describe()
        with machine.Phase() as phase:
            rec["ppl"] = perplexity(BlockView(net), windows, batch_size=opts.batch_size)
        rec["forward"] = phase_record(phase)
    else:
        import blockprune
        import blockprune.width as width
        from blockprune.compare import parse_methods

        (spec,) = parse_methods(args.child)
        real = width.prune_width

        def timed(*a, **k):
            with machine.Phase() as phase:
                result = real(*a, **k)
            rec["scoring"] = phase_record(phase)
            return result

        width.prune_width = timed  # the width methods call it through the module, at run time
        extra = {"allocation": spec.allocation} if spec.allocation else {}
        with tempfile.TemporaryDirectory(prefix="scoring-cost-") as tmp:
            result = blockprune.prune(args.model, Path(tmp) / "run", data_dir=args.data_dir, export=False,
                                      progress=False, method=spec.method, ratio=args.ratio, layers=args.layers,
                                      **options, **extra)
        if "scoring" not in rec:
            raise SystemExit(f"{args.child}: blockprune.width.prune_width was never called: not a width method?")
        plan = result.plan
        rec["calibration"] = plan.calibration
        rec["plan"] = {"ratio": plan.width["ratio"], "removed_params": plan.width["removed_params"],
                       "dense_ppl": plan.dense["ppl"], "pruned_ppl": plan.width.get("ppl"),
                       "scoring": plan.width.get("scoring")}
    rec["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    # this process's own peak (VmHWM): getrusage's ru_maxrss keeps the parent's RSS at the fork across exec
    rec["process_peak_rss_mib"] = round(machine.peak() / MIB, 1)
    Path(args.child_out).write_text(json.dumps(rec, indent=2))


def portable(path: str) -> str:
    """A path as the records keep it: relative to the repository where it lies beside it (../shared/data),
    so no record names this machine's folders (bench/portable_paths.py)."""
    p = Path(path)
    if p.is_absolute() and p.resolve().is_relative_to(ROOT.parent):
        return os.path.relpath(p.resolve(), ROOT)
    return path


def cli_line(label: str, args: argparse.Namespace) -> str:
    """The `blockprune prune` command a method row measures (the baseline: no command of its own)."""
    if label == BASELINE:
        return "(load the model, cut the calibration windows, one forward pass: blockprune.window_nll.perplexity)"
    method, _, allocation = label.partition(":")
    words = ["blockprune", "prune", "--model", args.model, "--method", method, "--ratio", str(args.ratio),
             "--layers", args.layers, "--calibration", args.calibration, "--nsamples", str(args.nsamples),
             "--seqlen", str(args.seqlen), "--seed", str(args.seed), "--batch-size", str(args.batch_size),
             "--dtype", args.dtype]
    words += ["--allocation", allocation] if allocation else []
    words += ["--data-dir", portable(args.data_dir)] if args.data_dir else []
    return shlex.join(words + ["--no-export", "--quiet", "--out", "TMP"])


def measure(label: str, args: argparse.Namespace) -> dict:
    """Run one measurement in a fresh process; its record with the process's seconds and peak RSS."""
    with tempfile.TemporaryDirectory(prefix="scoring-cost-") as tmp:
        out = Path(tmp) / "child.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", label, "--child-out", str(out),
               *(f"--{k.replace('_', '-')}={getattr(args, k)}" for k in SETTINGS)]
        if args.data_dir:
            cmd.append(f"--data-dir={args.data_dir}")
        started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        output = proc.stdout.read()
        proc.wait()
        seconds = time.perf_counter() - start
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"{label}: the measuring process exited {proc.returncode}:\n{output[-3000:]}")
        rec = json.loads(out.read_text())
    peak = rec.pop("process_peak_rss_mib")
    return {"label": label, "started": started, "process_seconds": round(seconds, 3), "peak_rss_mib": peak,
            "cli": cli_line(label, args), **rec}


def settings_of(args: argparse.Namespace) -> dict:
    return {k: getattr(args, k) for k in SETTINGS}


def table(record: dict) -> str:
    """The markdown table of a results file, with its calibration, settings and machine lines."""
    from blockprune import machine

    rows = record["rows"]
    base = rows.get(BASELINE)
    s = record["settings"]
    lines = ["| method | process s | over baseline s | scoring pass s | peak RSS MiB | over baseline MiB "
             "| scoring pass peak RSS MiB |", "|---|---:|---:|---:|---:|---:|---:|"]

    def diff(a, b, fmt):
        return "–" if a is None or b is None else format(a - b, fmt)

    for label, r in rows.items():
        if label == BASELINE:
            fwd = r["forward"]
            lines.append(f"| baseline: load + one forward pass | {r['process_seconds']:.1f} | – | "
                         f"(the forward pass: {fwd['seconds']:.1f}) | {r['peak_rss_mib']:.0f} | – | "
                         f"{'–' if fwd['peak_rss_mib'] is None else format(fwd['peak_rss_mib'], '.0f')} |")
            continue
        sc = r["scoring"]
        lines.append(f"| {label} | {r['process_seconds']:.1f} | "
                     f"{diff(r['process_seconds'], base and base['process_seconds'], '+.1f')} | {sc['seconds']:.1f} | "
                     f"{r['peak_rss_mib']:.0f} | {diff(r['peak_rss_mib'], base and base['peak_rss_mib'], '+.0f')} | "
                     f"{'–' if sc['peak_rss_mib'] is None else format(sc['peak_rss_mib'], '.0f')} |")
    cal = next((r["calibration"] for r in rows.values() if r.get("calibration")), None)
    out = ["\n".join(lines), ""]
    if cal:
        out.append(f"Calibration: {cal['source']}, {cal['rows']} rows (seed {cal['seed']}), {cal['windows']} windows "
                   f"of {cal['seqlen']} tokens; model {s['model']}, --ratio {s['ratio']}, --layers {s['layers']}, "
                   f"batch size {s['batch_size']}, {s['dtype']}.")
    grads = {k: r["plan"]["scoring"] for k, r in rows.items() if (r.get("plan") or {}).get("scoring")}
    if grads:
        out.append("Gradient memory the plans record: " + "; ".join(
            f"{k}: {', '.join(f'{n} {v:,}' for n, v in g.items() if isinstance(v, (int, float)))}"
            for k, g in grads.items()) + ".")
    out.append("Load average (1, 5, 15 min) at each process's start: " + "; ".join(
        f"{k} {'/'.join(f'{x:g}' for x in r['machine']['load_average'])}" for k, r in rows.items()) + ".")
    copied = [k for k, r in rows.items() if k != BASELINE and r["started"] < COPY_REMOVED]
    out.append("over baseline: the method's process minus the baseline's (load, windows, one forward pass): its "
               "scoring pass plus the pruned model's calibration perplexity that prune records. Scoring pass: "
               "blockprune.width.prune_width (statistics or gradients, allocation"
               + (f"; {'every row' if len(copied) == len(rows) - (BASELINE in rows) else ', '.join(copied)}: "
                  f"measured before {COPY_REMOVED[:10]} {COPY_REMOVED[11:16]} UTC, when the pass also built a "
                  f"narrowed copy of the model (width runs no longer do)" if copied else "") + ").")
    out += machine.table_lines({k: [r["machine"]] for k, r in rows.items()})
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--data-dir", default=os.environ.get("BLOCKPRUNE_DATA", str(ROOT.parent / "shared" / "data")),
                    help="offline datasets (default: $BLOCKPRUNE_DATA, else ../shared/data beside the repository)")
    ap.add_argument("--calibration", default="alpaca")
    ap.add_argument("--nsamples", type=int, default=256)
    ap.add_argument("--seqlen", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--ratio", type=float, default=0.2)
    ap.add_argument("--layers", default="1:-1")
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"))
    ap.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                    help="comma-separated width methods, compare's names (method:allocation)")
    ap.add_argument("--out", default=str(HERE / "scoring-cost"), help="folder of the per-machine results files")
    ap.add_argument("--fresh", action="store_true", help="measure every row again (this machine's file replaced)")
    ap.add_argument("--show", metavar="FILE", help="print a results file's table and exit")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--child-out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.data_dir and not Path(args.data_dir).exists():
        args.data_dir = None if args.data_dir == str(ROOT.parent / "shared" / "data") else args.data_dir
    if args.child:
        child(args)
        return 0
    if args.show:
        print(table(json.loads(Path(args.show).read_text())))
        return 0

    from blockprune import UserError, atomic, machine
    from blockprune.compare import parse_methods
    from blockprune.methods import METHODS

    try:
        specs = parse_methods(args.methods)
    except UserError as e:
        ap.error(str(e))
    not_width = [s.label for s in specs if METHODS[s.method].granularity != "width"]
    if not_width:
        ap.error(f"not width methods: {', '.join(not_width)}")
    path = machine.results_file(args.out)
    record = {"what": "scoring cost of the width methods (bench/width/scoring_cost.py)", "settings": settings_of(args),
              "invocations": [], "rows": {}}
    if path.exists() and not args.fresh:
        old = json.loads(path.read_text())
        if old["settings"] != record["settings"]:
            changed = ", ".join(f"{k}: {old['settings'].get(k)!r} there, {v!r} here"
                                for k, v in record["settings"].items() if old["settings"].get(k) != v)
            print(f"{path} was measured with other settings ({changed}); give another --out, or --fresh to "
                  f"replace it", file=sys.stderr)
            return 2
        record = old
    given = sys.argv[1:] if argv is None else argv
    record["invocations"].append({"command": shlex.join(["python", "bench/width/scoring_cost.py", *given]),
                                  "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
                                  "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                                  "machine": machine.describe()})
    labels = [BASELINE] + [s.label for s in specs]
    failed = []

    def save() -> None:
        # the rows in the order of this invocation's labels, then any others the file already had
        record["rows"] = {k: record["rows"][k] for k in [*labels, *record["rows"]] if k in record["rows"]}
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(path, json.dumps(record, indent=2) + "\n")  # rows in measuring order, not sorted

    for label in labels:
        if label in record["rows"]:
            print(f"scoring_cost: {label}: kept from {record['rows'][label]['started']} (--fresh to measure again)",
                  file=sys.stderr)
            continue
        print(f"scoring_cost: {label} ...", file=sys.stderr, flush=True)
        try:
            row = measure(label, args)
        except RuntimeError as e:
            print(f"scoring_cost: {e}", file=sys.stderr)
            failed.append(label)
            continue
        record["rows"][label] = row
        save()
        extra = f", scoring pass {row['scoring']['seconds']:.1f} s" if "scoring" in row else ""
        print(f"scoring_cost: {label}: {row['process_seconds']:.1f} s, peak RSS {row['peak_rss_mib']:.0f} MiB{extra}",
              file=sys.stderr, flush=True)
    save()  # this invocation recorded even where it kept every row
    print(table(record))
    print(f"\n(results: {path})")
    if failed:
        print(f"scoring_cost: failed: {', '.join(failed)} (re-run the same command to measure them)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Scale (issue 31): the same search from 135M to 8B parameters, against `blockprune estimate`'s cost model.

For each config in bench/scale/configs/ (real models' shapes; nothing downloaded), smallest first, a
checkpoint of random bf16 weights is written locally (one safetensors shard per layer, so building it never
holds the model) with a byte-level tokenizer, and one process per size (so each size's memory peaks are its
own) measures, on `--windows` windows of `--seqlen` tokens of generated text:
- load: `models.load` of the bf16 checkpoint into the run's precision;
- one `blockpruner` step and one `layer-ppl` step, racing (and exhaustive, `incremental`, up to
  `--exhaustive-up-to` parameters), each as prune runs it after its dense perplexity pass (timed once, for
  every step): the boundary cache's fill, then the step; `--candidates N` scores only N of the pool, evenly spaced through the depth (the first N
  would be the costliest: a candidate runs every block after its own), and the record says so;
- export (`auto`) of the blockpruner step's removal and reload with `blockprune.load`;
- a `shortgpt` pass and an `llm-bip` pass (`--ratio 0.2`) through `blockprune.api.prune`, each in a fresh
  process of its own (in the size's process, what the allocator kept from earlier phases moved their peaks by
  up to 15%), `estimate`'s time range timed in that process right after the pass (timed before it, the
  timing's allocations stayed in the pass's peak); `--one-shots` chooses them. One that `prune` refuses (it
  would not fit), fails or is left out is recorded as not run, with the reason, beside the size's other
  phases.
Each phase's wall and CPU seconds and its peak RSS (VmHWM, reset per phase through /proc/self/clear_refs)
are recorded beside `estimate`'s peak for the same settings, and each step's CPU seconds per
candidate-window beside the cost model's (its one-layer timing: mean blocks run per candidate x a block's
time + the LM head's).

The precision: fp32 where `estimate` says the heaviest phase fits in `--memory` (default: the memory
available now, beside whatever else runs), else bf16 where the CPU runs it natively, else the size is
skipped and the record says why. A finished size is kept (the bench resumes); one thread by default.
Writes bench/scale/results/<machine tag>.json (`blockprune.machine`) with the machine record and the exact
command per size, and its figure beside it (.png); `--show FILE` prints a results file's table,
`--figure FILE` draws its figure again.

    OMP_NUM_THREADS=1 nice -n 10 python bench/scale/run.py --sizes smollm2-135m --candidates 2
    python bench/scale/run.py --show bench/scale/results/amd-epyc-avx2.json
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
GiB = 1024 ** 3
# the scoring phases: (name, method, scorer); the exhaustive ones only up to --exhaustive-up-to parameters
STEPS = [("blockpruner racing", "blockpruner", "racing"), ("layer-ppl racing", "layer-ppl", "racing"),
         ("blockpruner exhaustive", "blockpruner", "incremental"), ("layer-ppl exhaustive", "layer-ppl", "incremental")]
WIDTH_RATIO = 0.2  # llm-bip's share of parameters, the paper's ratio


# -- what each size runs on ------------------------------------------------------------------------------

def calibration_text(path: Path, windows: int, seqlen: int) -> str:
    """Seeded words, one byte a token, `windows` windows and half of one more long: the windows' content
    does not change the cost of a forward pass."""
    import random

    rng = random.Random(0)
    words = ["the", "model", "block", "prune", "layer", "attention", "weights", "data", "search", "window"]
    text, size = [], windows * seqlen + seqlen // 2
    while sum(len(w) + 1 for w in text) < size:
        text.append(rng.choice(words))
    path.write_text(" ".join(text)[:size], encoding="utf-8")
    return str(path)


def build_checkpoint(config_dir: Path, out: Path, seed: int = 0) -> None:
    """Random bf16 weights of the config's shapes (normal(0, initializer_range), norms 1, biases 0), one
    shard per layer: building an 8B checkpoint holds one layer, not the model."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoConfig

    from blockprune import estimate

    config = AutoConfig.from_pretrained(config_dir)
    params = dict(estimate.meta_model(config).named_parameters())  # tied weights once, by their first name
    std = getattr(config, "initializer_range", 0.02)
    gen = torch.Generator().manual_seed(seed)
    groups: dict[str, list[str]] = {}
    for name in params:
        m = re.search(r"\.layers\.(\d+)\.", name)
        groups.setdefault(f"layer{m.group(1)}" if m else "other", []).append(name)
    out.mkdir(parents=True, exist_ok=True)
    weight_map, total = {}, 0
    for i, names in enumerate(groups.values()):
        shard = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        tensors = {}
        for n in names:
            t = torch.empty(params[n].shape, dtype=torch.bfloat16)
            if n.endswith("bias"):
                t.zero_()
            elif "norm" in n:
                t.fill_(1.0)
            else:
                t.normal_(0.0, std, generator=gen)
            tensors[n] = t
            total += t.numel() * 2
        save_file(tensors, str(out / shard), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(names, shard))
    (out / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1))
    config.save_pretrained(out)
    from blockprune.models import byte_tokenizer

    byte_tokenizer().save_pretrained(out)


def params_of(config_dir: Path) -> int:
    from transformers import AutoConfig

    from blockprune import estimate

    return estimate.shapes(AutoConfig.from_pretrained(config_dir)).params


def spaced(pool: list, n: int | None) -> list:
    """`n` of `pool` evenly spaced through it (all of it when n is None or not smaller)."""
    if n is None or n >= len(pool):
        return pool
    if n == 1:
        return [pool[len(pool) // 2]]
    return [pool[round(i * (len(pool) - 1) / (n - 1))] for i in range(n)]


def options(method: str, dtype: str, calib: str, seqlen: int, **more):
    from blockprune.options import PruneOptions

    if method == "llm-bip":
        more.setdefault("ratio", WIDTH_RATIO)
    else:
        more.setdefault("num_blocks", 1)
    return PruneOptions(method=method, dtype=dtype, calibration=calib, seqlen=seqlen, validation="none", **more)


def estimated(folder: Path, opts, timing: bool = False) -> dict[str, Any]:
    """estimate's memory for these settings, with this process's resident memory as the runtime; with
    `timing`, its time range too (one layer and the score's spectral norms timed here and now)."""
    from blockprune import estimate

    est = estimate.estimate(str(folder), opts, "cpu", timing=timing)
    return {"peak": est.memory.peak["cpu"], "needed": est.memory.needed["cpu"], "windows": est.calibration.windows,
            "search": est.search, "time": list(est.time) if est.time else None,
            "load": est.timing.load if est.timing else None}


def cost_model(timing, view, candidates) -> list[float]:
    """The cost model's CPU seconds per candidate-window for these candidates: a candidate runs the blocks
    after its first (its own masked) and the LM head, at the one-layer timing's mean block time
    (`estimate.seconds` of that work); its range's low and high ends."""
    from blockprune import estimate

    runs = [len(view.blocks) - u.index - len(u.blocks) for u in candidates]
    mean = sum(runs) / len(runs)
    return list(estimate.seconds(estimate.Search((1, 1), 1, None, (mean, mean), (1, 1)), timing))


def work_per_candidate_window(config_dir: Path, phase: dict[str, Any], seqlen: int) -> float | None:
    """The arithmetic a step's candidates did, in FLOPs per candidate-window, from the config (a meta-device
    model): each candidate runs the blocks after its own and the LM head, as `cost_model` counts them; a
    block's products are 2 x tokens x its linear weights, attention's scores and mixing 4 x head dim x heads
    over the causal triangle (the CPU kernel skips the masked half), the head 2 x (tokens - 1) x its weight.
    None for a layout it cannot count (no config, a parallel layer, a pool it does not know)."""
    import torch
    from transformers import AutoConfig

    from blockprune.estimate import meta_model, shapes

    if not (config_dir / "config.json").exists():
        return None
    config = AutoConfig.from_pretrained(config_dir)
    s = shapes(config)
    if s.parallel or phase["pool"] not in (s.layers, s.blocks):
        return None
    model = meta_model(config)
    layer = model.model.layers[0]  # the bench's shapes repeat one layer

    def linear(module) -> int:
        return sum(m.weight.numel() for m in module.modules() if isinstance(m, torch.nn.Linear))

    attn = 2 * seqlen * linear(layer.self_attn) + 2 * s.heads * s.head_dim * seqlen * (seqlen + 1)
    block = (attn, 2 * seqlen * linear(layer.mlp))  # even blocks attention, odd ones MLP
    head = 2 * (seqlen - 1) * model.get_output_embeddings().weight.numel()
    per_unit = s.blocks // phase["pool"]  # 1: block candidates, 2: layer candidates
    firsts = [i * per_unit for i in spaced(list(range(phase["pool"])), phase["candidates"])]
    runs = [sum(block[b % 2] for b in range(first + per_unit, s.blocks)) + head for first in firsts]
    return sum(runs) / len(runs)


def run_size(name: str, work: Path, dtype: str, args) -> dict[str, Any]:
    """Every phase of one size, in this process; the record of each."""
    import torch

    torch.set_num_threads(args.threads)
    from transformers import AutoConfig
    from transformers.utils import logging as hf_logging

    from blockprune import estimate, machine, models, scoring
    from blockprune.data import load_windows
    from blockprune.export import export, load
    from blockprune.window_nll import perplexity
    from blockprune.plan import Plan
    from blockprune.search import candidate_units, greedy
    from blockprune.view import BlockView

    hf_logging.disable_progress_bar()
    folder = work / "model"
    t = time.perf_counter()
    build_checkpoint(args.configs / name, folder)
    built = round(time.perf_counter() - t, 1)
    calib = calibration_text(work / "calibration.txt", args.windows, args.seqlen)
    config = AutoConfig.from_pretrained(folder)
    record: dict[str, Any] = {"build_seconds": built, "pid": os.getpid(), "phases": {}}
    phases = record["phases"]
    params = estimate.shapes(config).params
    steps = [s for s in STEPS if s[2] == "racing" or params <= args.exhaustive_up_to]
    # memory estimates first, from the config, in this process before any weight (its runtime is the run's)
    ests = {label: estimated(folder, options(method, dtype, calib, args.seqlen, scorer=scorer))
            for label, method, scorer in steps}
    timing = estimate.time_layer(config, dtype, "cpu", args.seqlen)
    record["timing"] = {"attn": timing.attn, "mlp": timing.mlp, "head": timing.head, "load": timing.load}

    with machine.Phase() as ph:
        net, tok = models.load(str(folder), dtype)
    phases["load"] = ph.record()
    view = BlockView(net)
    windows = load_windows(calib, tok, args.seqlen)
    assert len(windows) == args.windows, f"{len(windows)} windows of the generated text, not {args.windows}"
    with machine.Phase() as ph, torch.no_grad():
        perplexity(view, windows)
    phases["dense pass"] = ph.record()
    removed_by_bp: str | None = None
    for label, method, scorer_name in steps:
        opts = options(method, dtype, calib, args.seqlen, scorer=scorer_name).resolved("cpu")
        pool = candidate_units(view, "layer" if method == "layer-ppl" else "block", "mix")
        cands = spaced(pool, args.candidates)
        with machine.Phase() as ph:
            scorer = scoring.make_scorer(view, windows, opts)
            w, c = time.perf_counter(), time.process_time()
            scorer.cache.sync(frozenset())  # the cache's fill, timed apart from the candidates
            fill = (time.perf_counter() - w, time.process_time() - c)
            plan = Plan(method=method, model={}, calibration={}, options={})
            w, c = time.perf_counter(), time.process_time()
            greedy(view, scorer, plan, cands, num_blocks=1, ratio=None)
            step = (time.perf_counter() - w, time.process_time() - c)
        del scorer
        s = plan.steps[0]
        e = ests[label]
        phases[label] = ph.record(
            fill=[round(x, 2) for x in fill], step=[round(x, 2) for x in step],
            candidates=len(cands), pool=len(pool), evaluated_windows=s["evaluated_windows"],
            exhaustive_windows=s["exhaustive_windows"], removed=s["removed"],
            cpu_per_candidate_window=step[1] / s["evaluated_windows"],
            model_per_candidate_window=cost_model(timing, view, cands),
            estimate_peak=e["peak"], estimate_needed=e["needed"],
            # the whole run's time range (the dense pass, the fill, the step), comparable where every
            # candidate was scored
            estimate_seconds=list(estimate.seconds(e["search"], timing)) if len(cands) == len(pool) else None)
        if method == "blockpruner" and removed_by_bp is None:
            removed_by_bp = s["removed"]
        print(f"{name}: {label}: {ph.wall:.0f} s", file=sys.stderr, flush=True)

    out = work / "export"
    with machine.Phase() as ph:
        export(net, {removed_by_bp}, out, tokenizer=tok)
    phases["export"] = ph.record(removed=removed_by_bp, bytes=sum(f.stat().st_size for f in out.rglob("*") if f.is_file()))
    del net, view
    with machine.Phase() as ph:
        back = load(out, models.DTYPES[dtype])
    phases["reload"] = ph.record()
    del back
    shutil.rmtree(out)

    return record


ONE_SHOT = ("shortgpt", "llm-bip")  # each in a fresh process: what earlier phases left in the allocator moved their peaks by 15%


def run_one_shot(method: str, work: Path, dtype: str, args) -> dict[str, Any]:
    """One `prune` pass of a one-shot method on the size's checkpoint in `work`, in this (fresh) process."""
    import torch

    torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    from blockprune import UserError, machine, prune

    hf_logging.disable_progress_bar()
    folder, calib = work / "model", str(work / "calibration.txt")
    opts = options(method, dtype, calib, args.seqlen)
    est = estimated(folder, opts)  # before any weight: this process's runtime is the run's (as prune's check)
    try:
        with machine.Phase() as ph:
            prune(str(folder), work / method, options=opts, export=False, progress=False)
    except UserError as e:  # prune's own refusal (it would not fit): a finding, not a failure of the bench
        print(f"{method}: refused: {e}", file=sys.stderr, flush=True)
        return {"refused": str(e).splitlines()[0], "estimate_peak": est["peak"], "estimate_needed": est["needed"]}
    print(f"{method}: {ph.wall:.0f} s", file=sys.stderr, flush=True)
    # the time range right after the pass, at the load it ran under: timed before it, the timing's own
    # allocations stayed in the process and raised the pass's peak (80 MB at 135M, where prune times nothing)
    timed = estimated(folder, opts, timing=True)
    return ph.record(estimate_peak=est["peak"], estimate_needed=est["needed"], estimate_seconds=timed["time"],
                     estimate_load=timed["load"], pid=os.getpid())


# -- the sizes, resumable ----------------------------------------------------------------------------------

def weightless(config_dir: Path, folder: Path, windows: int, seqlen: int) -> str:
    """A model folder with the size's config and the byte tokenizer but no weights (what `estimate` reads),
    and the calibration text beside it; the text's path."""
    from transformers import AutoConfig

    from blockprune.models import byte_tokenizer

    AutoConfig.from_pretrained(config_dir).save_pretrained(folder)
    byte_tokenizer().save_pretrained(folder)
    return calibration_text(folder.parent / "calibration.txt", windows, seqlen)


def choose_dtype(config_dir: Path, budget: int, free_disk: int, seqlen: int, windows: int,
                 dtypes: tuple[str, ...] = ("fp32", "bf16")) -> tuple[str | None, str]:
    """(dtype, why): the first of `dtypes` (fp32, then bf16) where the heaviest phase's estimate fits in
    `budget` bytes, bf16 only where the CPU runs it natively; (None, the reason) otherwise."""
    from blockprune import estimate
    from blockprune.scoring.twoprecision import native_fast_dtype

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        calib = weightless(config_dir, folder / "model", windows, seqlen)
        needs = {}
        for dtype in dtypes:
            est = estimate.estimate(str(folder / "model"), options("blockpruner", dtype, calib, seqlen,
                                                                   scorer="incremental"), "cpu", timing=False)
            needs[dtype] = est.memory.needed["cpu"]
            disk = est.shapes.params * (2 + estimate.BYTES[dtype])  # the bf16 checkpoint and the export
            if needs[dtype] <= budget and disk <= free_disk and (dtype == "fp32" or native_fast_dtype("cpu")):
                return dtype, f"estimate {estimate.gib(needs[dtype])} within {estimate.gib(budget)}"
            if disk > free_disk:
                return None, f"{dtype} needs {estimate.gib(disk)} of disk, {estimate.gib(free_disk)} free"
    why = [f"{d} needs {estimate.gib(needs[d])}, more than the {estimate.gib(budget)} allowed (--memory)"
           for d in dtypes if needs[d] > budget and (d == "fp32" or native_fast_dtype("cpu"))]
    if "bf16" in dtypes and not native_fast_dtype("cpu"):
        why.append("bf16 not run: this CPU has no native bf16 (avx512_bf16 or amx_bf16), so it would be emulated, "
                   "many times slower than fp32")
    return None, "; ".join(why)


def record_key(name: str, args) -> str:
    """A size's key in the results file: its config's name, with `:<dtype>` where --dtype chose the precision."""
    return f"{name}:{args.dtype}" if args.dtype else name


def config_name(key: str) -> str:
    return key.split(":")[0]


def load_results(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {"sizes": {}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", type=Path, default=HERE / "configs", help="a folder of <size>/config.json")
    ap.add_argument("--sizes", help="comma-separated config names (default: all, smallest first)")
    ap.add_argument("--windows", type=int, default=2)
    ap.add_argument("--seqlen", type=int, default=2048)
    ap.add_argument("--candidates", type=int, help="score only N candidates per step, evenly spaced through the depth")
    ap.add_argument("--exhaustive-up-to", type=float, default=1.6e9, help="parameters up to which the steps also "
                    "run exhaustively (default 1.6e9)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--one-shots", default=",".join(ONE_SHOT), help="the one-shot passes to run after the steps "
                    f"(default {','.join(ONE_SHOT)}; empty for none)")
    ap.add_argument("--memory", type=float, help="GiB the bench may use (default: the memory available now)")
    ap.add_argument("--note", help="recorded with each size run now (e.g. what else ran beside it)")
    ap.add_argument("--again", action="store_true", help="measure --sizes again, replacing their records (a "
                    "size is otherwise kept once done) but for a one-shot pass left out of --one-shots, which keeps "
                    "its earlier record; with --time-estimates, time again the estimates it added")
    ap.add_argument("--add-one-shots", action="store_true", help="run only the --one-shots passes on --sizes "
                    "already done on this machine, adding them to their records (each with its own command and date)")
    ap.add_argument("--time-estimates", action="store_true", help="time estimate's range for the --one-shots "
                    "passes of --sizes recorded without one (before the bench timed it in the pass's own process), "
                    "adding it to their records with this command and date; loads no weights")
    ap.add_argument("--results", type=Path, default=HERE / "results", help="where <machine tag>.json is written")
    ap.add_argument("--work", type=Path, help="where checkpoints are built (default: the system's temporary folder)")
    ap.add_argument("--show", metavar="FILE", help="print a results file's table and exit")
    ap.add_argument("--summary", metavar="FILE", help="print a results file's one-row-per-size table (README) and exit")
    ap.add_argument("--figure", metavar="FILE", help="draw a results file's figure (FILE with .png) and exit")
    ap.add_argument("--size", help=argparse.SUPPRESS)  # internal: one size in this process
    ap.add_argument("--dtype", choices=("fp32", "bf16"), help="run --sizes in this precision rather than the first "
                    "that fits (fp32, then bf16), each recorded as <size>:<dtype>")
    ap.add_argument("--one-shot", help=argparse.SUPPRESS)  # internal: one one-shot phase of --size in this process
    args = ap.parse_args(argv)
    if args.show:
        print(table(json.loads(Path(args.show).read_text(encoding="utf-8"))), end="")
        return 0
    if args.summary:
        print(summary(json.loads(Path(args.summary).read_text(encoding="utf-8")), args.configs), end="")
        return 0
    if args.figure:
        print(f"wrote {figure(json.loads(Path(args.figure).read_text(encoding='utf-8')), Path(args.figure).with_suffix('.png'), args.configs)}")
        return 0
    if args.size and args.one_shot:
        print(json.dumps(run_one_shot(args.one_shot, args.work, args.dtype, args)))
        return 0
    if args.size:
        print(json.dumps(run_size(args.size, args.work, args.dtype, args)))
        return 0

    from blockprune import estimate, machine
    from blockprune.scoring.twoprecision import native_fast_dtype

    path = machine.results_file(args.results)
    results = load_results(path)
    one_shots = [m for m in args.one_shots.split(",") if m]
    if set(one_shots) - set(ONE_SHOT):
        ap.error(f"--one-shots takes {', '.join(ONE_SHOT)} (got {args.one_shots})")
    names = args.sizes.split(",") if args.sizes else [d.name for d in args.configs.iterdir() if (d / "config.json").exists()]
    sizes = sorted(((params_of(args.configs / n), n) for n in names))
    command = shlex.join(["python", "bench/scale/run.py", *(sys.argv[1:] if argv is None else argv)])
    if args.time_estimates:
        for params, name in sizes:
            time_estimates(name, results, one_shots, command, args)
            path.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
        print(table(results), end="")
        return 0
    if args.add_one_shots:
        for params, name in sizes:
            add_one_shots(name, results, one_shots, command, args)
            path.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
        print(table(results), end="")
        print(f"wrote {path} and {figure(results, path.with_suffix('.png'), args.configs)}")
        return 0
    for params, name in sizes:
        key = record_key(name, args)
        if results["sizes"].get(key, {}).get("status") == "done" and not (args.again and args.sizes):
            print(f"{key}: done before, kept")
            continue
        work = Path(tempfile.mkdtemp(prefix=f"scale-{name}-", dir=args.work))
        budget = int(args.memory * GiB) if args.memory is not None else estimate.available("cpu")["cpu"]
        dtype, why = choose_dtype(args.configs / name, budget, shutil.disk_usage(work).free, args.seqlen, args.windows,
                                  (args.dtype,) if args.dtype else ("fp32", "bf16"))
        earlier = results["sizes"].get(key, {})
        entry: dict[str, Any] = {"params": params, "command": command, "date": time.strftime("%Y-%m-%d %H:%M"),
                                 "commit": commit(),
                                 "windows": args.windows, "seqlen": args.seqlen, "threads": args.threads,
                                 "candidates": args.candidates, "note": args.note, "native_bf16": bool(native_fast_dtype("cpu"))}
        if dtype is None:
            shutil.rmtree(work)
            results["sizes"][key] = {**entry, "status": "skipped", "reason": why, "machine": machine.describe()}
            print(f"{key}: skipped: {why}")
        else:
            print(f"{key}: {dtype} ({why})", flush=True)
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
            cmd = size_command(name, work, dtype, args, args.windows, args.seqlen)
            load_start = [round(x, 2) for x in os.getloadavg()]
            got = subprocess.run(cmd, stdout=subprocess.PIPE, env=env, text=True)
            run = json.loads(got.stdout.strip().splitlines()[-1]) if got.returncode == 0 else None
            if run:
                run["not_run"] = {m: "left out (--one-shots)" for m in ONE_SHOT if m not in one_shots}
                keep_one_shots(earlier, run, [m for m in ONE_SHOT if m not in one_shots])
                run_one_shots(cmd, env, one_shots, run)
            shutil.rmtree(work, ignore_errors=True)
            if got.returncode != 0:
                results["sizes"][key] = {**entry, "status": "failed", "reason": f"exit {got.returncode}",
                                         "machine": machine.describe()}
                print(f"{key}: failed (exit {got.returncode})")
            else:
                results["sizes"][key] = {**entry, "status": "done", "dtype": dtype, "load_average_start": load_start,
                                          **run, "machine": machine.describe()}
        results["sizes"] = dict(sorted(results["sizes"].items(), key=lambda kv: kv[1]["params"]))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")  # after each size: resumable
    print(table(results), end="")
    print(f"wrote {path} and {figure(results, path.with_suffix('.png'), args.configs)}")
    return 0


def size_command(name: str, work: Path, dtype: str, args, windows: int, seqlen: int) -> list[str]:
    """The command that runs one size's phases (or, with --one-shot, one one-shot pass) in a fresh process."""
    cmd = [sys.executable, __file__, "--size", name, "--dtype", dtype, "--work", str(work),
           "--configs", str(args.configs), "--windows", str(windows), "--seqlen", str(seqlen),
           "--threads", str(args.threads), "--exhaustive-up-to", str(args.exhaustive_up_to)]
    return cmd + (["--candidates", str(args.candidates)] if args.candidates else [])


def commit() -> str | None:
    """The checked-out commit of this bench's code (what rule the estimates it records followed)."""
    got = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True)
    return got.stdout.strip() or None if got.returncode == 0 else None


def keep_one_shots(earlier: dict[str, Any], run: dict[str, Any], methods: list[str]) -> None:
    """A size measured again keeps the one-shot passes left out this time from its earlier record, each
    with the command and date that ran it (the checkpoint is the same: seeded)."""
    if earlier.get("status") != "done":
        return
    for m in methods:
        if m in earlier["phases"]:
            p = earlier["phases"][m]
            run["phases"][m] = {**p, "added": p.get("added") or {
                "command": earlier["command"], "date": earlier["date"], "note": earlier.get("note"),
                "commit": earlier.get("commit")}}
            run["not_run"].pop(m, None)


def run_one_shots(cmd: list[str], env: dict, methods: list[str], run: dict[str, Any],
                  added: dict[str, Any] | None = None) -> None:
    """Each one-shot pass in its own process, into `run`'s phases (with `added`, when it joins a record
    made earlier); one that fails or is refused is recorded in `run["not_run"]` with why, and leaves the
    size's other phases recorded."""
    for method in methods:
        shot = subprocess.run(cmd + ["--one-shot", method], stdout=subprocess.PIPE, env=env, text=True)
        rec = json.loads(shot.stdout.strip().splitlines()[-1]) if shot.returncode == 0 else None
        if rec is None or "refused" in rec:
            run["not_run"][method] = rec["refused"] if rec else f"failed (exit {shot.returncode})"
        else:
            run["phases"][method] = {**rec, **({"added": added} if added else {})}
            run["not_run"].pop(method, None)


def add_one_shots(name: str, results: dict[str, Any], methods: list[str], command: str, args) -> None:
    """--add-one-shots: `methods` on a size done before on this machine, on the same seeded checkpoint."""
    key = record_key(name, args)
    run = results["sizes"].get(key)
    if not run or run.get("status") != "done":
        print(f"{key}: not done on this machine; run it without --add-one-shots first")
        return
    work = Path(tempfile.mkdtemp(prefix=f"scale-{name}-", dir=args.work))
    try:
        build_checkpoint(args.configs / name, work / "model")
        calibration_text(work / "calibration.txt", run["windows"], run["seqlen"])
        run.setdefault("not_run", {})
        added = {"command": command, "date": time.strftime("%Y-%m-%d %H:%M"), "note": args.note, "commit": commit()}
        run_one_shots(size_command(name, work, run["dtype"], args, run["windows"], run["seqlen"]),
                      {**os.environ, "OMP_NUM_THREADS": str(args.threads)}, methods, run, added)
        for m in methods:
            print(f"{key}: {m}: " + (f"not run: {run['not_run'][m]}" if m in run["not_run"] else "added"))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def time_estimates(name: str, results: dict[str, Any], methods: list[str], command: str, args) -> None:
    """--time-estimates: estimate's time range for one-shot passes recorded without one, from the size's
    config and calibration text alone (a folder with the config and the byte tokenizer, no weights)."""
    import torch

    torch.set_num_threads(args.threads)
    key = record_key(name, args)
    run = results["sizes"].get(key)
    todo = [m for m in methods if run and m in run.get("phases", {})
            and (not run["phases"][m].get("estimate_seconds") or (args.again and "estimate_timed" in run["phases"][m]))]
    if not todo:
        print(f"{key}: no one-shot pass of {', '.join(methods)} without an estimated time")
        return
    work = Path(tempfile.mkdtemp(prefix=f"scale-{name}-", dir=args.work))
    try:
        calib = weightless(args.configs / name, work / "model", run["windows"], run["seqlen"])
        for m in todo:
            est = estimated(work / "model", options(m, run["dtype"], calib, run["seqlen"]), timing=True)
            run["phases"][m].update(estimate_seconds=est["time"], estimate_load=est["load"],
                                    estimate_timed={"command": command, "date": time.strftime("%Y-%m-%d %H:%M"),
                                                    "note": args.note})
            print(f"{key}: {m}: took {run['phases'][m]['wall']:.0f} s, estimate {est['time'][0]:.0f}-"
                  f"{est['time'][1]:.0f} s", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


# -- table and figure --------------------------------------------------------------------------------------

def _size(params: int) -> str:
    return f"{params / 1e9:.2f}B" if params >= 1e9 else f"{params / 1e6:.0f}M" if params >= 1e6 else f"{params:,}"


def _s(x: float) -> str:
    """Seconds to three significant digits (a tiny model's phases take milliseconds, an 8B's hours)."""
    return f"{x:.3g}" if x < 1000 else f"{x:.0f}"


def _gib(n: float) -> str:
    return f"{n / GiB:.2f}"


def table(results: dict[str, Any]) -> str:
    """The Markdown of a results file: one row per size and phase, then each size's scope and skips."""
    from blockprune import machine

    lines = ["# Scale (bench/scale)", "",
             "| model | params | dtype | phase | wall s | CPU s | candidate-windows | s / candidate-window, wall / CPU | "
             "cost model s / candidate-window | peak RSS GiB | estimate GiB (without / with leader copy) |",
             "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    scopes, skips, records = [], [], {}
    for name, r in results["sizes"].items():
        records[name] = [r["machine"]]
        if r["status"] != "done":
            skips.append(f"- {name} ({_size(r['params'])}): {r['status']}: {r['reason']}")
            continue
        for phase, p in r["phases"].items():
            cw = p.get("evaluated_windows")
            per = f"{_s(p['step'][0] / cw)} / {_s(p['cpu_per_candidate_window'])}" if cw else "-"
            model = "-" if not cw else "-".join(map(_s, p["model_per_candidate_window"]))
            cws = f"{cw} of {p['exhaustive_windows']}" if cw else "-"
            est = f"{_gib(p['estimate_needed'])} / {_gib(p['estimate_peak'])}" if "estimate_peak" in p else "-"
            lines.append(f"| {name} | {_size(r['params'])} | {r['dtype']} | {phase} | {_s(p['wall'])} | {_s(p['cpu'])} | "
                         f"{cws} | {per} | {model} | {_gib(p['peak_rss'])} | {est} |")
        steps = [(k, p) for k, p in r["phases"].items() if "pool" in p]
        scope = "; ".join(f"{k} {p['candidates']} of {p['pool']}" for k, p in steps)
        part = r["candidates"] is not None and any(p["candidates"] < p["pool"] for _, p in steps)
        at = f", commit {r['commit']}" if r.get("commit") else ""
        line = (f"- {name}: `{r['command']}` ({r['date']}{at}), {r['windows']} windows x {r['seqlen']} tokens, "
                f"{r['threads']} thread{'s' if r['threads'] != 1 else ''}, load average {'/'.join(map(str, r['load_average_start']))} at the start "
                f"and {'/'.join(map(str, r['machine']['load_average']))} at the end; candidates scored: {scope}")
        line += (" (evenly spaced through the depth: the step times are not a full step's, only the per "
                 "candidate-window figures compare)" if part else "")
        t = r["timing"]
        line += (f"; the cost model's one-layer timing (wall, load average {t['load']:.1f}): attention "
                 f"{_s(t['attn'][0])}-{_s(t['attn'][1])} s, MLP {_s(t['mlp'][0])}-{_s(t['mlp'][1])} s, LM head "
                 f"{_s(t['head'][0])}-{_s(t['head'][1])} s a window")
        for k, p in steps:
            if p.get("estimate_seconds"):
                lo, hi = p["estimate_seconds"]
                took = r["phases"]["dense pass"]["wall"] + p["wall"]
                line += f"; {k} with the dense pass took {_s(took)} s, estimate {_s(lo)}-{_s(hi)} s"
        for method in ONE_SHOT:
            p = r["phases"].get(method, {})
            if p.get("estimate_seconds"):  # timed in the pass's own process right after it (load average)
                lo, hi = p["estimate_seconds"]
                later = p.get("estimate_timed")
                line += (f"; {method} took {_s(p['wall'])} s, estimate {_s(lo)}-{_s(hi)} s (timed at load average "
                         f"{p['estimate_load']:.1f}"
                         + (f", afterwards, by `{later['command']}` ({later['date']})" if later else "") + ")")
        for method, why in r.get("not_run", {}).items():
            line += f"; {method} not run: {why}"
        for method, p in r["phases"].items():
            if "added" in p:  # a one-shot pass run later on the same seeded checkpoint (--add-one-shots)
                a = p["added"]
                line += (f"; {method} added by `{a['command']}` ({a['date']}"
                         f"{', commit ' + a['commit'] if a.get('commit') else ''}{', ' + a['note'] if a.get('note') else ''})")
        scopes.append(line + (f". Note: {r['note']}" if r.get("note") and r["note"] not in r["command"] else ""))
    lines += ["", *scopes, *skips, "", *machine.table_lines(records)]
    return "\n".join(lines) + "\n"


def _outside(x: float, lo: float, hi: float) -> float:
    """0 where lo <= x <= hi, else x's relative distance from the nearer end (negative below)."""
    return 0.0 if lo <= x <= hi else x / hi - 1 if x > hi else x / lo - 1


def summary(results: dict[str, Any], configs: Path = HERE / "configs") -> str:
    """One row per size, for the README: CPU seconds per candidate-window of each racing step against the
    cost model's range; their growth from the smallest size against the growth of the parameters and of the
    arithmetic the candidates did (`work_per_candidate_window`); each phase's peak RSS against the estimate
    (the worst phase named)."""
    lines = ["| model | params | dtype | blockpruner s / candidate-window (cost model) | layer-ppl s / candidate-window "
             "(cost model) | blockpruner's time from the smallest size, for its parameters' and FLOPs' growth | "
             "peak RSS outside the estimate, worst phase |",
             "|---|---:|---|---:|---:|---:|---:|"]
    done = [(n, r) for n, r in results["sizes"].items() if r["status"] == "done"]

    def flops(name: str, r: dict[str, Any]) -> float | None:
        return work_per_candidate_window(configs / config_name(name), r["phases"]["blockpruner racing"], r["seqlen"])

    work = {name: flops(name, r) for name, r in done if "blockpruner racing" in r["phases"]}
    # growth from the smallest size run in the same precision: bf16 and fp32 run at different speeds
    base = {}
    for name, r in done:
        if name in work and r["dtype"] not in base:
            base[r["dtype"]] = (r["params"], r["phases"]["blockpruner racing"]["cpu_per_candidate_window"], work[name])
    for name, r in done:
        cells = []
        for label in ("blockpruner racing", "layer-ppl racing"):
            p = r["phases"].get(label)
            cells.append("-" if p is None else f"{_s(p['cpu_per_candidate_window'])} "
                         f"({'-'.join(map(_s, p['model_per_candidate_window']))})")
        p = r["phases"].get("blockpruner racing")
        b = base.get(r["dtype"])
        growth = "-"
        if p and b:
            growth = (f"{p['cpu_per_candidate_window'] / b[1]:.2f}x for {r['params'] / b[0]:.2f}x parameters"
                      + (f", {work[name] / b[2]:.2f}x FLOPs" if work[name] and b[2] else "")
                      + (f" (from {_size(b[0])} in {r['dtype']})" if len(base) > 1 else ""))
        # each phase against the estimate's range, without the leader copy to with it (a step holds it or
        # not, as free memory allows): 0 inside, else how far outside; the worst phase
        worst = max(((k, _outside(q["peak_rss"], q["estimate_needed"], q["estimate_peak"]))
                     for k, q in r["phases"].items() if "estimate_peak" in q), key=lambda kv: abs(kv[1]))
        cells += [growth, f"{worst[1]:+.0%} ({worst[0]})" if worst[1] else "inside, every phase"]
        lines.append(f"| {name} | {_size(r['params'])} | {r['dtype']} | " + " | ".join(cells) + " |")
    for name, r in results["sizes"].items():
        if r["status"] != "done":
            lines.append(f"| {name} | {_size(r['params'])} | - | {r['status']}: {r['reason']} | | | |")
    fits = [line_in_parameters(dtype, [(r["params"], r["phases"]["blockpruner racing"]["cpu_per_candidate_window"], n)
                                       for n, r in done if n in work and r["dtype"] == dtype]) for dtype in base]
    return "\n".join(lines + [f for f in fits if f]) + "\n"


def line_in_parameters(dtype: str, points: list[tuple[int, float, str]]) -> str | None:
    """blockpruner's seconds per candidate-window against a line in the parameters, a + b x params, and
    against a proportion, b x params, each fitted by least squares of the relative error; the size farthest
    from each. None under three sizes (two fix any line)."""
    import numpy as np

    if len(points) < 3:
        return None
    P = np.array([p for p, _, _ in points], dtype=float)
    y = np.array([t for _, t, _ in points])
    (a, b), *_ = np.linalg.lstsq(np.stack([1 / y, P / y], 1), np.ones_like(y), rcond=None)
    b0 = float((P / y).sum() / (P ** 2 / y ** 2).sum())

    def farthest(fit):
        off = fit / y - 1
        i = int(np.abs(off).argmax())
        return f"{off[i]:+.0%} at {points[i][2]}"

    return (f"\nIn {dtype} ({len(points)} sizes), blockpruner's s / candidate-window is a line in the parameters, "
            f"{a:.2f} s + {b * 1e9:.2f} s per billion, within {farthest(a + b * P)}; in proportion to the "
            f"parameters alone ({b0 * 1e9:.2f} s per billion) it is off by up to {farthest(b0 * P)}.")


def figure(results: dict[str, Any], out: Path, configs: Path = HERE / "configs") -> Path:
    """Time per candidate-window and peak memory against parameters, measured (points) and the cost
    model's (lines: the one-layer timing's range per size; estimate's peak without and with the leader);
    within a precision, the time the smallest size's would grow to in proportion to the parameters and to
    the FLOPs (`work_per_candidate_window`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [(r["params"], r) for r in results["sizes"].values() if r["status"] == "done"]
    dtypes = list(dict.fromkeys(r["dtype"] for _, r in done))

    def tag(dtype: str) -> str:
        return f" ({dtype})" if len(dtypes) > 1 else ""

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 6.4))
    for label, marker, color in (("blockpruner", "o", "C0"), ("layer-ppl", "s", "C1")):
        for how, fill in (("racing", color), ("exhaustive", "none")):
            got = [(n, r["phases"][f"{label} {how}"]) for n, r in done if f"{label} {how}" in r["phases"]]
            if got:
                ax1.scatter([n for n, _ in got], [p["cpu_per_candidate_window"] for _, p in got], marker=marker,
                            facecolors=fill, edgecolors=color, label=f"{label} {how}, measured CPU")
                # wall time too: the cost model's timing is wall time, at the load of its moment
                ax1.scatter([n for n, _ in got], [p["step"][0] / p["evaluated_windows"] for _, p in got], marker="x"
                            if how == "racing" else "+", color=color, label=f"{label} {how}, measured wall")
        # the cost model's lines through the racing steps (every size has one; an exhaustive step's
        # candidates are the same, so is its model)
        for dtype in dtypes:  # a precision's own line: fp32 and bf16 run at different speeds
            pts = [(n, r["phases"][f"{label} racing"]) for n, r in done
                   if f"{label} racing" in r["phases"] and r["dtype"] == dtype]
            for i, style in ((0, "--"), (1, ":")):  # a marker too: one size alone draws no line
                ax1.plot([n for n, _ in pts], [p["model_per_candidate_window"][i] for _, p in pts], style, marker="_",
                         markersize=12, color=color,
                         label=f"{label}, cost model ({'fastest' if i == 0 else 'slowest'} timed layer){tag(dtype)}")
        for dtype in dtypes if label == "blockpruner" else ():  # the target, within one precision
            same = [(r["params"], name, r["seqlen"], r["phases"][f"{label} racing"]) for name, r in results["sizes"].items()
                    if r["status"] == "done" and f"{label} racing" in r["phases"] and r["dtype"] == dtype]
            if len(same) > 1:
                xs, c0 = [n for n, *_ in same], same[0][3]["cpu_per_candidate_window"]
                ax1.plot(xs, [c0 * n / xs[0] for n in xs], color=color, lw=0.6,
                         label=f"{label}, linear in parameters from the smallest ({dtype})")
                work = [work_per_candidate_window(configs / config_name(name), p, seqlen) for _, name, seqlen, p in same]
                if all(work):
                    ax1.plot(xs, [c0 * w / work[0] for w in work], "-.", color=color, lw=0.8,
                             label=f"{label}, linear in FLOPs from the smallest ({dtype})")
    ax1.set(xscale="log", yscale="log", xlabel="parameters", ylabel="seconds per candidate-window",
            title="Time per candidate-window")
    for k, dtype in enumerate(dtypes):
        rows = []
        for n, r in done:
            scoring = [p for p in r["phases"].values() if "estimate_peak" in p]
            if r["dtype"] == dtype and scoring:
                rows.append((n, max(p["peak_rss"] for p in scoring), max(p["estimate_needed"] for p in scoring),
                             max(p["estimate_peak"] for p in scoring)))
        xs = [n for n, *_ in rows]
        ax2.scatter(xs, [m / GiB for _, m, _, _ in rows], marker="os^"[k % 3], color="C2",
                    label=f"peak RSS, measured{tag(dtype)}")
        ax2.plot(xs, [e / GiB for _, _, e, _ in rows], "--", marker="_", markersize=12, color=f"C{2 * k}",
                 label=f"estimate, without the leader copy{tag(dtype)}")
        ax2.plot(xs, [e / GiB for *_, e in rows], ":", marker="_", markersize=12, color=f"C{2 * k + 1}",
                 label=f"estimate, with the leader copy{tag(dtype)}")
    ax2.set(xscale="log", yscale="log", xlabel="parameters", ylabel="GiB", title="Peak memory (the heaviest phase of each)")
    sizes = sorted({n for n, _ in done})
    for ax in (ax1, ax2):  # ticks at the sizes measured, named as the tables name them
        ax.set_xticks(sizes, [_size(n) for n in sizes])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


if __name__ == "__main__":
    sys.exit(main())

"""Is bf16 fast on this machine? Matrix products and SmolLM2's blocks, fp32 against bf16, one thread.

Prints what `blockprune.scoring.twoprecision.native_fast_dtype` detects, one-thread GFLOP/s of SmolLM2-shaped
matrix products in fp32 and bf16, and the CPU seconds of one 256-token window through each kind of block and
the head in each precision; writes bench/precision/results/<machine tag>.json (`blockprune.machine`: a run on
another kind of CPU writes beside the others) with the machine's record, and prints the table; `--show FILE`
prints a results file's table again.

    python bench/precision/run.py
    python bench/precision/run.py --show bench/precision/results/amd-epyc-avx2.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from blockprune import machine, models
from blockprune.scoring.twoprecision import cpu_flags, native_fast_dtype
from blockprune.view import BlockView

HERE = Path(__file__).resolve().parent
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def cpu_seconds(fn, repeat: int = 5) -> float:
    fn()  # warm-up
    t = time.process_time()
    for _ in range(repeat):
        fn()
    return (time.process_time() - t) / repeat


def gflops(dtype: torch.dtype, m: int, k: int, n: int) -> float:
    x, w = torch.randn(m, k, dtype=dtype), torch.randn(n, k, dtype=dtype)
    return 2 * m * k * n / cpu_seconds(lambda: F.linear(x, w)) / 1e9


def block_seconds(dtype: str) -> dict[str, float]:
    """CPU seconds of one 256-token window through all attention blocks, all MLP blocks, and the head."""
    model, _ = models.load("smollm2-135m", dtype)
    view = BlockView(model)
    ids = torch.randint(1, 1000, (1, 256), generator=torch.Generator().manual_seed(0))
    prep = view.prepare(ids)
    h, out = prep.hidden, {"attn": 0.0, "mlp": 0.0}
    for b in view.blocks:
        out[b.kind] += cpu_seconds(lambda: view.run(h, prep, frozenset(), b.index, b.index + 1), repeat=2)
        h = view.run(h, prep, frozenset(), b.index, b.index + 1)
    out["head"] = cpu_seconds(lambda: view.window_nll(h, ids), repeat=2)
    out["total"] = sum(out.values())
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--show", metavar="FILE", help="print the table of a results file and exit")
    args = ap.parse_args()
    if args.show:
        print(table(json.loads(Path(args.show).read_text())), end="")
        return
    torch.set_num_threads(1)
    shapes = {"576x1536 (MLP)": (256, 576, 1536), "576x49152 (head)": (256, 576, 49152)}
    products = {name: {d: gflops(DTYPES[d], *s) for d in DTYPES} for name, s in shapes.items()}
    blocks = {d: block_seconds(d) for d in DTYPES}
    flags = sorted(cpu_flags() & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})
    out = {"command": "python bench/precision/run.py", "date": time.strftime("%Y-%m-%d %H:%M"),
           "machine": machine.describe(), "cpu_flags": flags,
           "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "native_fast_dtype": native_fast_dtype("cpu"), "gflops": products, "window_cpu_seconds": blocks}
    path = machine.write_results(HERE / "results", out)
    print(table(out), end="")
    print(f"wrote {path.relative_to(HERE.parents[1])}")


def table(out: dict) -> str:
    """The Markdown of one results file: its command, date and machine, products and a window per precision."""
    products, blocks = out["gflops"], out["window_cpu_seconds"]
    lines = ["# bf16 against fp32 on this machine (bench/precision)", "",
             f"Command: `{out['command']}` ({out['date']}; machine: {machine.summary(out['machine'])}). CPU flags of "
             f"interest: {', '.join(out['cpu_flags']) or 'none'}; torch CPU capability {out['torch_cpu_capability']}; "
             f"native fast precision detected: {out['native_fast_dtype']}.", "",
             "| one-thread product (256 rows) | fp32 GFLOP/s | bf16 GFLOP/s | bf16 / fp32 |", "|---|---:|---:|---:|"]
    for name, r in products.items():
        lines.append(f"| {name} | {r['fp32']:.1f} | {r['bf16']:.1f} | {r['bf16'] / r['fp32']:.2f}x |")
    lines += ["", "| one 256-token window, CPU s | fp32 | bf16 | fp32 / bf16 |", "|---|---:|---:|---:|"]
    for part in ("attn", "mlp", "head", "total"):
        lines.append(f"| {part} | {blocks['fp32'][part]:.3f} | {blocks['bf16'][part]:.3f} | "
                     f"{blocks['fp32'][part] / blocks['bf16'][part]:.2f}x |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

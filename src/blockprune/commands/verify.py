"""blockprune verify: re-score a finished run and confirm the recorded calibration perplexity."""
from __future__ import annotations

from . import add_data_dir, device_arg

NAME = "verify"
HELP = "re-score a finished plan and confirm its recorded perplexity"
DESCRIPTION = ("Rebuild the calibration windows, check they and the model are the plan's, re-score the final "
               "removal (the plan applied in memory to the base model, and the exported checkpoint) and compare with the recorded perplexity. "
               "Exit status 0 when they agree within 1e-4 relative, 1 when they do not.")


def add_arguments(p) -> None:
    p.add_argument("run_dir", help="a finished run folder")
    add_data_dir(p)
    p.add_argument("--device", default="cpu", type=device_arg, help="torch device")


def run(args) -> int:
    from ..verify import verify

    v = verify(args.run_dir, args.data_dir, args.device)
    print(f"recorded calibration perplexity {v.recorded:.6f}")
    if v.masked is not None:
        print(f"  plan applied in memory       {v.masked:.6f}")
    if v.checkpoint is not None:
        print(f"  exported checkpoint          {v.checkpoint:.6f}")
    print("verified" if v.ok() else "MISMATCH")
    return 0 if v.ok() else 1

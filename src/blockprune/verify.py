"""Re-score a finished plan and confirm its recorded calibration perplexity (and its checkpoint's)."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from .data import load_windows
from .errors import UserError
from .export import load as load_checkpoint
from .window_nll import perplexity
from .plan import Plan
from .view import BlockView


@dataclass
class Verdict:
    recorded: float
    masked: float | None  # the plan applied in memory to its base model (Plan.apply)
    checkpoint: float | None  # the exported checkpoint, where the run folder has one

    def ok(self, rel: float = 1e-4) -> bool:
        got = [v for v in (self.masked, self.checkpoint) if v is not None]
        return bool(got) and all(math.isclose(v, self.recorded, rel_tol=rel) for v in got)


def verify(run_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None, device: str = "cpu") -> Verdict:
    run_dir = Path(run_dir)
    plan = Plan.load(run_dir)
    if plan.status != "done":
        raise UserError(f"{run_dir} holds an unfinished run; finish it with `blockprune prune ... --resume` first")
    o = plan.options
    net, tok = plan.load_base(device)
    windows = load_windows(o["calibration"], tok, o["seqlen"], nsamples=o["nsamples"], seed=o["seed"],
                           data_dir_=data_dir)
    if windows.sha256() != plan.calibration["sha256"]:
        raise UserError("the calibration windows differ from the plan's (another data file or tokenizer?); "
                        "give the --data-dir the run used")
    masked = perplexity(BlockView(plan.apply(net, in_place=True)), windows)
    ckpt = None
    if (run_dir / "model" / "config.json").exists():
        ckpt = perplexity(BlockView(load_checkpoint(run_dir / "model", device=device)), windows)
    return Verdict(plan.outcome.ppl, masked, ckpt)

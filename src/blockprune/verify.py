"""Re-score a finished plan and confirm its recorded calibration perplexity (and its checkpoint's)."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from . import models
from .data import load_windows
from .errors import UserError
from .export import load as load_checkpoint
from .perplexity import perplexity
from .plan import Plan
from .view import BlockView


@dataclass
class Verdict:
    recorded: float
    masked: float | None  # the base model with the plan's blocks masked (block plans)
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
    net, tok = models.load(plan.model["source"], o.get("dtype", "fp32"), device)
    if models.fingerprint(net) != plan.model["sha256"]:
        raise UserError(f"the model {plan.model['source']} is not the one this plan was made on (weights differ)")
    windows = load_windows(o["calibration"], tok, o["seqlen"], nsamples=o["nsamples"], seed=o["seed"],
                           data_dir_=data_dir)
    if windows.sha256() != plan.calibration["sha256"]:
        raise UserError("the calibration windows differ from the plan's (another data file or tokenizer?); "
                        "give the --data-dir the run used")
    last = plan.width or (plan.steps[-1] if plan.steps else {"ppl": plan.dense["ppl"]})
    masked = perplexity(BlockView(net), windows, plan.removed_blocks) if plan.width is None else None
    ckpt = None
    if (run_dir / "model" / "config.json").exists():
        ckpt = perplexity(BlockView(load_checkpoint(run_dir / "model", device=device)), windows)
    return Verdict(last["ppl"], masked, ckpt)

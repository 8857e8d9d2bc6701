"""What a healing run is asked to do: `HealOptions`, with the BlockPruner appendix's defaults."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .. import models
from ..errors import UserError

PAPER_ROWS = 8000  # Alpaca rows in BlockPruner's healing; the offline copy has fewer
SCHEDULES = ("linear", "cosine", "constant")


@dataclass
class HealOptions:
    """Every setting of a healing run; all but the logging cadence bind a resume."""

    data: str = "alpaca"
    rows: int | None = None  # instruction rows sampled (seeded); None: all there are
    val_size: int = 100  # examples held out for validation loss (at most a fifth of the data)
    rank: int = 32
    alpha: float = 10.0
    dropout: float = 0.05
    target_modules: str = "all-linear"  # or a comma list of module names, e.g. "q_proj,v_proj"
    lr: float = 2e-4
    schedule: str = "linear"
    warmup_steps: int = 0
    epochs: float = 2.0
    steps: int | None = None  # optimizer steps; overrides epochs
    batch_size: int = 1
    accumulation: int = 4
    max_length: int = 256
    max_grad_norm: float | None = 1.0
    seed: int = 42
    dtype: str = "fp32"
    save_every: int = 50
    eval_every: int | None = None  # default: save_every

    def validate(self) -> None:
        for name in ("rank", "batch_size", "accumulation", "save_every"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1 (got {getattr(self, name)})")
        if self.steps is not None and self.steps < 1:
            raise UserError(f"--steps must be at least 1 (got {self.steps})")
        if self.eval_every is not None and self.eval_every < 1:
            raise UserError(f"--eval-every must be at least 1 (got {self.eval_every})")
        if self.rows is not None and self.rows < 2:
            raise UserError(f"--rows must be at least 2 (got {self.rows})")
        if self.epochs <= 0 or self.lr <= 0 or self.alpha <= 0:
            raise UserError("--epochs, --lr and --alpha must be positive")
        if not 0 <= self.dropout < 1:
            raise UserError(f"--dropout must be in [0, 1) (got {self.dropout})")
        if self.max_length < 2:
            raise UserError(f"--max-length must be at least 2 (got {self.max_length})")
        if self.val_size < 0 or self.warmup_steps < 0:
            raise UserError("--val-size and --warmup-steps cannot be negative")
        if self.schedule not in SCHEDULES:
            raise UserError(f"--schedule must be one of {', '.join(SCHEDULES)} (got {self.schedule!r})")
        if self.dtype not in models.DTYPES:
            raise UserError(f"--dtype must be one of {', '.join(models.DTYPES)} (got {self.dtype!r})")

    def recorded(self) -> dict[str, Any]:
        # how often we save and validate changes nothing that is learned
        return {k: v for k, v in asdict(self).items() if k not in ("save_every", "eval_every")}

    def targets(self) -> str | list[str]:
        if self.target_modules == "all-linear":
            return "all-linear"  # peft: every nn.Linear except the output head
        return [t.strip() for t in self.target_modules.split(",") if t.strip()]

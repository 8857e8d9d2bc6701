"""What a greedy step ranks candidates by, given each candidate's calibration perplexity.

- `ppl`: the perplexity itself (BlockPruner's criterion): the least harmful unit goes first, whatever it
  costs. With blocks of different sizes it spends a parameter budget on many small units (in a GQA model
  an attention block is a third of an MLP block).
- `per-param`: the rise in calibration NLL (log perplexity) over the current model per parameter removed,
  as ZipLM and FLAP weigh a unit's loss against its size: under a parameter budget, the unit that buys
  the most parameters for the least loss goes first.

Both are functions of a candidate's complete score, so every exact scorer ranks the same; a racing scorer
races on the criterion itself (it is given the candidates' sizes, see `scoring.racing.per_size`)."""
from __future__ import annotations

import math
from typing import Callable

from ..errors import UserError

#: criterion -> rank value (lower: remove first) from (candidate ppl, current model's ppl, candidate params)
CRITERIA: dict[str, Callable[[float, float, int], float]] = {
    "ppl": lambda ppl, base, params: ppl,
    "per-param": lambda ppl, base, params: (math.log(ppl) - math.log(base)) * 1e6 / params if ppl > 0 else math.inf,
}
SIZED = ("per-param",)  # criteria that need each candidate's size


def check(name: str) -> None:
    if name not in CRITERIA:
        raise UserError(f"--criterion must be one of {', '.join(CRITERIA)} (got {name!r})")


def value(name: str, ppl: float, base: float, params: int) -> float:
    """The rank value; inf for a candidate whose score is not finite (ranked last). Under `ppl` the score
    may be any metric's (one-shot methods rank Block Influence or depth through it)."""
    if not math.isfinite(ppl):
        return math.inf
    v = CRITERIA[name](ppl, base, params)
    return v if math.isfinite(v) else math.inf

"""BlockPruner (Zhong et al., 2024): iterative greedy removal of attention/MLP blocks by calibration
perplexity; its "- block" ablation, the same search over whole layers; and the joint search, whole layers
and single blocks in one pool, ranked by perplexity rise per parameter removed."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..declared import Option, names
from ..errors import UserError
from ..search import candidate_units, greedy
from ..search.criteria import CRITERIA
from .registry import Job, MethodDefaults, register


@dataclass(frozen=True)
class IterativePerplexity(MethodDefaults):
    name: str
    granularity: str
    summary: str
    #: the candidates: "block", "layer", or "joint" (both); granularity says what --num-blocks counts
    candidates: str = ""
    #: the ranking criterion when --criterion is not among this method's options (search.criteria)
    criterion: str = "ppl"
    options: tuple[Option, ...] = ()
    uses_scorer: ClassVar[bool] = True
    ranks_by_metric: ClassVar[bool] = True
    iterative: ClassVar[bool] = True

    def validate(self, options: Any) -> None:
        if self.candidates == "joint":
            if options.num_blocks is not None:
                raise UserError(f"--method {self.name} removes layers and blocks of different sizes, so a count of "
                                f"units means nothing: give --ratio instead of --num-blocks")
            if options.block_type != "mix":
                raise UserError(f"--method {self.name} considers every attention and MLP block and every layer; "
                                f"drop --block-type {options.block_type}")
        if self._criterion(options) != "ppl" and options.metric != "ppl":
            raise UserError(f"--criterion {self._criterion(options)} weighs the perplexity rise by size; it cannot "
                            f"rank by --metric {options.metric}: drop one of them")

    def _criterion(self, options: Any) -> str:
        return getattr(options, "criterion", "ppl") if "criterion" in names(self.options) else self.criterion

    def run(self, job: Job, plan):
        block_type = job.block_type if self.granularity == "block" else "mix"
        candidates = candidate_units(job.view, self.candidates or self.granularity, block_type)
        return greedy(job.view, job.scorer, plan, candidates,
                      num_blocks=job.num_blocks, ratio=job.ratio, on_step=job.on_step,
                      progress_factory=job.progress_factory, criterion=self._criterion(job.options))


#: --criterion (recorded only when changed: plans made before it stay byte-identical)
CRITERION = Option("criterion", "ppl", choices=tuple(CRITERIA), record="changed", commands=("prune", "estimate"),
                   help="what blockpruner ranks candidates by: ppl (calibration perplexity, the paper's) or "
                        "per-param (its rise per parameter removed, so the --ratio budget buys the most parameters "
                        "for the least loss)")

register(IterativePerplexity("blockpruner", "block", "iterative perplexity search over attention/MLP blocks",
                             options=(CRITERION,)))
register(IterativePerplexity("layer-ppl", "layer", "iterative perplexity search over whole layers (the '- block' ablation)"))
register(IterativePerplexity(
    "blockpruner-joint", "block", "iterative search over whole layers and single blocks together, each step "
    "removing the unit with the least perplexity rise per parameter (--ratio only)",
    candidates="joint", criterion="per-param"))

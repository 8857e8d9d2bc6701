"""BlockPruner (Zhong et al., 2024): iterative greedy removal of attention/MLP blocks by calibration
perplexity; its "- block" ablation, the same search over whole layers; and the joint search, whole layers
and single blocks in one pool, ranked by perplexity rise per parameter removed."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

from ..declared import Option, names
from ..errors import UserError
from ..plan import Plan
from ..search import candidate_units, greedy
from ..search.criteria import CRITERIA
from ..search.greedy import same_steps
from ..view import BlockView
from .registry import Job, MethodDefaults, register


BUDGET = ("ratio", "num_blocks")  # run-wide options: how far a greedy search goes


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

    @property
    def extendable(self) -> tuple[str, ...]:
        # the budget: a greedy step never looks ahead, so a resume under another --ratio or --num-blocks keeps
        # the steps it shares with a fresh run under that budget (extend) and searches on from there
        return super().extendable + BUDGET

    def extend(self, plan: Plan, options: Any, view: BlockView) -> Plan:
        keep = same_steps(plan, view, self._candidates(view, options.block_type),
                          num_blocks=options.num_blocks, ratio=options.ratio)
        return replace(plan, steps=plan.steps[:keep], status="running")

    def _candidates(self, view: BlockView, block_type: str) -> list:
        block_type = block_type if self.granularity == "block" else "mix"
        return candidate_units(view, self.candidates or self.granularity, block_type)

    def run(self, job: Job, plan):
        candidates = self._candidates(job.view, job.block_type)
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

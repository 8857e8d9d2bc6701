"""BlockPruner (Zhong et al., 2024): iterative greedy removal of attention/MLP blocks by calibration
perplexity; and its "- block" ablation, the same search over whole layers."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..search import greedy, units
from .registry import Job, MethodDefaults, register


@dataclass(frozen=True)
class IterativePerplexity(MethodDefaults):
    name: str
    granularity: str
    summary: str
    uses_scorer: ClassVar[bool] = True
    ranks_by_metric: ClassVar[bool] = True
    iterative: ClassVar[bool] = True

    def run(self, job: Job, plan):
        block_type = job.block_type if self.granularity == "block" else "mix"
        return greedy(job.view, job.scorer, plan, units(job.view, self.granularity, block_type),
                      num_blocks=job.num_blocks, ratio=job.ratio, on_step=job.on_step,
                      progress_factory=job.progress_factory)


register(IterativePerplexity("blockpruner", "block", "iterative perplexity search over attention/MLP blocks"))
register(IterativePerplexity("layer-ppl", "layer", "iterative perplexity search over whole layers (the '- block' ablation)"))

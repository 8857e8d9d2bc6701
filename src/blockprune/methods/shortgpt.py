"""ShortGPT (Men et al., 2024): Block Influence of each layer, 1 - cos(layer input, layer output)
averaged over calibration tokens, from one pass of the dense model; the lowest layers go at once."""
from __future__ import annotations

import time
from dataclasses import dataclass

from ..scoring.local import unit_stats
from ..search.greedy import candidate_units
from .oneshot import remove_ranked, saved_scores
from .registry import Job, MethodDefaults, register


@dataclass(frozen=True)
class LayerMetricOneShot(MethodDefaults):
    name: str
    metric: str  # a local metric of `blockprune.scoring.local`
    summary: str
    granularity: str = "layer"

    def run(self, job: Job, plan):
        cands = candidate_units(job.view, "layer")
        scores, t0 = saved_scores(plan), time.perf_counter()
        if scores is None:
            bar = job.progress_factory(1, len(cands)) if job.progress_factory else None
            stats = unit_stats(job.view, job.windows, [u.blocks for u in cands], self.metric,
                               batch_size=job.batch_size, progress=bar.update if bar else None)
            scores = dict(zip((u.name for u in cands), stats))
        remove_ranked(job, plan, cands, scores, self.metric, len(job.windows), time.perf_counter() - t0)
        return plan


register(LayerMetricOneShot("shortgpt", "bi", "ShortGPT: remove the layers of lowest Block Influence (1 - cos in/out), one shot"))

"""Width pruning methods: LLM-BIP (Wu, 2024) and its two baselines, one code path differing only in
the unit score (see blockprune/width/scores.py and docs/llm-bip.md):

- `llm-bip`: activation x weight, heads scaled by the block-wise propagation factor 1 + ||W_up|| ||W_down||
- `width-local`: activation x weight without that factor (Wanda/FLAP-style local score)
- `width-magnitude`: L2 norm of each unit's weights (no calibration pass)

Options (PruneOptions / CLI): `ratio` (share of all parameters to remove; required), `allocation`
(uniform | global), `gqa` (groups | heads), `layers` (which layers are pruned; default 1:-1, the
first and last stay dense). The method writes the plan's `width` record; it takes no steps."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..declared import Option
from ..errors import UserError
from ..window_nll import perplexity
from ..plan import Plan
from ..view import BlockView
from ..width.allocation import ALLOCATIONS, GQA
from .registry import Job, MethodDefaults, register

#: the width methods' options (prune's "width methods" group; compare picks --allocation as method:allocation)
WIDTH_OPTIONS = (
    Option("allocation", "uniform", choices=ALLOCATIONS, commands=("prune", "estimate"), group="width",
           help="uniform: the same share of heads and channels in every pruned layer; global: one ranking of all "
                "units by score per parameter"),
    Option("gqa", "groups", choices=GQA, commands=("prune", "estimate"), group="width",
           help="remove whole KV groups with their query heads, or query heads evenly from every group"),
    Option("layers", "1:-1", commands=("prune", "estimate"), group="width",
           help="layers to prune: a range a:b (1:-1 keeps the first and last dense), 'all', or i,j,k"),
)


def width_options(options: Any):
    """The width options out of a PruneOptions (or anything with those attributes; defaults otherwise)."""
    from ..width import WidthOptions

    defaults = WidthOptions()
    return WidthOptions(**{k: getattr(options, k, getattr(defaults, k)) for k in ("allocation", "gqa", "layers")})


@dataclass(frozen=True)
class WidthMethod(MethodDefaults):
    name: str
    score: str
    summary: str
    granularity: str = "width"
    options: ClassVar[tuple[Option, ...]] = WIDTH_OPTIONS

    def validate(self, options: Any) -> None:
        width_options(options).validate()
        if options.num_blocks is not None:  # refused here, before a plan is written
            raise UserError(f"--method {self.name} removes a share of the parameters: give --ratio r, "
                            f"not --num-blocks")

    def check_inputs(self, plan: Plan, view: BlockView, options: Any) -> None:
        from .. import width

        width.check(view, self._options(options))

    def _options(self, options: Any):
        opts = width_options(options)
        opts.score = self.score
        return opts

    def describe(self, plan: Plan) -> str:
        """One line: what a width plan keeps."""
        heads = [len(d["kept_heads"]) for d in plan.width["layers"] if d["kept_heads"] is not None]
        chans = [len(d["kept_channels"]) for d in plan.width["layers"] if d["kept_channels"] is not None]
        span = lambda xs: f"{min(xs)}" if min(xs) == max(xs) else f"{min(xs)}-{max(xs)}"  # noqa: E731
        return (f"{len(plan.width['layers'])} layers narrowed to {span(heads) if heads else '-'} query heads and "
                f"{span(chans) if chans else '-'} MLP channels ({plan.width['allocation']} allocation, "
                f"gqa={plan.width['gqa']})")

    def run(self, job: Job, plan: Plan) -> Plan:
        from .. import width

        if job.num_blocks is not None or job.ratio is None:
            raise UserError(f"{self.name} removes a share of the parameters: give --ratio r, not --num-blocks")
        opts = self._options(job.options)
        result = width.prune_width(job.view, job.windows, job.ratio, opts, job.batch_size)
        plan.width = width.record(result, opts)
        with result.view() as pruned:  # the dense model masked as the narrowed one: no copy of the weights
            plan.width["ppl"] = perplexity(pruned, job.windows, batch_size=job.batch_size)
        return plan


register(WidthMethod("llm-bip", "llm-bip", "LLM-BIP width pruning: heads and MLP channels by block-wise "
                     "forward importance (--allocation, --gqa, --layers)"))
register(WidthMethod("width-local", "local", "width pruning by activation x weight, no propagation factor"))
register(WidthMethod("width-magnitude", "magnitude", "width pruning by the L2 norm of each unit's weights"))

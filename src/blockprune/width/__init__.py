"""Width pruning: remove attention heads (whole KV groups, or query heads evenly from every group)
and MLP channels, scored by LLM-BIP or a baseline, and write a physically narrower model.

    scores -> allocation -> slicing -> (blockprune.export writes the checkpoint)
    (scores.py: what each unit is worth, and each layer's widths; allocation.py: which units go for a
     parameter target; slicing.py: the narrower copy in memory; modules.py: the adapter's width modules)

`prune_width` does the first three on any supported model (a depth-pruned one included);
`record` / `apply` turn the result into the plan's `width` field and back, so export from a plan
rebuilds the same narrower model without scoring again. docs/llm-bip.md lists every choice."""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..data import Windows
from ..errors import UserError
from ..view import BlockView
from .allocation import ALLOCATIONS, GQA, Keep, LayerUnits, allocate, removed_params
from .modules import modules_for
from .scores import SCORES, LayerScores, collect_activations, score_layers, widths
from .slicing import narrow

__all__ = ["ALLOCATIONS", "GQA", "SCORES", "Keep", "WidthOptions", "WidthResult", "apply", "keep_from_record",
           "narrow", "parse_layers", "prune_width", "record", "widths"]

#: significant digits of the scores kept in plan.json (enough to rank; robust to summation order)
DIGITS = 7


@dataclass
class WidthOptions:
    score: str = "llm-bip"
    allocation: str = "uniform"
    gqa: str = "groups"
    layers: str = "1:-1"  # python slice over layer indices ("1:-1" keeps the first and last dense), "all", or "3,4,7"

    def validate(self) -> None:
        for name, value, allowed in (("the width score", self.score, SCORES),
                                     ("--allocation", self.allocation, ALLOCATIONS), ("--gqa", self.gqa, GQA)):
            if value not in allowed:
                raise UserError(f"{name} must be one of {', '.join(allowed)} (got {value!r})")


def parse_layers(spec: str, num_layers: int) -> list[int]:
    """Layer indices from "all", a python slice "a:b" (negative ends count from the last), or "i,j,k"."""
    spec = spec.strip()
    try:
        if spec == "all":
            layers = list(range(num_layers))
        elif ":" in spec:
            a, _, b = spec.partition(":")
            layers = list(range(num_layers))[slice(int(a) if a else None, int(b) if b else None)]
        else:
            layers = sorted({int(x) for x in spec.split(",")})
    except ValueError:
        raise UserError(f"--layers {spec!r}: give 'all', a range 'a:b' (e.g. 1:-1) or a list '2,3,5'") from None
    bad = [i for i in layers if not 0 <= i < num_layers]
    if bad or not layers:
        raise UserError(f"--layers {spec!r} selects {'no layers' if not layers else f'layers {bad}'}; "
                        f"the model has layers 0..{num_layers - 1}")
    return layers


@dataclass
class WidthResult:
    model: nn.Module  # the narrower copy
    keep: dict[int, Keep]
    scores: dict[int, LayerScores]
    units: dict[int, LayerUnits]
    target_params: int
    removed_params: int
    total_params: int
    tokens: int  # calibration tokens behind the activation norms (0 for magnitude)


def prune_width(view: BlockView, windows: Windows | None, ratio: float, options: WidthOptions,
                batch_size: int = 1) -> WidthResult:
    """Score every unit of the chosen layers, allocate for `ratio` of all parameters, and narrow a copy."""
    options.validate()
    modules_for(view.adapter)  # refuse unsupported families before any work
    layers = parse_layers(options.layers, view.num_layers)
    acts = None
    if options.score != "magnitude":
        if windows is None:
            raise UserError(f"the {options.score} score needs calibration windows")
        acts = collect_activations(view, windows, layers, batch_size)
    scores = score_layers(view, layers, options.score, acts)
    target = int(ratio * view.total_params)
    keep, units = allocate(view.adapter, scores, target, options.allocation, options.gqa)
    return WidthResult(narrow(view.model, keep), keep, scores, units, target, removed_params(units, keep),
                       view.total_params, acts.tokens if acts else 0)


def _rounded(t) -> list[float] | None:
    return None if t is None else [float(f"{float(x):.{DIGITS}g}") for x in t]


def record(result: WidthResult, options: WidthOptions) -> dict:
    """The plan's `width` field: options, totals, and per layer what it keeps and every unit's score."""
    layers = []
    for i, k in sorted(result.keep.items()):
        s = result.scores[i]
        layers.append({"layer": i, "kept_heads": k.heads, "kept_kv": k.kv, "kept_channels": k.channels,
                       "head_scores": _rounded(s.heads), "kv_scores": _rounded(s.groups),
                       "channel_scores": _rounded(s.channels)})
    return {"score": options.score, "allocation": options.allocation, "gqa": options.gqa, "layer_spec": options.layers,
            "target_params": result.target_params, "removed_params": result.removed_params,
            "total_params": result.total_params, "ratio": result.removed_params / result.total_params,
            "activation_tokens": result.tokens, "layers": layers}


def keep_from_record(width: dict) -> dict[int, Keep]:
    return {d["layer"]: Keep(d["kept_heads"], d["kept_kv"], d["kept_channels"]) for d in width["layers"]}


def apply(model: nn.Module, width: dict) -> nn.Module:
    """The narrower copy of `model` that a plan's `width` record describes."""
    return narrow(model, keep_from_record(width))

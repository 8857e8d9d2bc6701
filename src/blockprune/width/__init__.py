"""Width pruning: remove attention heads (whole KV groups, or query heads evenly from every group)
and MLP channels, scored by LLM-BIP or a baseline, and write a physically narrower model.

    scores -> allocation -> slicing [-> bias compensation] -> (blockprune.export writes the checkpoint)
    (registry.py: the scores, each registered by its module, every module of this package imported below:
     scores.py (llm-bip, local, magnitude), wanda_sp.py, flap.py, taylor.py (llm-pruner); stats.py: input
     statistics; allocation.py: which units go for a parameter target; slicing.py: the narrower copy in
     memory; bias.py: FLAP's bias compensation; modules.py: the adapter's width modules)

`prune_width` does the first three on any supported model (a depth-pruned one included);
`record` / `apply` turn the result into the plan's `width` field and back, so export from a plan
rebuilds the same narrower model without scoring again. docs/llm-bip.md lists every choice."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

from ..data import Windows
from ..errors import UserError
from ..registry import import_all
from ..view import BlockView
from . import bias as _bias
from .allocation import ALLOCATIONS, GQA, Keep, LayerUnits, allocate, removed_params
from .modules import has_branch, modules_for
from .registry import SCORES
from .registry import get as get_score
from .scores import LayerScores, widths
from .masking import masked
from .sequential import prune_sequential
from .slicing import narrow

# every module registers its scores: scores.py's own first (llm-bip, the default, leads the listing)
import_all(__name__, __path__, first=("scores",))

__all__ = ["ALLOCATIONS", "GQA", "SCORES", "Keep", "WidthOptions", "WidthResult", "apply", "keep_from_record",
           "narrow", "check", "parse_layers", "prune_width", "record", "widths"]

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


def check(view: BlockView, options: WidthOptions) -> list[int]:
    """Refuse what `options` cannot prune on this model (an unsupported family, biases the score cannot
    fold in, --layers outside the model) before any work; returns the layers to prune."""
    options.validate()
    modules_for(view.adapter)
    if get_score(options.score).compensate:
        _bias.flags(view.adapter)
    return parse_layers(options.layers, view.num_layers)


@dataclass
class WidthResult:
    base: nn.Module  # the model scored, left as it was
    keep: dict[int, Keep]
    scores: dict[int, LayerScores]
    units: dict[int, LayerUnits]
    target_params: int
    removed_params: int
    total_params: int
    tokens: int  # calibration tokens behind the activation norms (0 for magnitude)
    #: bias compensation (flap): per pruned layer the float64 bias added to "o" and "down"
    biases: dict[int, dict[str, torch.Tensor]] | None = None
    bias_params: int = 0  # bias entries the compensation created (zeros included); removed_params is net of them
    info: dict | None = None  # the score's figures (llm-pruner: gradient memory)
    built: nn.Module | None = None  # the narrower copy, where scoring built one (sequential scores) or once asked

    @property
    def model(self) -> nn.Module:
        """The narrower copy (with its compensated biases), built on first use: a second copy of the
        weights, which `view` avoids."""
        if self.built is None:
            self.built = _narrowed(self.base, self.keep, self.biases)
        return self.built

    @contextmanager
    def view(self) -> Iterator[BlockView]:
        """The pruned model to run: the copy where one exists, else the base computing as it would
        (width.masking: no second copy of the weights)."""
        if self.built is not None:
            yield BlockView(self.built)
            return
        with masked(self.base, self.keep, self.biases):
            yield BlockView(self.base)


def prune_width(view: BlockView, windows: Windows | None, ratio: float, options: WidthOptions,
                batch_size: int = 1) -> WidthResult:
    """Score every unit of the chosen layers and allocate for `ratio` of all parameters (with bias
    compensation for scores that ask for it: the removed parameters are then net of the biases it
    creates). The narrower model is the result's `view` (masked) or `model` (a copy, built when asked)."""
    layers = check(view, options)
    score = get_score(options.score)
    if score.needs_data and windows is None:
        raise UserError(f"the {options.score} score needs calibration windows")
    target = int(ratio * view.total_params)
    if score.sequential is not None and options.allocation == "uniform":
        assert not score.compensate
        model, keep, scores, units = prune_sequential(view, windows, layers, target, options.gqa, score.sequential,
                                                      batch_size)
        return WidthResult(view.model, keep, scores, units, target, removed_params(units, keep), view.total_params,
                           windows.ids.numel(), built=model)
    scoring = score.compute(view, windows, layers, batch_size)
    # the biases compensation will surely create (o/down everywhere, all of them in layers left as they are)
    # are freed on top of the target, so that the net removal comes as close to it as the units allow
    # (a score that only reserves them, flap-nobias, thereby selects exactly what its compensated twin does)
    fixed = _compensation_floor(view, layers) if score.compensate or score.reserve_biases else 0
    keep, units = allocate(view.adapter, scoring.scores, target + fixed, options.allocation, options.gqa,
                           rank=score.rank, reduce=score.reduce)
    biases, created = None, 0
    if score.compensate:
        biases = _bias.deltas(view.adapter, keep, scoring.means)
        created = _bias.created(view.adapter, keep)
    return WidthResult(view.model, keep, scoring.scores, units, target, removed_params(units, keep) - created,
                       view.total_params, scoring.tokens, biases, created, scoring.info or None)


def _compensation_floor(view: BlockView, layers: list[int]) -> int:
    adapter = view.adapter
    spec = modules_for(adapter)
    pruned = set(layers)
    floor = _bias.zero_bias_params(adapter, [i for i in range(view.num_layers) if i not in pruned])
    for i in pruned:
        layer = adapter.layers()[i]
        for kind, path, name in (("attn", spec.attn, spec.o), ("mlp", spec.mlp, spec.down)):
            if has_branch(adapter, spec, i, kind):
                lin = layer.get_submodule(path).get_submodule(name)
                floor += lin.out_features if lin.bias is None else 0
    return floor


def _rounded(t) -> list[float] | None:
    return None if t is None else [float(f"{float(x):.{DIGITS}g}") for x in t]


def record(result: WidthResult, options: WidthOptions) -> dict:
    """The plan's `width` field: options, totals, and per layer what it keeps and every unit's score."""
    layers = []
    for i, k in sorted(result.keep.items()):
        s = result.scores[i]
        d = {"layer": i, "kept_heads": k.heads, "kept_kv": k.kv, "kept_channels": k.channels,
             "head_scores": _rounded(s.heads), "kv_scores": _rounded(s.groups), "channel_scores": _rounded(s.channels)}
        if result.biases is not None:  # exact (not rounded): export from the plan must rebuild the same model
            d["bias_compensation"] = {name: [float(x) for x in v] for name, v in sorted(result.biases[i].items())}
        layers.append(d)
    out = {"score": options.score, "allocation": options.allocation, "gqa": options.gqa, "layer_spec": options.layers,
           "target_params": result.target_params, "removed_params": result.removed_params,
           "total_params": result.total_params, "ratio": result.removed_params / result.total_params,
           "activation_tokens": result.tokens, "layers": layers}
    if result.biases is not None:
        out["bias_params"] = result.bias_params
    if result.info:
        out["scoring"] = dict(result.info)
    return out


def keep_from_record(width: dict) -> dict[int, Keep]:
    return {d["layer"]: Keep(d["kept_heads"], d["kept_kv"], d["kept_channels"]) for d in width["layers"]}


def apply(model: nn.Module, width: dict, *, in_place: bool = False) -> nn.Module:
    """The narrower copy of `model` that a plan's `width` record describes (with its compensated biases);
    `in_place` narrows `model` itself instead (for a caller that owns it: no second copy of the weights)."""
    biases = {d["layer"]: {k: torch.tensor(v, dtype=torch.float64) for k, v in d["bias_compensation"].items()}
              for d in width["layers"] if "bias_compensation" in d}
    return _narrowed(model, keep_from_record(width), biases or None, in_place=in_place)


def _narrowed(model: nn.Module, keep: dict[int, Keep], biases: dict[int, dict[str, torch.Tensor]] | None,
              *, in_place: bool = False) -> nn.Module:
    """`narrow` with the compensated biases added: what a result (`WidthResult.model`) and a plan's record
    (`apply`) both rebuild."""
    pruned = narrow(model, keep, in_place=in_place)
    if biases is not None:
        _bias.add(pruned, biases)
    return pruned

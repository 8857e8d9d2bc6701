"""The plan: the one record every method writes, and all that export, eval, report and resume read.

    {
      "format": "blockprune.plan/1", "status": "running" | "done", "method": "blockpruner",
      "model": {"source", "family", "params", "sha256"},
      "calibration": {"source", "rows", "seqlen", "windows", "tokens", "seed", "sha256"},
      "options": {...every option that changes the result...},
      "versions": {"blockprune", "torch", "transformers", "python"},
      "dense": {"ppl", "validation_ppl"},
      "steps": [{"step", "removed", "ppl", "ratio", "scores": {unit: ppl | null}, "evaluated_windows",
                 "exhaustive_windows", "faults": [...], "validation_ppl"}],
      "validation": {"source", "rows", "seqlen", "windows", "tokens", "seed", "sha256"},  # with the monitor
      "removed": ["attn.5", "layer.7", ...],   # units in removal order
      "width": {...}                           # width methods only: see blockprune.width.record
    }

Units are blocks (`attn.<i>`, `mlp.<i>`) or whole layers (`layer.<i>`), with the base model's layer
indices, never renumbered (blockprune.units names them). Wall times are kept out of the plan (in timings.json) so that the same
inputs give a byte-identical plan."""
from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from . import atomic
from .errors import UserError
from .units import expand  # noqa: F401  (re-exported: plan users expand its units)

FORMAT = "blockprune.plan/1"


def versions() -> dict[str, str]:
    import torch
    import transformers

    from . import __version__
    return {"blockprune": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version()}


class Step(TypedDict, total=False):
    """One removal step as plan.json records it (a dict on disk and in memory: keys keep the order given)."""

    step: int
    removed: str  # the unit removed (blockprune.units names it)
    ppl: float  # calibration perplexity with every unit removed so far (full precision)
    ratio: float  # removed parameters / all parameters
    metric: str  # ranked by a metric other than perplexity: its name ...
    score: float | None  # ... and the removed unit's value of it
    scores: dict[str, float | None]  # every candidate's score this step (null: inf/NaN)
    evaluated_windows: int  # candidate-windows run
    exhaustive_windows: int  # candidate-windows a plain scorer would run
    faults: list[str]  # candidates whose score was inf/NaN
    criterion_value: float  # a search ranking by another criterion than perplexity: the chosen unit's value
    partial: dict[str, int]  # racing: candidates that left early, and the windows they ran
    precision: dict[str, Any]  # two-precision racing's record (blockprune.scoring.twoprecision)
    validation_ppl: float | None  # the monitor's validation perplexity after this step
    greedy_removed: str  # refined search: what greedy removed at this step, where a swap changed it
    refine: dict[str, Any]  # refined search, last step: the swaps and their perplexities


@dataclass(frozen=True)
class Outcome:
    """What a plan's pruned model is, in the figures every reader shows."""

    ratio: float  # removed parameters / all parameters
    ppl: float | None  # calibration perplexity of the pruned model
    validation_ppl: float | None  # the overfitting monitor's, where the run had it
    removed: list[str]  # units removed, in removal order (empty for width plans)
    #: equal for two plans exactly when they make the same pruned model (removed blocks, kept widths)
    key: tuple


@dataclass
class Plan:
    method: str
    model: dict[str, Any]
    calibration: dict[str, Any]
    options: dict[str, Any]
    versions: dict[str, str] = field(default_factory=versions)
    dense: dict[str, Any] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    status: str = "running"
    format: str = FORMAT
    #: width methods only (blockprune.width.record): per layer the kept heads / KV groups / channels and
    #: every unit's score; absent from plan.json for block methods
    width: dict[str, Any] | None = None
    #: the overfitting monitor's validation text (source, rows, windows, tokens, seed, hash; see
    #: blockprune.monitor); absent from plan.json for a run without the monitor
    validation: dict[str, Any] | None = None
    #: a search over whole removal sets (blockpruner-evo): its seeds, generations and compute, and while it
    #: runs its state; absent from plan.json for every other method
    search: dict[str, Any] | None = None

    @property
    def removed(self) -> list[str]:
        return [s["removed"] for s in self.steps]

    @property
    def removed_blocks(self) -> frozenset[str]:
        return frozenset(b for u in self.removed for b in expand(u))

    @property
    def outcome(self) -> "Outcome":
        """The pruned model this plan ends with, the one reading of it that api, verify, compare, report and
        the benches share: a width plan's narrowed widths, a depth plan's last step, or the dense model."""
        if self.width is not None:
            # the kept units and the biases folded into the outputs (FLAP's compensation: the same units
            # with and without it are two models)
            keep = tuple((d["layer"], tuple(d["kept_heads"] or ()), tuple(d["kept_kv"] or ()),
                          tuple(d["kept_channels"] or ()),
                          tuple((k, tuple(v)) for k, v in sorted((d.get("bias_compensation") or {}).items())))
                         for d in self.width["layers"])
            return Outcome(self.width["ratio"], self.width.get("ppl"), self.width.get("validation_ppl"), [],
                           (self.removed_blocks, keep))
        if self.steps:
            last = self.steps[-1]
            return Outcome(last["ratio"], last["ppl"], last.get("validation_ppl"), self.removed,
                           (self.removed_blocks, ()))
        return Outcome(0.0, self.dense.get("ppl"), self.dense.get("validation_ppl"), [], (frozenset(), ()))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["removed"] = self.removed
        for optional in ("width", "validation", "search"):
            if d[optional] is None:
                del d[optional]
        return d

    def save(self, path: str | Path) -> None:
        atomic.write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "Plan":
        path = Path(path)
        if path.is_dir():
            path = path / "plan.json"
        if not path.exists():
            raise UserError(f"no plan at {path}; give a run folder made by `blockprune prune`")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"{path} is corrupt ({e}); delete the run folder and start again") from e
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            found = d.get("format") if isinstance(d, dict) else None
            raise UserError(f"{path} has plan format {found!r}, this blockprune reads {FORMAT!r}; "
                            f"re-run the search with this version")
        d.pop("removed", None)
        try:
            return cls(**d)
        except TypeError as e:
            raise UserError(f"{path} is not a valid plan ({e})") from e

    # -- the plan on its base model: the one place a plan becomes a pruned model ---------------------
    def load_base(self, device: str = "cpu", dtype: str | None = None):
        """The plan's base model and tokenizer, in `dtype` (default: the dtype the plan was made in).

        The rule for the weight fingerprint, the same for every command: it is checked whenever the model
        is loaded in the plan's dtype, and only then, since it hashes the weights as loaded (a model cast
        to another dtype hashes differently even when it is the right one)."""
        from . import models

        made_in = self.options.get("dtype", "fp32")
        dtype = dtype or made_in
        net, tok = models.load(self.model["source"], dtype, device)
        if dtype == made_in and models.fingerprint(net) != self.model["sha256"]:
            raise UserError(f"the model {self.model['source']} is not the one this plan was made on (weights "
                            f"differ); give the model the plan names, unchanged")
        return net, tok

    def apply(self, model, *, in_place: bool = False):
        """This plan on `model`, its base model, in memory: a width plan's narrower copy (`model` is left
        as it was; `in_place` narrows `model` itself, for a caller done with the dense model), then the
        removed blocks' modules replaced in place, exactly as the remote-code export does on load (an
        ordinary model object: generate, KV cache and lm-eval all work). Returns the model to use."""
        from .export import mask_modules

        model = self._narrowed(model, in_place)
        mask_modules(model, self.removed_blocks)
        return model

    def export(self, model, out: str | Path, *, fmt: str = "auto", tokenizer=None,
               meta: dict[str, Any] | None = None, options: dict[str, Any] | None = None,
               in_place: bool = False) -> Path:
        """Write this plan applied to `model` (its base model, unchanged unless `in_place`, which narrows
        a width plan's base itself rather than a copy) as a checkpoint in `fmt`.

        A depth plan goes to the depth exporter as the base model and its removed blocks (what it writes
        is derived from the modules it removes); a width plan's narrower model goes to the width exporter.
        `meta` adds to the provenance (method, base model and its fingerprint) recorded in config.json;
        `options` are the format's own settings (gguf: `outtype`)."""
        meta = {"method": self.method, "base_model": self.model["source"], "base_model_sha256": self.model["sha256"],
                **(meta or {})}
        if self.width is not None:
            from .export import export_width
            return export_width(self._narrowed(model, in_place), out, fmt=fmt, meta=meta, tokenizer=tokenizer,
                                options=options)
        from .export import export as export_depth
        return export_depth(model, self.removed_blocks, out, fmt=fmt, meta=meta, tokenizer=tokenizer,
                            options=options)

    def _narrowed(self, model, in_place: bool = False):
        if self.width is None:
            return model
        from .width import apply as narrow
        return narrow(model, self.width, in_place=in_place)

    def identity(self, loose: tuple[str, ...] = ()) -> dict[str, Any]:
        """What must match for a saved state to be resumed: the model, the data and the options (but the
        `loose` ones, which a resume may change)."""
        return {"method": self.method, "model": self.model.get("sha256"),
                "calibration": self.calibration.get("sha256"),
                "options": {k: v for k, v in self.options.items() if k not in loose},
                "validation": (self.validation or {}).get("sha256")}

"""The adapter interface: everything blockprune knows about one model family lives in one subclass.

A decoder layer is two residual branches, `h -> h + f(h)`: attention ("attn") then MLP ("mlp"). An adapter
says where the layers are, how each branch is computed from the stock modules (its norms included), which
parameters each branch owns, which submodules export replaces when a branch is removed, and how the
final norm and LM head turn hidden states into logits. Parallel-residual families (GPT-NeoX) compute both
branches from the same input: `h -> h + f_attn(h) + f_mlp(h)`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn


@dataclass(frozen=True)
class WidthModules:
    """Where width pruning finds its units inside one decoder layer: submodule names."""

    attn: str  # the attention module (its `num_key_value_groups` is kept in step with the widths)
    q: str
    k: str
    v: str
    o: str
    mlp: str
    gate: str  # act(gate(x)) * up(x) -> down: the SwiGLU pair and the projection back
    up: str
    down: str
    #: the families of this adapter whose attention was checked to hold nothing else sized by the head
    #: count (per-head rows of q/k/v, columns of o; q/k norms, if any, per head_dim): others are refused
    model_types: tuple[str, ...]
    #: bias compensation (FLAP) writes output biases on `o` and `down`: per model type that can carry them,
    #: (model type, config flag that gives q/k/v/o biases, config flag that gives gate/up/down biases). A
    #: flag gives every Linear of its branch a bias, so the others get zero biases; families not listed
    #: here (no such flags, or one of the two only) are refused by bias compensation
    output_biases: tuple[tuple[str, str, str], ...] = ()

    def bias_flags(self, model_type: str) -> tuple[str, str] | None:
        """The (attention, MLP) config flags that give `model_type`'s o and down projections a bias, or None."""
        return next(((a, m) for t, a, m in self.output_biases if t == model_type), None)


class Adapter:
    #: the `config.model_type` values this adapter serves
    model_types: ClassVar[tuple[str, ...]] = ()
    #: attention and MLP read the same layer input (GPT-NeoX style)
    parallel_residual: ClassVar[bool] = False
    #: per kind: the layer's submodules that make that residual branch, in the order they run
    branch_modules: ClassVar[dict[str, tuple[str, ...]]] = {}
    #: per kind: which of `branch_modules` is the module proper (the others are its norms)
    branch_core: ClassVar[dict[str, str]] = {}
    #: where width pruning's heads and channels live, for the families that support it (None: width
    #: pruning refuses this adapter); subclasses inherit it, restricted to its `model_types`
    width_modules: ClassVar[WidthModules | None] = None

    def __init__(self, model: nn.Module):
        self.model = model
        self.config = model.config

    # -- structure -------------------------------------------------------------------------------
    def backbone(self) -> nn.Module:
        """The module whose forward embeds tokens and runs the decoder layers."""
        return self.model.model

    def layers(self) -> nn.ModuleList:
        return self.backbone().layers

    def branch_parameters(self, layer: int, kind: str) -> list[tuple[str, nn.Parameter]]:
        """(qualified name, parameter) of every weight the branch owns; removal deletes exactly these."""
        prefix = self.layer_prefix(layer)
        mod = self.layers()[layer]
        out = []
        for sub in self.branch_modules[kind]:
            for n, p in getattr(mod, sub).named_parameters():
                out.append((f"{prefix}.{sub}.{n}", p))
        return out

    def layer_prefix(self, layer: int) -> str:
        """The qualified module name of decoder layer `layer` in the model (e.g. "model.layers.3"): what
        its weight names start with, and what export's skip maps and width records name."""
        target = self.layers()[layer]
        for name, mod in self.model.named_modules():
            if mod is target:
                return name
        raise RuntimeError(f"layer {layer} is not inside the model")

    # -- computation -----------------------------------------------------------------------------
    def capture(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, list[dict[str, Any]]]:
        """The hidden states entering layer 0 and the keyword arguments each layer is called with.

        Runs the backbone's own forward with every layer short-circuited, so position embeddings,
        attention masks (per-layer sliding windows included) come from the family's code, not ours."""
        layers = self.layers()
        captured: list[dict[str, Any]] = [None] * len(layers)  # type: ignore[list-item]
        first: list[torch.Tensor] = []

        def make_stub(i: int):
            def stub(hidden_states, *args, **kwargs):
                if i == 0:
                    first.append(hidden_states)
                captured[i] = self._layer_kwargs(args, kwargs)
                return self._stub_output(hidden_states)
            return stub

        for i, layer in enumerate(layers):
            layer.forward = make_stub(i)
        try:
            self.backbone()(input_ids=input_ids, use_cache=False)
        finally:
            for layer in layers:
                del layer.forward
        return first[0], captured

    def _layer_kwargs(self, args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
        if args:
            raise RuntimeError(f"{type(self).__name__}: decoder layers called with positional arguments; "
                               f"override _layer_kwargs for this family")
        kwargs = dict(kwargs)
        kwargs.pop("past_key_values", None)
        kwargs.pop("use_cache", None)
        return kwargs

    def _stub_output(self, hidden_states: torch.Tensor) -> Any:
        return hidden_states

    def branch(self, layer: int, kind: str, h: torch.Tensor, kwargs: dict[str, Any]) -> torch.Tensor:
        """f(h) of one residual branch: what the layer adds to the residual stream."""
        raise NotImplementedError

    # The head is split in three so that perplexity can run the LM head a slice of the vocabulary at a
    # time (see BlockView.window_nll): families override the first and last, never the matmul between.
    def head_input(self, h: torch.Tensor) -> torch.Tensor:
        """What the LM head's linear layer reads: the final norm (and any projection) of the last hidden state."""
        return self.backbone().norm(h)

    def scale_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Elementwise logit post-processing the family applies after the LM head (scaling, soft-capping)."""
        return logits

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """Final norm, LM head and logit post-processing: the model's logits."""
        return self.scale_logits(self.model.lm_head(self.head_input(h)))

    # -- export ----------------------------------------------------------------------------------
    def removed_core_output(self, kind: str) -> str:
        """What the layer expects back from a removed branch's module: "zero_tuple" or "zero"."""
        return "zero_tuple" if kind == "attn" else "zero"

    def renumber_layer(self, new_index: int) -> None:
        """After whole layers are dropped, tell layer `new_index` its new position (for the KV cache)."""
        layer = self.layers()[new_index]
        for mod in layer.modules():
            if hasattr(mod, "layer_idx"):
                mod.layer_idx = new_index

    def removed_attention_config(self, config: Any, layers_without_attention: list[int]) -> None:
        """Adjust an exported config so layers without attention hold no KV cache.

        transformers gives a layer marked "reuse" in `kv_sharing_modes` a cache slot that stores nothing.
        Never the first layer: transformers reads the sequence length from its slot, so its removed
        attention keeps one number per token there (RemovedFirstAttention). `layer_types` stays as it is:
        families with sliding layers look each layer's mask up by its type."""
        modes = list(getattr(config, "kv_sharing_modes", None) or [None] * config.num_hidden_layers)
        for i in layers_without_attention:
            if i > 0:
                modes[i] = "reuse"
        config.kv_sharing_modes = modes

    def llama_difference(self) -> str | None:
        """How this model computes differently from a Llama with the same weights and config, or None where
        it computes exactly as Llama does.

        `--format nemotron-nas` writes a checkpoint that DeciLM runs with Llama's arithmetic, and weights
        in Llama's layout do not show a family's multipliers, rotary variant or norm formula; so that
        format is written only where this says None. A family is not Llama unless its adapter says so."""
        return (f"its own {family_type(self.config)} decoder code, which blockprune does not know to compute "
                f"exactly as Llama's")


def family_type(config: Any) -> str:
    """The family's model type; a blockprune checkpoint's config records its base model's."""
    info = getattr(config, "blockprune", None)
    base = info.get("base_model_type") if isinstance(info, dict) else None
    return base or config.model_type

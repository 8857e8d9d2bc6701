"""Where the width units live in each family: the module names of q/k/v/o and gate/up/down.

One small table keyed by adapter class (the adapters own the residual-branch knowledge; this file
owns the width knowledge, so width pruning never edits a family's adapter). A family the table does
not know, or a layer whose modules are not plain `nn.Linear` (Phi-3's fused projections, MoE experts
served by the same adapter), is refused with one clear message; so is a family of a known adapter
whose head layout was not checked (OLMo-2-style q/k norms span all heads)."""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..arch import Adapter
from ..arch.base import family_type
from ..arch.llama import LlamaAdapter
from ..errors import UserError


@dataclass(frozen=True)
class WidthModules:
    """Submodule names inside one decoder layer."""

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

    @property
    def linears(self) -> tuple[str, ...]:
        return tuple(f"{m}.{p}" for m, ps in ((self.attn, (self.q, self.k, self.v, self.o)),
                                                (self.mlp, (self.gate, self.up, self.down))) for p in ps)


LLAMA = WidthModules("self_attn", "q_proj", "k_proj", "v_proj", "o_proj", "mlp", "gate_proj", "up_proj", "down_proj",
                     model_types=("llama", "mistral", "qwen2", "qwen3", "gemma"))

#: adapter class -> module names; a new family adds one line here
FAMILIES: dict[type[Adapter], WidthModules] = {LlamaAdapter: LLAMA}


def family(adapter: Adapter) -> str:
    """The model type, seen through a blockprune remote-code checkpoint to the family it was made from."""
    return family_type(adapter.config)


def unsupported(adapter: Adapter) -> UserError:
    supported = sorted(t for spec in FAMILIES.values() for t in spec.model_types)
    return UserError(f"width pruning does not support {family(adapter)} yet (supported: {', '.join(supported)}); "
                     f"it needs separate q/k/v/o and gate/up/down Linear modules with a per-head layout")


def modules_for(adapter: Adapter) -> WidthModules:
    # an adapter subclass (a family split off Llama's) inherits its parent's module names
    spec = next((FAMILIES[c] for c in type(adapter).__mro__ if c in FAMILIES), None)
    if spec is None or family(adapter) not in spec.model_types:
        raise unsupported(adapter)
    for i in range(len(adapter.layers())):  # every layer's shape, before any work
        for kind in ("attn", "mlp"):
            has_branch(adapter, spec, i, kind)
    return spec


def has_branch(adapter: Adapter, spec: WidthModules, layer: int, kind: str) -> bool:
    """Whether layer `layer` still computes this branch (depth pruning may have replaced it by a
    parameter-free stand-in). Raises for layers holding the branch in another shape (fused or expert
    projections: Phi-3, Mixtral, Qwen-MoE under the same adapter)."""
    mod = getattr(adapter.layers()[layer], spec.attn if kind == "attn" else spec.mlp, None)
    if mod is None or not any(True for _ in mod.parameters()):
        return False
    names = (spec.q, spec.k, spec.v, spec.o) if kind == "attn" else (spec.gate, spec.up, spec.down)
    if not all(type(getattr(mod, n, None)) is nn.Linear for n in names):
        raise unsupported(adapter)
    return True

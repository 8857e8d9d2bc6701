"""Which width units a model has: its adapter's `width_modules` (arch/ holds every family's module
names), checked layer by layer before any work, and each layer's current widths (`geometry`).

An adapter without `width_modules`, a family of its adapter that the record does not list (q/k norms
spanning all heads, say), or a layer whose modules are not plain `nn.Linear` (fused projections, MoE
experts served by the same adapter) is refused with one clear message."""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..arch import Adapter, WidthModules, width_families
from ..arch.base import family_type
from ..errors import UserError


def family(adapter: Adapter) -> str:
    """The model type, seen through a blockprune remote-code checkpoint to the family it was made from."""
    return family_type(adapter.config)


def unsupported(adapter: Adapter) -> UserError:
    supported = sorted({t for spec in width_families().values() for t in spec.model_types})
    return UserError(f"width pruning does not support {family(adapter)} yet (supported: {', '.join(supported)}); "
                     f"it needs separate q/k/v/o and gate/up/down Linear modules with a per-head layout")


def modules_for(adapter: Adapter) -> WidthModules:
    spec = adapter.width_modules  # an adapter subclass (a family split off another's) inherits it
    if spec is None or family(adapter) not in spec.model_types:
        raise unsupported(adapter)
    for i in range(len(adapter.layers())):  # every layer's shape, before any work
        for kind in ("attn", "mlp"):
            has_branch(adapter, spec, i, kind)
    return spec


def has_branch(adapter: Adapter, spec: WidthModules, layer: int, kind: str) -> bool:
    """Whether layer `layer` still computes this branch (depth pruning may have replaced it by a
    parameter-free stand-in). Raises for layers holding the branch in another shape (fused or expert
    projections under an adapter that supports width pruning for its other families)."""
    mod = getattr(adapter.layers()[layer], spec.attn if kind == "attn" else spec.mlp, None)
    if mod is None or not any(True for _ in mod.parameters()):
        return False
    names = (spec.q, spec.k, spec.v, spec.o) if kind == "attn" else (spec.gate, spec.up, spec.down)
    if not all(type(getattr(mod, n, None)) is nn.Linear for n in names):
        raise unsupported(adapter)
    return True


@dataclass
class Geometry:
    """The current widths of one layer (None where depth pruning removed the branch)."""

    heads: int | None
    kv: int | None
    head_dim: int | None
    channels: int | None

    @property
    def group_size(self) -> int:
        return self.heads // self.kv


def geometry(adapter: Adapter, spec: WidthModules, layer: int) -> Geometry:
    mod = adapter.layers()[layer]
    heads = kv = head_dim = channels = None
    if has_branch(adapter, spec, layer, "attn"):
        attn = mod.get_submodule(spec.attn)
        head_dim = attn.head_dim
        heads = attn.get_submodule(spec.o).in_features // head_dim
        kv = attn.get_submodule(spec.k).out_features // head_dim
    if has_branch(adapter, spec, layer, "mlp"):
        channels = mod.get_submodule(spec.mlp).get_submodule(spec.down).in_features
    return Geometry(heads, kv, head_dim, channels)


def layer_parts(adapter: Adapter, spec: WidthModules, i: int) -> tuple[Geometry, nn.Module | None, nn.Module | None]:
    """Layer i's widths and its attention and MLP modules (None where the layer has none to prune)."""
    geo = geometry(adapter, spec, i)
    layer = adapter.layers()[i]
    return (geo, layer.get_submodule(spec.attn) if geo.heads is not None else None,
            layer.get_submodule(spec.mlp) if geo.channels is not None else None)

"""The model as embeddings -> an ordered list of residual blocks -> final norm -> LM head.

Blocks are named `attn.<layer>` and `mlp.<layer>` with the base model's layer indices, in execution
order. A mask (the set of removed block names) changes what the view computes, never the model."""
from __future__ import annotations

from dataclasses import dataclass
from typing import AbstractSet, Any

import torch
from torch import nn

from .arch import KINDS, Adapter, adapter_for
from .models import count_params
from .units import block_index, unit_name


# vocabulary rows per slice of the LM head in window_nll (measured on SmolLM2, 1 CPU thread: 1024 rows is
# 0.61 ms/token against 0.94 for the whole 49k vocabulary at 256-2048 tokens)
VOCAB_SLICE_CPU = 1024
VOCAB_SLICE_ACCELERATOR = 16384


@dataclass(frozen=True)
class Block:
    name: str  # "attn.12"
    layer: int
    kind: str  # "attn" | "mlp"
    index: int  # position in execution order: 2 * layer + (0 for attn, 1 for mlp)
    params: int  # parameters this block owns (its norms included)


def _device_of(layer: nn.Module, model: nn.Module) -> torch.device:
    p = next(layer.parameters(), None)  # a layer whose blocks were all removed holds no weights
    return next(model.parameters()).device if p is None else p.device


def _to(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, (tuple, list)):
        return type(obj)(_to(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    return obj


@dataclass
class Prepared:
    """A batch of windows after the embeddings: the input of block 0 and each layer's call arguments."""

    hidden: torch.Tensor
    layer_kwargs: list[dict[str, Any]]


class BlockView:
    def __init__(self, model: nn.Module, adapter: Adapter | None = None):
        self.model = model
        self.adapter = adapter or adapter_for(model)
        self.num_layers = len(self.adapter.layers())
        self.total_params = count_params(model)
        self.blocks: list[Block] = []
        for layer in range(self.num_layers):
            for k, kind in enumerate(KINDS):
                n = sum(p.numel() for _, p in self.adapter.branch_parameters(layer, kind))
                self.blocks.append(Block(unit_name(kind, layer), layer, kind, 2 * layer + k, n))
        self.by_name = {b.name: b for b in self.blocks}
        # where each layer lives; more than one device means accelerate sharded the model (--device auto)
        self.layer_devices = [_device_of(layer, model) for layer in self.adapter.layers()]
        self.sharded = len({p.device for p in model.parameters()}) > 1

    @property
    def parallel(self) -> bool:
        return self.adapter.parallel_residual

    @staticmethod
    def index_of(name: str) -> int:
        """Execution-order position of a block name: `attn.3` -> 6, `mlp.3` -> 7."""
        return block_index(name)

    def check_names(self, names) -> None:
        unknown = sorted(set(names) - set(self.by_name))
        if unknown:
            raise ValueError(f"unknown block names {unknown}; blocks are attn.<layer> / mlp.<layer> "
                             f"for layers 0..{self.num_layers - 1}")

    def removed_params(self, removed: AbstractSet[str]) -> int:
        return sum(self.by_name[n].params for n in removed)

    @torch.no_grad()
    def prepare(self, input_ids: torch.Tensor) -> Prepared:
        h, kwargs = self.adapter.capture(input_ids.to(self.device))
        if self.sharded:  # a model spread over devices: each layer's arguments live where the layer does
            kwargs = [_to(kw, dev) for kw, dev in zip(kwargs, self.layer_devices)]
        return Prepared(h, kwargs)


    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def run(self, h: torch.Tensor, prep: Prepared, removed: AbstractSet[str], start: int = 0,
            stop: int | None = None) -> torch.Tensor:
        """Run blocks [start, stop) of execution order on `h`, skipping removed ones.

        Parallel-residual layers run as a unit, so there `start` and `stop` must be layer boundaries."""
        stop = len(self.blocks) if stop is None else stop
        if self.parallel:
            if start % 2 or stop % 2:
                raise ValueError("parallel-residual models run whole layers: start/stop must be even")
            for layer in range(start // 2, stop // 2):
                kept = [k for k in KINDS if unit_name(k, layer) not in removed]
                if kept:
                    kw = prep.layer_kwargs[layer]
                    delta = sum(self.adapter.branch(layer, k, h, kw) for k in kept)
                    h = h + delta
            return h
        devices = self.layer_devices if self.sharded else None
        for b in self.blocks[start:stop]:
            if b.name not in removed:
                if devices is not None and h.device != devices[b.layer]:
                    h = h.to(devices[b.layer])
                h = h + self.adapter.branch(b.layer, b.kind, h, prep.layer_kwargs[b.layer])
        return h

    @torch.no_grad()
    def logits(self, input_ids: torch.Tensor, removed: AbstractSet[str] = frozenset()) -> torch.Tensor:
        prep = self.prepare(input_ids)
        return self.adapter.head(self.run(prep.hidden, prep, removed))

    @torch.no_grad()
    def window_nll(self, h: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """Mean next-token NLL of each window (one value per row), from the last hidden states.

        The LM head runs one window and one slice of the vocabulary at a time, with a running logsumexp:
        the logit matrix is never whole in memory, and on a CPU a slice that stays in cache makes the
        head (a quarter of a small model's forward pass) about a third faster than one big matmul."""
        head = self.model.get_output_embeddings()
        if self.sharded:
            h = h.to(head.weight.device)
        input_ids = input_ids.to(h.device)
        out = torch.empty(h.shape[0], dtype=torch.float64)
        if not isinstance(head, nn.Linear):  # an unusual head: the whole logit matrix, one window at a time
            for i in range(h.shape[0]):
                logits = self.adapter.head(h[i:i + 1, :-1]).float()[0]
                out[i] = nn.functional.cross_entropy(logits, input_ids[i, 1:]).double()
            return out
        chunk = VOCAB_SLICE_CPU if h.device.type == "cpu" else VOCAB_SLICE_ACCELERATOR
        vocab = head.weight.shape[0]
        for i in range(h.shape[0]):
            x = self.adapter.head_input(h[i, :-1])
            target = input_ids[i, 1:]
            # the target's logit: one dot product per position (rounded to the logits' dtype, as they are),
            # instead of a gather from every slice
            picked = (x.float() * head.weight[target].float()).sum(-1)
            if head.bias is not None:
                picked = picked + head.bias[target].float()
            picked = self.adapter.scale_logits(picked.to(x.dtype)).float()
            # each slice's logsumexp goes into one buffer made before the loop: kept as a list of small tensors,
            # they pinned glibc's heap between the freed slices, and the process grew by about the whole logit
            # matrix (400 MB a window on SmolLM2) although no more than one slice was ever alive
            lse = torch.empty(x.shape[0], -(-vocab // chunk), dtype=torch.float32, device=x.device)
            for j, lo in enumerate(range(0, vocab, chunk)):
                lse[:, j] = torch.logsumexp(self.adapter.scale_logits(nn.functional.linear(
                    x, head.weight[lo:lo + chunk], None if head.bias is None else head.bias[lo:lo + chunk])).float(), -1)
            out[i] = (torch.logsumexp(lse, -1) - picked).mean().double()
        return out

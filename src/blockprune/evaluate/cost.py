"""What a model costs to run: parameters, generation latency, KV-cache size, peak memory."""
from __future__ import annotations

import os
import statistics
import sys
import time
from typing import Any

import torch

from .. import machine
from ..models import count_params

# A fixed prompt, so latencies of different models are comparable (the tokens differ only by tokenizer).
LATENCY_PROMPT = "The history of the city begins in the early Middle Ages, when"


def attention_layers(model) -> int:
    """Decoder layers whose KV cache grows by a K and V per token. By transformers' own rule a layer typed
    "mlp"/"moe" or marked "reuse" in `kv_sharing_modes` (how blockprune marks layers without attention)
    gets a cache slot that stores nothing; a removed first-layer attention is never "reuse" (transformers
    reads the sequence length from that slot) and stores one number per token there instead."""
    from transformers.cache_utils import get_layer_types_and_kwargs

    types, _ = get_layer_types_and_kwargs(model.config.get_text_config(decoder=True))
    return sum(t != "dummy" for t in types) - _length_slot(model)


def _length_slot(model) -> bool:
    # by name: a remote-code checkpoint's stand-ins are its own copy of the class
    return any(type(m).__name__ == "RemovedFirstAttention" for m in model.modules())


def kv_bytes_per_token(model, dtype: torch.dtype) -> int:
    """Bytes the KV cache grows by per token of context: over the layers that cache, K and V of each layer's
    own width (and K and V of one number each where the first layer's attention is removed).

    A layer's width is read from its k and v projections through the family adapter's width modules: width
    pruning narrows them layer by layer while the config keeps the dense head counts. A family without width
    modules (it cannot be width-pruned) has the config's width in every layer: kv heads × head dim."""
    from transformers.cache_utils import get_layer_types_and_kwargs

    size = torch.empty((), dtype=dtype).element_size()
    types, _ = get_layer_types_and_kwargs(model.config.get_text_config(decoder=True))
    widths = kv_widths(model)
    if widths is None:
        config = model.config
        heads = config.num_attention_heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        return (attention_layers(model) * kv_heads * head_dim + _length_slot(model)) * 2 * size
    numbers = sum(w for t, w in zip(types, widths) if t != "dummy" and w is not None)
    return (numbers + 2 * _length_slot(model)) * size


def kv_widths(model) -> list[int | None] | None:
    """Per decoder layer, the numbers its K and V add per token together (its k and v projections' output
    features; None where the layer has no attention), read through the family adapter's width modules;
    None for a family without them."""
    from ..arch import adapter_for
    from ..errors import UserError
    from ..width.modules import has_branch, modules_for

    try:
        adapter = adapter_for(model)
        spec = modules_for(adapter)
    except UserError:
        return None
    out: list[int | None] = []
    for i, layer in enumerate(adapter.layers()):
        if not has_branch(adapter, spec, i, "attn"):
            out.append(None)
            continue
        attn = layer.get_submodule(spec.attn)
        out.append(attn.get_submodule(spec.k).out_features + attn.get_submodule(spec.v).out_features)
    return out


@torch.no_grad()
def generation_latency(model, tokenizer, new_tokens: int = 128, repeats: int = 5, warmup: int = 1,
                       progress: bool = True) -> dict[str, Any]:
    """Seconds to generate `new_tokens` greedily with the KV cache: mean of `repeats` runs after `warmup`."""
    device = next(model.parameters()).device
    ids = tokenizer(LATENCY_PROMPT, return_tensors="pt").input_ids.to(device)
    pad = getattr(tokenizer, "pad_token_id", None)
    pad = pad if pad is not None else getattr(tokenizer, "eos_token_id", 0)
    kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, use_cache=True,
                  pad_token_id=pad, attention_mask=torch.ones_like(ids))
    times = []
    runs = range(warmup + repeats)
    if progress:
        from tqdm.auto import tqdm
        runs = tqdm(runs, desc=f"latency ({new_tokens} tokens)", unit="run", file=sys.stderr)
    for i in runs:
        _sync(device)
        t0 = time.perf_counter()
        out = model.generate(ids, **kwargs)
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    assert out.shape[1] - ids.shape[1] == new_tokens
    mean = statistics.fmean(times)
    stdev = statistics.stdev(times) if len(times) > 1 else 0.0
    load, cpus = list(os.getloadavg()), os.cpu_count()  # the 1-minute figure covers the timed runs
    return {"new_tokens": new_tokens, "prompt_tokens": ids.shape[1], "repeats": repeats, "warmup": warmup,
            "mean_s": mean, "stdev_s": stdev, "tokens_per_s": new_tokens / mean, "threads": torch.get_num_threads(),
            "load_average": load, "cpus": cpus, "caveat": latency_caveat(mean, stdev, load[0], cpus)}


NOISY_SPREAD = 0.10  # standard deviation over mean: repeats of a quiet machine stay within a few percent


def latency_caveat(mean: float, stdev: float, load: float, cpus: int | None) -> str | None:
    """Why a latency figure should not be trusted as a clean one (a busy machine, a wide spread), or None."""
    reasons = []
    if mean > 0 and stdev / mean > NOISY_SPREAD:
        reasons.append(f"spread {stdev / mean:.0%} of the mean")
    if cpus and load > cpus:
        reasons.append(f"load average {load:.1f} on {cpus} CPUs")
    return "measured under load: " + ", ".join(reasons) if reasons else None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory(device: torch.device) -> dict[str, Any]:
    if device.type == "cuda":
        return {"bytes": torch.cuda.max_memory_allocated(device), "what": "torch.cuda.max_memory_allocated"}
    # the whole process's peak, model loading included (VmHWM: ru_maxrss would keep a parent's RSS at the fork)
    return {"bytes": machine.peak(), "what": "process max RSS"}


def cost(model, tokenizer, reference_params: int | None = None, new_tokens: int = 128, repeats: int = 5,
         progress: bool = True) -> dict[str, Any]:
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    params = count_params(model)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    out = {"params": params, "reference_params": reference_params,
           "ratio": None if not reference_params else 1 - params / reference_params,
           "kv_cache_bytes_per_token": kv_bytes_per_token(model, dtype),
           "attention_layers": attention_layers(model), "dtype": str(dtype).removeprefix("torch."),
           "device": str(device)}
    out["latency"] = generation_latency(model, tokenizer, new_tokens, repeats, progress=progress)
    out["peak_memory"] = peak_memory(device)
    return out

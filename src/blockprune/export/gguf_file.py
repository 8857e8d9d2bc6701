"""`gguf`: one .gguf file that llama.cpp runs (and what is built on it: llama-cpp-python, Ollama, LM Studio).

Llama-layout models only (Llama, SmolLM/SmolLM2, and families whose adapter says they compute as Llama,
with Llama's weight names and no biases), in one of two of llama.cpp's architectures:
- `llama` where every written layer has both blocks and the same widths: the dense model, whole layers
  removed (the kept layers renumbered), a width plan with the same widths in every layer.
- `deci` (llama.cpp's DeciLM / Nemotron-NAS graph, src/models/deci.cpp) otherwise: a head count, KV-head
  count and FFN width per layer, 0 heads meaning no attention (no norm, no KV cache).

llama.cpp's deci graph (as vendored in llama-cpp-python 0.3.36) has two gaps, bridged by exact stand-ins
that `blockprune.stand_ins` in the file's metadata lists:
- a layer with attention and `n_ff = 0` never adds its attention output to the residual stream (the graph
  `continue`s first), so a removed MLP under a kept attention is written as a zero FFN `STAND_IN_FFN`
  channels wide (its down projection is zeros: it adds exactly 0);
- llama.cpp reads the head size only when layer 0 has heads, so a first written layer without attention
  gets one zero head (zero output projection: adds exactly 0; it costs one head's KV cache).
Whole removed layers are dropped, never written as layers with neither block (on the last layer the graph
would then skip its selection of output rows).

Tensors follow llama.cpp's converter (convert_hf_to_gguf.py, `LlamaModel`): q and k rows permuted per head
(`permute`: its rotary embedding pairs adjacent values, Llama's pairs the two halves), norms and 1-D tensors
in f32, matrices in the outtype, a q8_0 matrix whose rows are not a multiple of 32 values in f16. Except
that an FFN width that is not a multiple of `FFN_ALIGN` (width pruning leaves such widths: LLM-BIP kept 1151
of SmolLM2's 1536 channels) gets zero channels up to the next multiple, in every outtype (exact: a zero
channel adds silu(0) * 0 = 0): in q8_0 its down projection is then q8_0 too instead of the converter's f16,
and in f16 llama.cpp's fast matrix products apply (bench/gguf measured an unpadded 1151-channel FFN's f16
prompt processing at 0.73x the dense model's).

Tokenizer: GPT-2-style byte-level BPE whose pre-tokenizer llama.cpp knows, identified as the converter does,
by a hash of the token ids of a fixed text (`PRE_TOKENIZERS`: only the ones verified against llama.cpp here);
tokens, token types, merges, special token ids, whether BOS/EOS are added, and the chat template.
"""
from __future__ import annotations

import hashlib
import json
import math
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch
from torch import nn

from ..arch import adapter_for
from ..arch.base import family_type
from ..arch.llama import LLAMA_LAYERS, LLAMA_TOP
from ..errors import UserError
from ..units import block_order, unit_name
from .common import Job, provenance, width_provenance
from .registry import Format, register

Q = gguf.GGMLQuantizationType
#: --outtype -> (the type matrices are written in, the file type recorded)
OUTTYPES: dict[str, tuple[Q, gguf.LlamaFileType]] = {
    "f32": (Q.F32, gguf.LlamaFileType.ALL_F32),
    "f16": (Q.F16, gguf.LlamaFileType.MOSTLY_F16),
    "bf16": (Q.BF16, gguf.LlamaFileType.MOSTLY_BF16),
    "q8_0": (Q.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
}
DEFAULT_OUTTYPE = "f16"  # what llama.cpp's converter writes by default
#: a removed MLP's stand-in width: q8_0's block, so the zero matrices quantize like every other
STAND_IN_FFN = 32
#: FFN widths are padded with zero channels to a multiple of this: q8_0's block, and a row length that
#: llama.cpp's vectorised f16/f32 products (llamafile's sgemm) take; an odd width falls back to slower code
FFN_ALIGN = 32

#: the converter's fixed text (convert_hf_to_gguf.py `get_vocab_base_pre`) and the pre-tokenizers known by
#: the sha256 of str(token ids): only those verified to tokenize in llama.cpp as in transformers here
CHECK_TEXT = ('\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) '
              '✅ 🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ '
              '------======= нещо на Български \'\'\'\'\'\'```````""""......!!!!!!?????? I\'ve been \'told he\'s '
              'there, \'RE you sure? \'M not sure I\'ll make it, \'D you like some tea? We\'Ve a\'lL')
PRE_TOKENIZERS = {"855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm"}  # SmolLM, SmolLM2

T = gguf.MODEL_TENSOR
ATTN_PARTS = {"input_layernorm": T.ATTN_NORM, "self_attn.q_proj": T.ATTN_Q, "self_attn.k_proj": T.ATTN_K,
              "self_attn.v_proj": T.ATTN_V, "self_attn.o_proj": T.ATTN_OUT}
MLP_PARTS = {"post_attention_layernorm": T.FFN_NORM, "mlp.gate_proj": T.FFN_GATE, "mlp.up_proj": T.FFN_UP,
             "mlp.down_proj": T.FFN_DOWN}
TOP_PARTS = {"model.embed_tokens": T.TOKEN_EMBD, "model.norm": T.OUTPUT_NORM, "lm_head": T.OUTPUT}
SUPPORTED = ("--format gguf writes Llama-layout models (Llama, SmolLM/SmolLM2, and families that compute as Llama "
             "with its weight names) with a GPT-2-style BPE tokenizer llama.cpp knows (SmolLM/SmolLM2's)")


@dataclass(frozen=True)
class Layer:
    """One written layer: where its weights come from and its widths (0 heads: no attention)."""

    source: int  # the base model's layer index
    heads: int
    kv: int
    ffn: int  # as written, `ffn_zeros` included
    stand_in: str | None = None  # "attn" or "mlp": that block is an exact zero stand-in
    ffn_zeros: int = 0  # zero channels appended to the kept ones (a whole number of quantization blocks)


@dataclass(frozen=True)
class Layout:
    arch: str  # "llama" or "deci"
    layers: tuple[Layer, ...]
    head_dim: int


def layout(model: nn.Module, removed: frozenset[str], block: int = 1) -> Layout:
    """The layers to write and the architecture that expresses them, FFN widths padded with zero channels to
    a multiple of `block` (`FFN_ALIGN` and the outtype's quantization block); a one-line `UserError` for what llama.cpp's
    Llama and Deci graphs cannot compute exactly."""
    cfg = model.config
    family = family_type(cfg)

    def refuse(why: str) -> UserError:
        return UserError(f"{SUPPORTED}; this {family} model has {why}; export with --format remote-code")

    if getattr(cfg, "hidden_act", None) != "silu":
        raise refuse(f"activation {getattr(cfg, 'hidden_act', None)!r} (llama.cpp's Llama MLP is SiLU-gated)")
    if getattr(cfg, "sliding_window", None) is not None:
        raise refuse("sliding-window attention")
    rope = getattr(cfg, "rope_parameters", None) or {}
    if rope.get("rope_type", "default") != "default":
        raise refuse(f"rope scaling {rope.get('rope_type')!r} (only plain rotary embeddings are written)")
    why = adapter_for(model).llama_difference()
    if why is not None:
        raise refuse(f"a forward pass unlike Llama's ({why})")
    sd = model.state_dict()
    top = {k for k in sd if not k.startswith(f"{LLAMA_LAYERS}.")}
    if not top <= set(LLAMA_TOP):
        raise refuse(f"weights outside Llama's layout: {sorted(top - set(LLAMA_TOP))[:3]}")
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    layers = []
    for i in range(cfg.num_hidden_layers):
        prefix = f"{LLAMA_LAYERS}.{i}."
        names = {k[len(prefix):] for k in sd if k.startswith(prefix)}
        extra = names - {f"{p}.weight" for p in (*ATTN_PARTS, *MLP_PARTS)}
        if extra:
            raise refuse(f"weights outside Llama's layout in layer {i}: {sorted(extra)[:3]}")
        heads = kv = ffn = 0
        if unit_name("attn", i) not in removed:
            q, k = sd[f"{prefix}self_attn.q_proj.weight"].shape[0], sd[f"{prefix}self_attn.k_proj.weight"].shape[0]
            heads, kv = q // head_dim, k // head_dim
            if q % head_dim or k % head_dim or (kv and heads % kv):
                raise refuse(f"layer {i}'s q/k widths {q}/{k} unlike whole heads of {head_dim} in KV groups")
        if unit_name("mlp", i) not in removed:
            ffn = sd[f"{prefix}mlp.gate_proj.weight"].shape[0]
        if heads or ffn:
            zeros = -ffn % block
            layers.append(Layer(i, heads, kv, ffn + zeros, ffn_zeros=zeros))
    if not layers:
        raise UserError("this plan removes every layer; there is no model to write")
    return _with_stand_ins(layers, head_dim)


def _with_stand_ins(layers: list[Layer], head_dim: int) -> Layout:
    first = layers[0]
    if all(x.heads and x.ffn and (x.heads, x.kv, x.ffn) == (first.heads, first.kv, first.ffn) for x in layers):
        return Layout("llama", tuple(layers), head_dim)
    out = []
    for n, x in enumerate(layers):
        if x.heads and not x.ffn:  # see the module docstring: deci would drop this layer's attention
            x = replace(x, ffn=STAND_IN_FFN, stand_in="mlp")  # all zeros: no padding either
        elif n == 0 and not x.heads:  # llama.cpp reads the head size from layer 0's head count
            x = replace(x, heads=1, kv=1, stand_in="attn")
        out.append(x)
    return Layout("deci", tuple(out), head_dim)


def pre_tokenizer(tokenizer) -> str | None:
    """llama.cpp's name for the tokenizer's pre-tokenizer, where it is one verified here."""
    ids = tokenizer.encode(CHECK_TEXT)
    return PRE_TOKENIZERS.get(hashlib.sha256(str(ids).encode()).hexdigest())


def _tokenizer_refusal(tokenizer, n_vocab: int | None) -> str | None:
    if tokenizer is None:
        return "--format gguf needs the model's tokenizer (the file carries it); give a model that has one"
    if not getattr(tokenizer, "is_fast", False) or pre_tokenizer(tokenizer) is None:
        return (f"{SUPPORTED}; this model's tokenizer ({type(tokenizer).__name__}) is not one of them; export with "
                f"--format remote-code")
    if n_vocab is not None and max(tokenizer.get_vocab().values()) >= n_vocab:
        return f"the tokenizer has ids beyond the model's {n_vocab} embeddings; it is not this model's tokenizer"
    return None


def refusal(job: Job) -> str | None:
    outtype = job.options.get("outtype") or DEFAULT_OUTTYPE
    if outtype not in OUTTYPES:
        return (f"--outtype {outtype!r} is not one llama.cpp reads back from this exporter; choose one of "
                f"{', '.join(OUTTYPES)}")
    if job.width == "pruned":
        return ("--format gguf writes a width plan from its run folder, not a width-pruned checkpoint pruned again; "
                "use --format remote-code")
    if job.model is None:  # before the model loads: the rest is judged on its weights and tokenizer
        return None
    why = _tokenizer_refusal(job.tokenizer, job.model.config.vocab_size)
    if why is not None:
        return why
    try:
        layout(job.model, job.removed)
    except UserError as e:
        return str(e)
    return None


def permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's row order for a q or k projection of `n_head` heads (the converter's `LlamaModel.permute`)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _encode(name: str, data: np.ndarray, qtype: Q) -> tuple[np.ndarray, Q]:
    if data.ndim <= 1 or name.endswith("_norm.weight"):  # llama.cpp reads norms and vectors in f32 only
        qtype = Q.F32
    try:
        return gguf.quants.quantize(data, qtype), qtype
    except gguf.QuantError:  # rows not a whole number of q8_0 blocks: f16, as the converter does
        return gguf.quants.quantize(data, Q.F16), Q.F16


def _tensors(model: nn.Module, lay: Layout) -> list[tuple[str, np.ndarray]]:
    """(gguf name, float32 array) of every tensor to write, in llama.cpp's layout and order."""
    sd = model.state_dict()

    def get(key: str) -> np.ndarray:
        return sd[key].detach().to("cpu", torch.float32).numpy()

    hidden, hd = model.config.hidden_size, lay.head_dim
    out = [(f"{gguf.TENSOR_NAMES[T.TOKEN_EMBD]}.weight", get("model.embed_tokens.weight")),
           (f"{gguf.TENSOR_NAMES[T.OUTPUT_NORM]}.weight", get("model.norm.weight"))]
    if not getattr(model.config, "tie_word_embeddings", False):  # tied: llama.cpp reuses token_embd
        out.append((f"{gguf.TENSOR_NAMES[T.OUTPUT]}.weight", get("lm_head.weight")))
    for n, x in enumerate(lay.layers):
        prefix = f"{LLAMA_LAYERS}.{x.source}."
        name = {kind: gguf.TENSOR_NAMES[kind].format(bid=n) + ".weight" for kind in (*ATTN_PARTS.values(),
                                                                                  *MLP_PARTS.values())}
        if x.stand_in == "attn":
            zero = {T.ATTN_Q: (hd, hidden), T.ATTN_K: (hd, hidden), T.ATTN_V: (hd, hidden), T.ATTN_OUT: (hidden, hd)}
            out += [(name[T.ATTN_NORM], np.ones(hidden, np.float32))]
            out += [(name[kind], np.zeros(shape, np.float32)) for kind, shape in zero.items()]
        elif x.heads:
            for part, kind in ATTN_PARTS.items():
                w = get(f"{prefix}{part}.weight")
                if kind == T.ATTN_Q:
                    w = permute(w, x.heads)
                elif kind == T.ATTN_K:
                    w = permute(w, x.kv)
                out.append((name[kind], w))
        if x.stand_in == "mlp":
            zero = {T.FFN_GATE: (x.ffn, hidden), T.FFN_UP: (x.ffn, hidden), T.FFN_DOWN: (hidden, x.ffn)}
            out += [(name[T.FFN_NORM], np.ones(hidden, np.float32))]
            out += [(name[kind], np.zeros(shape, np.float32)) for kind, shape in zero.items()]
        elif x.ffn:
            zeros = {T.FFN_GATE: ((0, x.ffn_zeros), (0, 0)), T.FFN_UP: ((0, x.ffn_zeros), (0, 0)),
                     T.FFN_DOWN: ((0, 0), (0, x.ffn_zeros))}
            for part, kind in MLP_PARTS.items():
                w = get(f"{prefix}{part}.weight")
                out.append((name[kind], np.pad(w, zeros[kind]) if kind in zeros and x.ffn_zeros else w))
    return out


def _hyperparameters(w: gguf.GGUFWriter, cfg: Any, lay: Layout, ftype: gguf.LlamaFileType) -> None:
    def per_layer(values: list[int]) -> int | list[int]:
        return values[0] if lay.arch == "llama" else values

    rope = getattr(cfg, "rope_parameters", None) or {}
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(len(lay.layers))
    w.add_feed_forward_length(per_layer([x.ffn for x in lay.layers]))
    w.add_head_count(per_layer([x.heads for x in lay.layers]))
    w.add_head_count_kv(per_layer([x.kv for x in lay.layers]))
    w.add_key_length(lay.head_dim)  # explicit: a pruned layer's head count says nothing of the head size
    w.add_value_length(lay.head_dim)
    w.add_rope_dimension_count(lay.head_dim)
    w.add_rope_freq_base(float(rope.get("rope_theta", getattr(cfg, "rope_theta", 10000.0))))
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    w.add_file_type(ftype)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _vocabulary(tokenizer, n_vocab: int) -> tuple[list[str], list[int]]:
    """Tokens and their llama.cpp types, as the converter's `get_vocab_base` makes them."""
    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for i in range(n_vocab):
        if i not in by_id:  # embeddings past the tokenizer's ids
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        tokens.append(by_id[i])
        if i in added:
            types.append(gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
    return tokens, types


def _tokenizer(w: gguf.GGUFWriter, tokenizer, n_vocab: int) -> None:
    tokens, types = _vocabulary(tokenizer, n_vocab)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre_tokenizer(tokenizer))
    w.add_token_list(tokens)
    w.add_token_types(types)
    ids = tokenizer("a").input_ids
    with tempfile.TemporaryDirectory() as d:
        # SpecialVocab reads merges, special ids and the chat template from the files a tokenizer saves
        tokenizer.save_pretrained(d)
        special = gguf.SpecialVocab(d, load_merges=True, n_vocab=n_vocab)
    # whether BOS/EOS are added is what the tokenizer does, not what its config files happen to say
    special.add_special_token = {"bos": tokenizer.bos_token_id is not None and ids[0] == tokenizer.bos_token_id,
                                 "eos": tokenizer.eos_token_id is not None and ids[-1] == tokenizer.eos_token_id}
    special.add_to_gguf(w, quiet=True)


def _provenance(job: Job, lay: Layout, outtype: str) -> dict[str, Any]:
    record = (width_provenance(job.model, job.meta, "gguf") if job.width == "narrowed"
              else provenance(job.model, job.removed, job.meta, "gguf"))
    stand_ins = [unit_name(x.stand_in, x.source) for x in lay.layers if x.stand_in]
    padded = {str(x.source): x.ffn_zeros for x in lay.layers if x.ffn_zeros}
    return {**record, "outtype": outtype, "gguf_architecture": lay.arch, "stand_ins": stand_ins,
            **({"ffn_zero_channels": padded} if padded else {})}


def write(job: Job, out: Path) -> None:
    outtype = job.options.get("outtype") or DEFAULT_OUTTYPE
    qtype, ftype = OUTTYPES[outtype]
    model, cfg = job.model, job.model.config
    lay = layout(model, job.removed, block=math.lcm(FFN_ALIGN, gguf.GGML_QUANT_SIZES[qtype][0]))
    record = _provenance(job, lay, outtype)
    # tensors go to a temporary file as they are added: memory holds one tensor at a time, not the model
    w = gguf.GGUFWriter(out, lay.arch, use_temp_file=True)
    source = str(job.meta.get("base_model") or getattr(cfg, "_name_or_path", "") or family_type(cfg))
    w.add_name(f"{Path(source).name} (blockprune {job.meta.get('method', 'export')})")
    _hyperparameters(w, cfg, lay, ftype)
    _tokenizer(w, job.tokenizer, cfg.vocab_size)
    w.add_string("blockprune.method", str(job.meta.get("method", "none")))
    w.add_string("blockprune.source", source)
    if job.removed:
        w.add_array("blockprune.removed", sorted(job.removed, key=block_order))
    if record["stand_ins"]:
        w.add_array("blockprune.stand_ins", record["stand_ins"])
    w.add_string("blockprune.provenance", json.dumps(record, sort_keys=True))
    for name, data in _tensors(model, lay):
        data, kind = _encode(name, data, qtype)
        w.add_tensor(name, data, raw_dtype=kind)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


register(Format("gguf", write, refusal, file=True, options=("outtype",),
                help="one .gguf file for llama.cpp / Ollama (Llama-layout models; --outtype)"))

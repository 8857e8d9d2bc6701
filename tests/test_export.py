"""Export round trips: every format, tiny models of every supported family, reloaded from disk."""
import importlib.util
import json
import math

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from blockprune import BlockView, UserError
from blockprune.export import choose_format, export, load
from blockprune.models import count_params

from conftest import tiny_llama
from test_families import FAMILIES as FAMILY_MODELS
from test_families import build as build_family
from test_families import ids as family_ids
from test_families import tiny as tiny_family

SMALL = dict(vocab_size=97, hidden_size=32, intermediate_size=48, num_hidden_layers=4, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=128, pad_token_id=0, bos_token_id=1, eos_token_id=2,
             tie_word_embeddings=False)
# what each family needs beyond SMALL to be tiny; sliding windows shorter than the test prompt so that
# per-layer masks matter
FAMILIES = {
    "llama": {}, "mistral": {"sliding_window": 6},
    "qwen2": {"use_sliding_window": True, "sliding_window": 6, "max_window_layers": 2}, "qwen3": {},
    "phi3": {}, "mixtral": {"num_local_experts": 4, "num_experts_per_tok": 2},
    "qwen2_moe": {"num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 16,
                  "shared_expert_intermediate_size": 16},
    "qwen3_moe": {"num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 16},
    "gemma2": {"head_dim": 8, "sliding_window": 6}, "gemma3_text": {"head_dim": 8, "sliding_window": 6},
    "gpt2": {"n_inner": 48, "n_positions": 128}, "gpt_neox": {"use_parallel_residual": True},
    "opt": {"ffn_dim": 48, "word_embed_proj_dim": 32},
}
# attn.0 included: the first layer without attention is where position and cache bookkeeping break
BLOCKS = frozenset({"attn.0", "mlp.1", "attn.2", "attn.3", "mlp.3"})
LAYERS = frozenset({"attn.1", "mlp.1"})


def tiny(model_type: str, seed: int = 0, **overrides):
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    cfg = AutoConfig.for_model(model_type, **{**SMALL, **FAMILIES.get(model_type, {}), **overrides})
    model = AutoModelForCausalLM.from_config(cfg).eval()
    with torch.no_grad():  # as in conftest.tiny_llama: make every block matter
        for p in model.parameters():
            p.mul_(3.0)
    return model


def tiny_tokenizer():
    """A character-level fast tokenizer with a chat template, saved and reloaded like a real one."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, **{chr(32 + i): 3 + i for i in range(94)}}
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE(vocab, merges=[], unk_token="<pad>")),
                                  pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    tok.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    return tok


IDS = torch.randint(3, 97, (1, 14), generator=torch.Generator().manual_seed(1))


def check_round_trip(model, removed, path):
    """Reloaded logits equal the masked in-memory model's; greedy decoding with the KV cache equals
    decoding without; layers without attention hold no KV cache; removed weights are absent."""
    got = load(path)
    want = BlockView(model).logits(IDS, removed)
    assert torch.allclose(got(IDS).logits, want, atol=1e-4, rtol=0), (got(IDS).logits - want).abs().max()
    cached = got.generate(IDS, max_new_tokens=8, do_sample=False, use_cache=True, pad_token_id=0)
    uncached = got.generate(IDS, max_new_tokens=8, do_sample=False, use_cache=False, pad_token_id=0)
    assert torch.equal(cached, uncached)
    n = BlockView(model).num_layers
    in_place = got.config.num_hidden_layers == n  # blocks replaced inside layers, not layers dropped
    no_attn = {int(b.split(".")[1]) for b in removed if b.startswith("attn.")} if in_place else set()
    cache = got(IDS, use_cache=True).past_key_values
    # a layer without attention gets transformers' DummyLayer, which stores nothing; but the first layer's
    # slot is where transformers reads the sequence length, so there a removed attention keeps one number
    # per token
    assert [type(layer).__name__ == "DummyLayer" for layer in cache.layers] == [
        i in no_attn and i > 0 for i in range(got.config.num_hidden_layers)]
    assert all(cache.layers[i].keys.numel() > 0 for i in range(len(cache.layers)) if i not in no_attn)
    assert cache.get_seq_length() == IDS.shape[1]
    if 0 in no_attn:
        k = cache.layers[0].keys  # a sliding layer keeps only its window
        assert (k.shape[0], k.shape[1], k.shape[3]) == (1, 1, 1) and 0 < k.shape[2] <= IDS.shape[1]
    saved = json.loads((path / "config.json").read_text())["blockprune"]
    assert saved["params"] == saved["base_params"] - BlockView(model).removed_params(removed) == count_params(got)
    return got


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("fmt,removed", [("vanilla", LAYERS), ("remote-code", BLOCKS)], ids=["vanilla", "remote-code"])
def test_round_trip_every_family(tmp_path, family, fmt, removed):
    model = tiny(family)
    path = export(model, removed, tmp_path / "ckpt", fmt=fmt, meta={"method": "test"})
    got = check_round_trip(model, removed, path)
    if fmt == "vanilla":
        assert type(got) is type(model) and got.config.num_hidden_layers == 3  # no remote code


# -- path 3: nemotron-nas ---------------------------------------------------------------------------

# Llama layouts DeciLM expresses: GQA and MHA, a width that ffn_mult reproduces (256 = 4.0 x 96 x 2/3)
# and one it cannot (48), tied embeddings, biases, and a Mistral without a sliding window
NAS_MODELS = {
    "llama-gqa-w48": lambda: tiny("llama"),
    "llama-mha-w256-tied": lambda: tiny("llama", hidden_size=96, intermediate_size=256, num_attention_heads=4,
                                        num_key_value_heads=4, tie_word_embeddings=True),
    "llama-bias": lambda: tiny("llama", attention_bias=True, mlp_bias=True),
    "mistral-full-attention": lambda: tiny("mistral", sliding_window=None),
}


@pytest.mark.parametrize("name", sorted(NAS_MODELS))
def test_nemotron_nas_round_trip(tmp_path, name):
    model = NAS_MODELS[name]()
    removed = frozenset({"mlp.0", "attn.1", "attn.2", "mlp.2", "attn.3"})
    path = export(model, removed, tmp_path / "nas", fmt="nemotron-nas", meta={"method": "test"})
    got = check_round_trip(model, removed, path)
    assert type(got).__name__ == "DeciLMForCausalLM"



def test_nemotron_nas_layout_matches_the_format(tmp_path):
    """The checkpoint as vLLM's DeciLM reads it: config fields, and each layer's weight names and shapes
    built from block_configs alone (the format's rules, written out here independently of the exporter)."""
    model = tiny("llama", hidden_size=96, intermediate_size=256, num_attention_heads=6, num_key_value_heads=2)
    removed = frozenset({"attn.1", "mlp.1", "mlp.2", "attn.3"})
    path = export(model, removed, tmp_path / "nas", fmt="nemotron-nas", meta={"method": "blockpruner"})
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["model_type"] == "nemotron-nas" and cfg["architectures"] == ["DeciLMForCausalLM"]
    assert cfg["auto_map"]["AutoConfig"].startswith("configuration_nemotron_nas.")
    for key in ("hidden_size", "num_attention_heads", "num_hidden_layers", "rms_norm_eps", "vocab_size",
                "max_position_embeddings", "hidden_act", "tie_word_embeddings"):
        assert key in cfg
    blocks = cfg["block_configs"]
    assert len(blocks) == cfg["num_hidden_layers"] == 4
    h, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    head_dim = h // heads
    with safe_open(path / "model.safetensors", "pt") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    want = {"model.embed_tokens.weight": (97, h), "model.norm.weight": (h,), "lm_head.weight": (97, h)}
    for i, b in enumerate(blocks):
        attn, ffn = b["attention"], b["ffn"]
        assert set(attn) == {"no_op", "replace_with_linear", "n_heads_in_group"} and not attn["replace_with_linear"]
        assert attn["no_op"] == (f"attn.{i}" in removed) and ffn["no_op"] == (f"mlp.{i}" in removed)
        p = f"model.layers.{i}."
        if not attn["no_op"]:
            kv = heads // attn["n_heads_in_group"] * head_dim
            want.update({p + "input_layernorm.weight": (h,), p + "self_attn.q_proj.weight": (heads * head_dim, h),
                         p + "self_attn.k_proj.weight": (kv, h), p + "self_attn.v_proj.weight": (kv, h),
                         p + "self_attn.o_proj.weight": (h, heads * head_dim)})
        if not ffn["no_op"]:
            assert set(ffn) == {"no_op", "replace_with_linear", "ffn_mult"}  # 256 is expressible exactly
            inter = int(2 * ffn["ffn_mult"] * h / 3)
            inter = inter if inter % 256 == 0 else inter + 256 - inter % 256
            assert inter == 256
            want.update({p + "post_attention_layernorm.weight": (h,), p + "mlp.gate_proj.weight": (inter, h),
                         p + "mlp.up_proj.weight": (inter, h), p + "mlp.down_proj.weight": (h, inter)})
    assert shapes == want
    assert cfg["blockprune"]["method"] == "blockpruner" and cfg["blockprune"]["base_model_type"] == "llama"


def test_nemotron_nas_width_not_on_the_256_grid_is_written_explicitly(tmp_path):
    path = export(tiny("llama"), {"attn.1"}, tmp_path / "nas", fmt="nemotron-nas")
    ffn = json.loads((path / "config.json").read_text())["block_configs"][0]["ffn"]
    assert "ffn_mult" not in ffn and ffn["intermediate_size"] == 48


@pytest.mark.parametrize("family", ["qwen3", "phi3", "mixtral", "gpt2", "mistral"])
def test_nemotron_nas_refuses_what_decilm_cannot_express(tmp_path, family):
    with pytest.raises(UserError, match="remote-code"):
        export(tiny(family), {"attn.1"}, tmp_path / "nas", fmt="nemotron-nas")
    assert not (tmp_path / "nas").exists()


def test_nemotron_nas_refuses_a_network_that_starts_with_an_mlp(tmp_path):
    # vLLM's DeciLM layer would call its fused add-norm without a residual
    with pytest.raises(UserError, match="first kept block is an MLP"):
        export(tiny("llama"), {"attn.0"}, tmp_path / "nas", fmt="nemotron-nas")


# the tiny families of test_families whose forward DeciLM reproduces: they must be written
NAS_EXACT = {"llama", "smollm"}


@pytest.mark.parametrize("name", sorted(FAMILY_MODELS))
def test_nemotron_nas_is_written_only_where_decilm_computes_the_same_model(tmp_path, name):
    # Llama's weight layout is not enough: DeciLM applies no multipliers, rotary variant or norm formula
    # of the family's own, so either the export is refused or its logits are the masked model's
    model = tiny_family(name)
    removed = frozenset({"attn.1"})
    try:
        path = export(model, removed, tmp_path / "nas", fmt="nemotron-nas")
    except UserError as e:
        assert name not in NAS_EXACT and "--format remote-code" in str(e), (name, str(e))
        assert not (tmp_path / "nas").exists()
        return
    x = family_ids()
    got, want = load(path)(x).logits, BlockView(model).logits(x, removed)
    assert torch.allclose(got, want, atol=1e-4, rtol=0), (name, (got - want).abs().max())


@pytest.mark.parametrize("name,overrides,why", [
    ("granite", {}, "residual_multiplier=0.5"),  # and the other µP multipliers, listed too
    ("helium", {}, "interleaved rotary embeddings"),
    ("smollm3", {"use_sliding_window": False, "sliding_window": None}, "NoPE: layers [1]"),
    ("gemma", {"hidden_act": "silu", "hidden_activation": "silu"}, "(1 + weight) RMSNorms"),
], ids=["granite", "helium", "smollm3-nope", "gemma-silu"])
def test_nemotron_nas_refuses_llama_layouts_that_compute_another_model(tmp_path, name, overrides, why):
    with pytest.raises(UserError, match="computes differently") as e:
        export(build_family(name, **overrides), {"attn.1"}, tmp_path / "nas", fmt="nemotron-nas")
    assert why in str(e.value) and "--format remote-code" in str(e.value)


@pytest.mark.parametrize("name,overrides", [
    ("granite", {"residual_multiplier": 1.0, "logits_scaling": 1.0, "embedding_multiplier": 1.0,
                 "attention_multiplier": 8 ** -0.5}),  # head_dim 8: Llama's own scaling
    ("smollm3", {"use_sliding_window": False, "sliding_window": None, "no_rope_layers": [1, 1, 1]}),
], ids=["granite-unit-multipliers", "smollm3-rope-everywhere"])
def test_nemotron_nas_writes_families_whose_config_makes_them_llama(tmp_path, name, overrides):
    model = build_family(name, **overrides)
    removed = frozenset({"attn.1", "mlp.2"})
    path = export(model, removed, tmp_path / "nas", fmt="nemotron-nas")
    x = family_ids()
    assert torch.allclose(load(path)(x).logits, BlockView(model).logits(x, removed), atol=1e-4, rtol=0)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                    reason="vLLM is not installed: its wheels are CUDA builds pinned to their own torch and need a "
                           "GPU, and this machine is CPU-only; test_nemotron_nas_layout_matches_the_format checks "
                           "the checkpoint against DeciLM's field names and shapes instead")
def test_vllm_serves_the_nemotron_nas_checkpoint(tmp_path):
    from vllm import LLM, SamplingParams

    model = tiny("llama", hidden_size=128, intermediate_size=256, num_attention_heads=4, num_key_value_heads=2)
    removed = frozenset({"attn.1", "mlp.2", "attn.3", "mlp.3"})
    path = export(model, removed, tmp_path / "nas", fmt="nemotron-nas", tokenizer=tiny_tokenizer())
    llm = LLM(str(path), trust_remote_code=True, dtype="float32", enforce_eager=True, max_model_len=64)
    out = llm.generate({"prompt_token_ids": IDS[0].tolist()}, SamplingParams(temperature=0, max_tokens=8))
    want = load(path).generate(IDS, max_new_tokens=8, do_sample=False, pad_token_id=0)[0, IDS.shape[1]:]
    assert list(out[0].outputs[0].token_ids) == want.tolist()


# -- pruning a pruned checkpoint again ---------------------------------------------------------------

FIRST = frozenset({"attn.1"})


def pruned_once(tmp_path, fmt="remote-code"):
    model = tiny_llama()
    path = export(model, FIRST, tmp_path / "first", fmt=fmt, meta={"method": "blockpruner", "base_model": "tiny"})
    return model, load(path)


@pytest.mark.parametrize("fmt", ["remote-code", "auto", "nemotron-nas"])
@pytest.mark.parametrize("first_fmt", ["remote-code", "nemotron-nas"])
def test_a_pruned_checkpoint_pruned_again_keeps_its_earlier_removals(tmp_path, first_fmt, fmt):
    # its classes come from the first checkpoint's dynamic module; the second one must import transformers'
    model, first = pruned_once(tmp_path, first_fmt)
    assert type(first).__module__.startswith("transformers_modules.")
    path = export(first, {"mlp.2"}, tmp_path / "second", fmt=fmt,
                  meta={"method": "shortgpt", "base_model": str(tmp_path / "first")})
    both = frozenset(FIRST | {"mlp.2"})
    for code in path.glob("modeling_*.py"):
        assert "transformers_modules" not in code.read_text()
    got = check_round_trip(model, both, path)  # parameter counts against the dense original included
    assert torch.allclose(got(IDS).logits, BlockView(model).logits(IDS, both), atol=1e-5, rtol=0)
    rec = got.config.blockprune
    assert rec["removed"] == ["attn.1", "mlp.2"] and rec["base_model_type"] == "llama"
    assert rec["method"] == "shortgpt" and rec["base_model"] == "tiny"  # the dense original, not the first checkpoint
    assert rec["pruned_from"]["checkpoint"] == str(tmp_path / "first") and rec["pruned_from"]["removed"] == ["attn.1"]
    # and once more: the third export merges the second's removals in turn
    third = export(got, {"attn.3"}, tmp_path / "third", fmt="remote-code")
    check_round_trip(model, both | {"attn.3"}, third)


def test_vanilla_export_of_a_pruned_checkpoint_needs_whole_layers_with_its_earlier_removals(tmp_path):
    model, first = pruned_once(tmp_path)
    with pytest.raises(UserError, match="removed from it before: attn.1"):
        export(first, {"attn.2", "mlp.2"}, tmp_path / "v", fmt="vanilla")  # layer 2, but half of layer 1 too
    # mlp.1 completes layer 1: the family's own model with a layer fewer, no remote code
    path = export(first, {"mlp.1"}, tmp_path / "v", fmt="vanilla")
    got = check_round_trip(model, FIRST | {"mlp.1"}, path)
    assert type(got) is type(model) and not list(path.glob("*.py"))
    assert type(load(export(first, {"mlp.1"}, tmp_path / "auto"))) is type(model)  # auto chooses it too


def test_prune_on_a_pruned_checkpoint_folder_exports_both_prunings(tmp_path, tiny_checkpoint, calib_file):
    from blockprune import models, prune
    from blockprune.data import load_windows

    opts = dict(calibration=calib_file, progress=False, num_blocks=2, nsamples=4, seqlen=32)
    first = prune(tiny_checkpoint, tmp_path / "r1", **opts)
    second = prune(str(first.checkpoint), tmp_path / "r2", **opts)
    rec = json.loads((second.checkpoint / "config.json").read_text())["blockprune"]
    first_rec = json.loads((first.checkpoint / "config.json").read_text())["blockprune"]
    got_removed = set(rec["removed"])
    if first_rec["format"] == "vanilla":
        # whole layers went first: the checkpoint is the family's own model with layers renumbered, so the
        # second search names blocks by its own indices and the earlier record is kept beside them
        assert got_removed == set(second.plan.removed_blocks)
        assert rec["pruned_from"]["removed"] == first_rec["removed"]
        base, tok = models.load(str(first.checkpoint))
    else:
        assert got_removed == set(first.plan.removed_blocks | second.plan.removed_blocks)
        base, tok = models.load(tiny_checkpoint)
    assert rec["removed"] == sorted(got_removed, key=BlockView.index_of)
    x = load_windows(calib_file, tok, 32).ids
    got = load(second.checkpoint)(x).logits
    assert torch.allclose(got, BlockView(base).logits(x, frozenset(rec["removed"])), atol=1e-5, rtol=0)


def test_prune_on_a_vanilla_checkpoint_keeps_the_earlier_record_beside_its_own(tmp_path, tiny_checkpoint, calib_file):
    from blockprune import models, prune
    from blockprune.data import load_windows

    dense, tok = models.load(tiny_checkpoint)
    export(dense, {"attn.1", "mlp.1"}, tmp_path / "layers", tokenizer=tok, meta={"base_model": tiny_checkpoint})
    second = prune(str(tmp_path / "layers"), tmp_path / "r2", calibration=calib_file, progress=False, num_blocks=1,
                   nsamples=4, seqlen=32)
    rec = json.loads((second.checkpoint / "config.json").read_text())["blockprune"]
    assert rec["removed"] == second.plan.removed and rec["pruned_from"]["removed"] == ["attn.1", "mlp.1"]
    assert rec["pruned_from"]["format"] == "vanilla"
    base, _ = models.load(str(tmp_path / "layers"))
    x = load_windows(calib_file, tok, 32).ids
    assert torch.allclose(load(second.checkpoint)(x).logits, BlockView(base).logits(x, frozenset(rec["removed"])),
                          atol=1e-5, rtol=0)


# -- choosing, refusing, provenance, damage ---------------------------------------------------------

def test_auto_chooses_vanilla_for_whole_layers_and_remote_code_otherwise(tmp_path):
    assert choose_format(frozenset()) == "vanilla"
    assert choose_format(LAYERS) == "vanilla"
    assert choose_format(frozenset({"attn.1"})) == "remote-code"
    path = export(tiny_llama(), {"mlp.2"}, tmp_path / "auto")
    assert json.loads((path / "config.json").read_text())["blockprune"]["format"] == "remote-code"


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_checkpoint_permissions_follow_the_umask(tmp_path, umask):
    import os

    old = os.umask(umask)
    try:
        import blockprune.atomic as atomic
        saved, atomic._UMASK = atomic._UMASK, umask  # read once at import, like the process umask it mirrors
        path = export(tiny_llama(), {"mlp.2"}, tmp_path / "ckpt")
    finally:
        atomic._UMASK = saved
        os.umask(old)
    assert os.stat(path).st_mode & 0o777 == 0o777 & ~umask
    files = [p for p in path.rglob("*") if p.is_file()]
    assert any(p.name == "model.safetensors" for p in files)
    for p in files:
        assert os.stat(p).st_mode & 0o777 == 0o666 & ~umask, p.name


def test_export_refuses_unknown_block_names(tmp_path):
    with pytest.raises(UserError, match="unknown block names"):
        export(tiny_llama(), {"attn.9"}, tmp_path / "x", fmt="remote-code")
    assert not (tmp_path / "x").exists()


def test_vanilla_refuses_single_blocks(tmp_path):
    with pytest.raises(UserError, match="whole removed layers"):
        export(tiny_llama(), {"attn.1"}, tmp_path / "v", fmt="vanilla")


def test_vanilla_refuses_configs_that_tie_structure_to_layer_index(tmp_path):
    # Qwen2-MoE: every second layer sparse; dropping layer 1 would move dense and sparse MLPs around
    model = tiny("qwen2_moe", decoder_sparse_step=2)
    with pytest.raises(UserError, match="layer indices"):
        export(model, LAYERS, tmp_path / "v", fmt="vanilla")
    check_round_trip(model, LAYERS, export(model, LAYERS, tmp_path / "rc", fmt="remote-code"))


def test_remote_code_checkpoint_is_refused_without_trust_remote_code(tmp_path):
    from transformers import AutoModelForCausalLM

    path = export(tiny_llama(), {"attn.1"}, tmp_path / "rc", fmt="remote-code")
    with pytest.raises(Exception):  # never silently read as the dense model
        AutoModelForCausalLM.from_pretrained(path, trust_remote_code=False)


def test_tokenizer_generation_config_chat_template_and_provenance_travel(tmp_path):
    from transformers import AutoTokenizer, GenerationConfig

    model, tok = tiny_llama(), tiny_tokenizer()
    model.generation_config = GenerationConfig(max_new_tokens=7, eos_token_id=2, pad_token_id=0)
    meta = {"method": "blockpruner", "base_model": "tiny-llama", "base_model_sha256": "abc"}
    for fmt, removed in [("vanilla", LAYERS), ("remote-code", BLOCKS), ("nemotron-nas", {"attn.1", "mlp.2"})]:
        path = export(model, removed, tmp_path / fmt, fmt=fmt, meta=meta, tokenizer=tok)
        back = AutoTokenizer.from_pretrained(path)
        assert back.chat_template == tok.chat_template and back("hi").input_ids == tok("hi").input_ids
        assert load(path).generation_config.max_new_tokens == 7
        rec = json.loads((path / "config.json").read_text())["blockprune"]
        assert rec["removed"] == sorted(removed, key=lambda b: (int(b.split(".")[1]), b[0] == "m"))
        assert {k: rec[k] for k in meta} == meta and rec["format"] == fmt


def test_load_refuses_a_checkpoint_with_missing_weights(tmp_path):
    path = export(tiny_llama(), {"attn.1"}, tmp_path / "rc", fmt="remote-code")
    weights = load_file(path / "model.safetensors")
    del weights["model.layers.2.mlp.up_proj.weight"]
    save_file(weights, path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(UserError, match="missing_keys"):
        load(path)


def test_load_refuses_a_folder_without_config(tmp_path):
    with pytest.raises(UserError, match="no config.json"):
        load(tmp_path)


def cli_run_folder(tmp_path):
    """A run folder whose plan removes attn.2 and layer 1 of a saved tiny Llama: (model, its folder, run)."""
    from blockprune import models
    from blockprune.plan import Plan

    model, tok = tiny_llama(), tiny_tokenizer()
    base = tmp_path / "base"
    model.save_pretrained(base)
    tok.save_pretrained(base)
    model = load(base)
    plan = Plan(method="blockpruner", model={"source": str(base), "family": "llama", "sha256": models.fingerprint(model)},
                calibration={}, options={}, status="done",
                steps=[{"step": 1, "removed": "attn.2", "ppl": 1.0}, {"step": 2, "removed": "layer.1", "ppl": 2.0}])
    run = tmp_path / "run"
    plan.save(run / "plan.json")
    return model, base, run


def test_cli_exports_a_run_folder_in_every_format(tmp_path, capsys):
    from blockprune.cli import main

    model, base, run = cli_run_folder(tmp_path)
    for fmt in ("remote-code", "nemotron-nas", "auto"):
        assert main(["export", str(run), "--format", fmt]) == 0
        path = run / f"model-{fmt}"
        assert f"wrote {path}" in capsys.readouterr().out
        rec = json.loads((path / "config.json").read_text())["blockprune"]
        assert rec["removed"] == ["attn.1", "mlp.1", "attn.2"] and rec["base_model"] == str(base)
        check_round_trip(model, frozenset(rec["removed"]), path)
    assert main(["export", str(run), "--format", "vanilla"]) == 2
    assert "whole removed layers" in capsys.readouterr().err


def test_a_format_registered_at_runtime_is_offered_and_used_by_the_cli(tmp_path, capsys):
    """docs/add-an-export-format.md's example format, run from the page: offered by --format once
    registered, written when chosen, and gone again once unregistered."""
    import sys

    from blockprune.cli import main
    from blockprune.export import FORMATS, unregister
    from conftest import doc_module

    model, base, run = cli_run_folder(tmp_path)
    assert main(["export", str(run), "--format", "card"]) == 2
    assert "invalid choice: 'card'" in capsys.readouterr().err
    doc_module("add-an-export-format.md", "blockprune.export.card")
    try:
        assert main(["export", "--help"]) == 0
        assert "{auto,vanilla,remote-code,nemotron-nas,gguf,card}" in capsys.readouterr().out
        assert main(["export", str(run), "--format", "card"]) == 0
        path = run / "model-card"
        assert f"wrote {path}" in capsys.readouterr().out
        assert "- removed blocks: attn.1, mlp.1, attn.2" in (path / "README.md").read_text()
        rec = json.loads((path / "config.json").read_text())["blockprune"]
        assert rec["format"] == "remote-code" and rec["removed"] == ["attn.1", "mlp.1", "attn.2"]
        check_round_trip(model, frozenset(rec["removed"]), path)
    finally:
        unregister("card")
        sys.modules.pop("blockprune.export.card", None)
    assert "card" not in FORMATS
    assert main(["export", str(run), "--format", "card"]) == 2


@pytest.mark.slow
def test_pruned_smollm2_reloads_with_the_runs_calibration_perplexity(smollm2_run, shared_data):
    """A real BlockPruner run on SmolLM2 (conftest's smollm2_run: 2 windows of 64 tokens, 3 blocks), exported
    by the CLI through path 2 and path 3: each reloaded checkpoint reproduces the plan's final calibration
    perplexity."""
    from transformers import AutoTokenizer

    from blockprune.cli import main
    from blockprune.data import load_windows

    run, plan = smollm2_run.out, smollm2_run.plan
    recorded = plan.steps[-1]["ppl"]
    for fmt in ("remote-code", "nemotron-nas"):
        assert main(["export", str(run), "--format", fmt]) == 0
        path = run / f"model-{fmt}"
        tok = AutoTokenizer.from_pretrained(path)
        windows = load_windows("alpaca", tok, 64, nsamples=2, seed=42, data_dir_=shared_data)
        assert windows.sha256() == plan.calibration["sha256"] and len(windows) >= 2
        model = load(path)
        with torch.no_grad():
            nll = [torch.nn.functional.cross_entropy(model(ids[None]).logits[0, :-1].double(), ids[1:])
                   for ids in windows.ids]
        assert math.exp(torch.stack(nll).mean().item()) == pytest.approx(recorded, rel=1e-4)
        assert tok.chat_template and "<|im_start|>" in tok.chat_template


def _imports(path, module: str, package: bool) -> set[str]:
    """Every blockprune module `module` imports (at any depth of its code), with the packages around it
    that importing it runs first (not the importer's own packages: they are running already)."""
    import ast

    src = path.parents[len(module.split(".")) - (0 if package else 1)]

    def is_module(name: str) -> bool:
        where = src.joinpath(*name.split("."))
        return where.with_suffix(".py").exists() or (where / "__init__.py").exists()

    out = set()
    base = module if package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            parent = base
            for _ in range(node.level - 1):
                parent = parent.rpartition(".")[0]
            origin = f"{parent}.{node.module}" if node.level and node.module else (parent if node.level else node.module)
            subs = [f"{origin}.{a.name}" for a in node.names]
            targets = [origin, *(s for s in subs if is_module(s))]
        else:
            continue
        for t in targets:
            parts = t.split(".")
            for i in range(1, len(parts) + 1):
                m = ".".join(parts[:i])
                if m.startswith("blockprune") and not (module == m or module.startswith(m + ".")):
                    out.add(m)
    return out


def test_no_import_cycles():
    """No module of blockprune imports one that (through any chain, at any depth of its code) imports it
    back: arch/ below width/ below export/, scoring/ below methods/ below options and api; and each of
    those packages imports alone in a fresh interpreter."""
    import subprocess
    import sys
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src"
    graph = {}
    for path in sorted((src / "blockprune").rglob("*.py")):
        if "templates" in path.parts:  # files checkpoints ship, never imported by blockprune
            continue
        package = path.name == "__init__.py"
        parts = path.relative_to(src).with_suffix("").parts
        name = ".".join(parts[:-1] if package else parts)
        if name == "blockprune":  # the package's own __init__ re-exports the API; every module sits below it
            continue
        graph[name] = {m for m in _imports(path, name, package) if m.startswith("blockprune.")}
    assert graph["blockprune.export.vanilla"] and "blockprune.width.modules" in graph["blockprune.export.width"]
    assert "blockprune.scoring.registry" in graph["blockprune.scoring.local"]

    def reach(start):
        seen, todo = set(), [start]
        while todo:
            for m in graph.get(todo.pop(), ()):
                if m not in seen:
                    seen.add(m)
                    todo.append(m)
        return seen

    cycles = sorted(m for m in graph if m in reach(m))
    assert not cycles, cycles
    assert not any(m.startswith("blockprune.export") for w in graph if w.startswith("blockprune.width") for m in graph[w])
    for pkg in ("blockprune.width", "blockprune.export", "blockprune.arch", "blockprune.export.vanilla",
                "blockprune.scoring", "blockprune.methods", "blockprune.options"):
        subprocess.run([sys.executable, "-c", f"import {pkg}"], check=True)

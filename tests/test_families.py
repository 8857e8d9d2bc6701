"""Every supported decoder family, on a tiny random model built from its transformers config class.

For each family: the masked view equals the stock model with the masked branches' output projections
zeroed, the greedy search runs, and both export formats load back to the masked view's logits with
cached generation equal to uncached generation. The reference side never uses the adapter: which
weights make a branch's output is written out here, per family."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import pytest
import torch
import transformers

from blockprune.data import Windows
from blockprune.errors import UserError
from blockprune.export import export, load
from blockprune.scoring.incremental import IncrementalScorer
from blockprune.window_nll import perplexity
from blockprune.scoring.plain import PlainScorer
from blockprune.plan import Plan
from blockprune.search import candidate_units, greedy
from blockprune.view import BlockView

VOCAB = 97
LAYERS = 3


@dataclass(frozen=True)
class Family:
    config: str  # transformers config class
    model: str  # transformers causal-LM class
    layers: str  # where the decoder layers are
    # per branch kind: the layer submodules / parameters whose zeroing silences that branch
    outputs: dict[str, tuple[str, ...]]
    cfg: dict = field(default_factory=dict)


def llama_like(**cfg) -> dict:
    base = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=LAYERS,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                tie_word_embeddings=False, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return {**base, **cfg}


DENSE = {"attn": ("self_attn.o_proj",), "mlp": ("mlp.down_proj",)}
MOE = {"attn": ("self_attn.o_proj",), "mlp": ("mlp.experts.down_proj",)}  # every expert at once (fused)
FALCON = {"attn": ("self_attention.dense",), "mlp": ("mlp.dense_4h_to_h",)}


def falcon(**cfg) -> dict:
    return dict(vocab_size=VOCAB, hidden_size=32, ffn_hidden_size=48, num_hidden_layers=LAYERS, num_attention_heads=4,
                max_position_embeddings=128, pad_token_id=0, bos_token_id=1, eos_token_id=2, **cfg)


SLIDING = 4  # smaller than the test sequences, so per-layer sliding masks matter
MIXED = ["sliding_attention", "full_attention", "sliding_attention"]
GEMMA = dict(head_dim=8, sliding_window=SLIDING, final_logit_softcapping=0.5, layer_types=MIXED)

FAMILIES: dict[str, Family] = {
    "llama": Family("LlamaConfig", "LlamaForCausalLM", "model.layers", DENSE, llama_like()),
    "smollm": Family("LlamaConfig", "LlamaForCausalLM", "model.layers", DENSE, llama_like(tie_word_embeddings=True)),
    "mistral": Family("MistralConfig", "MistralForCausalLM", "model.layers", DENSE, llama_like(sliding_window=SLIDING)),
    # NoPE in the middle layer: vanilla export drops it, and the next layer must keep its rotary embedding
    "smollm3": Family("SmolLM3Config", "SmolLM3ForCausalLM", "model.layers", DENSE,
                      llama_like(no_rope_layers=[1, 0, 1], use_sliding_window=True, sliding_window=SLIDING)),
    "qwen2": Family("Qwen2Config", "Qwen2ForCausalLM", "model.layers", DENSE,
                    llama_like(use_sliding_window=True, sliding_window=SLIDING, max_window_layers=1)),
    "qwen3": Family("Qwen3Config", "Qwen3ForCausalLM", "model.layers", DENSE, llama_like(head_dim=8)),
    "phi3": Family("Phi3Config", "Phi3ForCausalLM", "model.layers", DENSE, llama_like()),
    "gemma": Family("GemmaConfig", "GemmaForCausalLM", "model.layers", DENSE, llama_like(head_dim=8)),
    "gemma2": Family("Gemma2Config", "Gemma2ForCausalLM", "model.layers", DENSE,
                     llama_like(**GEMMA, attn_logit_softcapping=5.0, query_pre_attn_scalar=8)),
    "gemma3": Family("Gemma3TextConfig", "Gemma3ForCausalLM", "model.layers", DENSE, llama_like(**GEMMA)),
    "pythia": Family("GPTNeoXConfig", "GPTNeoXForCausalLM", "gpt_neox.layers",
                     {"attn": ("attention.dense",), "mlp": ("mlp.dense_4h_to_h",)},
                     llama_like(num_key_value_heads=None, use_parallel_residual=True, rotary_pct=0.5)),
    "gpt_neox-sequential": Family("GPTNeoXConfig", "GPTNeoXForCausalLM", "gpt_neox.layers",
                                  {"attn": ("attention.dense",), "mlp": ("mlp.dense_4h_to_h",)},
                                  llama_like(num_key_value_heads=None, use_parallel_residual=False)),
    "gpt2": Family("GPT2Config", "GPT2LMHeadModel", "transformer.h", {"attn": ("attn.c_proj",), "mlp": ("mlp.c_proj",)},
                   dict(vocab_size=VOCAB, n_embd=32, n_layer=LAYERS, n_head=4, n_positions=128,
                        bos_token_id=1, eos_token_id=2)),
    "opt": Family("OPTConfig", "OPTForCausalLM", "model.decoder.layers", {"attn": ("self_attn.out_proj",), "mlp": ("fc2",)},
                  dict(vocab_size=VOCAB, hidden_size=32, ffn_dim=48, num_hidden_layers=LAYERS, num_attention_heads=4,
                       max_position_embeddings=128, word_embed_proj_dim=16, pad_token_id=0, bos_token_id=1,
                       eos_token_id=2)),
    "ministral": Family("MinistralConfig", "MinistralForCausalLM", "model.layers", DENSE,
                        llama_like(head_dim=8, sliding_window=SLIDING, layer_types=MIXED)),
    "starcoder2": Family("Starcoder2Config", "Starcoder2ForCausalLM", "model.layers",
                         {"attn": ("self_attn.o_proj",), "mlp": ("mlp.c_proj",)}, llama_like(sliding_window=SLIDING)),
    "olmo": Family("OlmoConfig", "OlmoForCausalLM", "model.layers", DENSE, llama_like()),
    "olmo2": Family("Olmo2Config", "Olmo2ForCausalLM", "model.layers", DENSE, llama_like()),
    "olmo3": Family("Olmo3Config", "Olmo3ForCausalLM", "model.layers", DENSE,
                    llama_like(sliding_window=SLIDING, layer_types=MIXED)),
    "exaone4": Family("Exaone4Config", "Exaone4ForCausalLM", "model.layers", DENSE,
                      llama_like(sliding_window=SLIDING, layer_types=MIXED)),
    "glm": Family("GlmConfig", "GlmForCausalLM", "model.layers", DENSE, llama_like()),
    "glm4": Family("Glm4Config", "Glm4ForCausalLM", "model.layers", DENSE, llama_like()),
    "helium": Family("HeliumConfig", "HeliumForCausalLM", "model.layers", DENSE, llama_like(head_dim=8)),
    "nemotron": Family("NemotronConfig", "NemotronForCausalLM", "model.layers", DENSE, llama_like()),
    "granite": Family("GraniteConfig", "GraniteForCausalLM", "model.layers", DENSE,
                      llama_like(residual_multiplier=0.5, logits_scaling=2.0, embedding_multiplier=3.0,
                                 attention_multiplier=0.2)),
    "phi": Family("PhiConfig", "PhiForCausalLM", "model.layers", {"attn": ("self_attn.dense",), "mlp": ("mlp.fc2",)},
                  llama_like(num_key_value_heads=None, partial_rotary_factor=0.5)),
    "cohere": Family("CohereConfig", "CohereForCausalLM", "model.layers", DENSE, llama_like(logit_scale=0.5)),
    "stablelm": Family("StableLmConfig", "StableLmForCausalLM", "model.layers", DENSE, llama_like(qk_layernorm=True)),
    "stablelm-parallel": Family("StableLmConfig", "StableLmForCausalLM", "model.layers", DENSE,
                                llama_like(use_parallel_residual=True)),
    "falcon-7b": Family("FalconConfig", "FalconForCausalLM", "transformer.h", FALCON,
                        falcon(parallel_attn=True, new_decoder_architecture=False, multi_query=True)),
    "falcon-40b": Family("FalconConfig", "FalconForCausalLM", "transformer.h", FALCON,
                         falcon(new_decoder_architecture=True, num_kv_heads=2)),
    "falcon-rw": Family("FalconConfig", "FalconForCausalLM", "transformer.h", FALCON,
                        falcon(parallel_attn=False, new_decoder_architecture=False, multi_query=False, alibi=True,
                               bias=True)),
    "mixtral": Family("MixtralConfig", "MixtralForCausalLM", "model.layers", MOE,
                      llama_like(num_local_experts=4, num_experts_per_tok=2)),
    "qwen2_moe": Family("Qwen2MoeConfig", "Qwen2MoeForCausalLM", "model.layers",
                        {"attn": ("self_attn.o_proj",), "mlp": ("mlp.experts.down_proj", "mlp.shared_expert.down_proj")},
                        llama_like(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16,
                                   shared_expert_intermediate_size=24)),
    "olmoe": Family("OlmoeConfig", "OlmoeForCausalLM", "model.layers", MOE,
                    llama_like(num_experts=4, num_experts_per_tok=2)),
    "gpt_oss": Family("GptOssConfig", "GptOssForCausalLM", "model.layers",
                      {"attn": ("self_attn.o_proj",), "mlp": ("mlp.experts.down_proj", "mlp.experts.down_proj_bias")},
                      llama_like(num_local_experts=4, num_experts_per_tok=2, sliding_window=SLIDING, layer_types=MIXED)),
    "qwen3_moe": Family("Qwen3MoeConfig", "Qwen3MoeForCausalLM", "model.layers", MOE,
                        llama_like(head_dim=8, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16)),
}
SLIDING_FAMILIES = ("mistral", "ministral", "qwen2", "gemma2", "gemma3", "starcoder2", "olmo3", "exaone4", "gpt_oss")

_built: dict[str, torch.nn.Module] = {}


def build(name: str, **overrides) -> torch.nn.Module:
    fam = FAMILIES[name]
    torch.manual_seed(0)
    config = getattr(transformers, fam.config)(**{**fam.cfg, **overrides})
    model = getattr(transformers, fam.model)(config).eval()
    # random init leaves residual branches tiny; scale them up so each block matters distinctly
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    return model


def tiny(name: str) -> torch.nn.Module:
    """One model per family for the whole module (tests never modify it)."""
    if name not in _built:
        _built[name] = build(name)
    return _built[name]


def silenced(name: str, model: torch.nn.Module, removed: set[str]) -> torch.nn.Module:
    """A copy of the stock model whose `removed` branches output zeros: their output weights and biases zeroed."""
    fam = FAMILIES[name]
    out = copy.deepcopy(model)
    layers = out.get_submodule(fam.layers)
    with torch.no_grad():
        for block in removed:
            kind, _, i = block.partition(".")
            for path in fam.outputs[kind]:
                target = layers[int(i)]
                parent, _, leaf = path.rpartition(".")
                holder = target.get_submodule(parent) if parent else target
                thing = getattr(holder, leaf)
                for p in (thing.parameters() if isinstance(thing, torch.nn.Module) else [thing]):
                    p.zero_()
    return out


def ids(n: int = 2, t: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.randint(3, VOCAB, (n, t), generator=torch.Generator().manual_seed(seed))


MASKS = [set(), {"attn.0"}, {"mlp.1"}, {"attn.0", "mlp.0"}, {"attn.1", "mlp.2"}, {"attn.0", "attn.1", "attn.2"},
         {"mlp.0", "mlp.1", "mlp.2", "attn.2"}]


@pytest.mark.parametrize("name", FAMILIES)
def test_masked_view_equals_stock_model_with_branch_outputs_zeroed(name):
    model = tiny(name)
    view = BlockView(model)
    assert view.num_layers == LAYERS and len(view.blocks) == 2 * LAYERS
    assert all(b.params > 0 for b in view.blocks)
    x = ids()
    dense = model(x).logits
    for removed in MASKS:
        ref = silenced(name, model, removed)(x).logits
        got = view.logits(x, frozenset(removed))
        assert torch.allclose(got, ref, atol=1e-5, rtol=0), (name, removed, (got - ref).abs().max())
        if removed:  # the reference really changed: the test could fail
            assert (ref - dense).abs().max() > 1e-3, (name, removed)


@pytest.mark.parametrize("name", FAMILIES)
def test_window_nll_in_vocabulary_slices_equals_cross_entropy_of_the_stock_logits(name, monkeypatch):
    import blockprune.view as view_module
    monkeypatch.setattr(view_module, "VOCAB_SLICE_CPU", 7)  # many slices, the last one ragged
    model = tiny(name)
    view = BlockView(model)
    x = ids(n=2)
    logits = model(x).logits.double()
    ref = torch.stack([torch.nn.functional.cross_entropy(logits[i, :-1], x[i, 1:]) for i in range(2)])
    prep = view.prepare(x)
    got = view.window_nll(view.run(prep.hidden, prep, frozenset()), x)
    assert torch.allclose(got, ref, rtol=1e-5, atol=0), (name, got, ref)


PARALLEL = {"pythia", "phi", "cohere", "stablelm-parallel", "falcon-7b", "falcon-40b"}


@pytest.mark.parametrize("name", FAMILIES)
def test_parallel_residual_is_flagged_exactly_where_the_config_says_so(name):
    assert BlockView(tiny(name)).parallel == (name in PARALLEL)


@pytest.mark.parametrize("name", ["phi", "cohere", "stablelm-parallel", "falcon-7b"])
def test_a_norm_shared_by_both_branches_is_owned_by_neither(name, tmp_path):
    # removing one branch must leave the other its input norm: the norm stays in the export
    model = tiny(name)
    view = BlockView(model)
    norm = "input_layernorm"
    assert not any(norm in n for kind in ("attn", "mlp") for n, _ in view.adapter.branch_parameters(0, kind))
    export(model, {"attn.0", "mlp.0"}, tmp_path / "rc", fmt="remote-code")
    kept = load(tmp_path / "rc").get_submodule(f"{FAMILIES[name].layers}.0.{norm}")
    assert sum(p.numel() for p in kept.parameters()) > 0


@pytest.mark.parametrize("name", SLIDING_FAMILIES)
def test_sliding_windows_and_soft_capping_follow_the_stock_model(name):
    model = tiny(name)
    x = ids(t=3 * SLIDING)
    stock = model(x).logits
    assert torch.allclose(BlockView(model).logits(x), stock, atol=1e-5, rtol=0)
    # the same weights with a window wider than the sequence compute something else: the windows mattered
    wide = build(name, sliding_window=1024)
    assert (wide(x).logits - stock).abs().max() > 1e-3
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap is not None:
        assert stock.abs().max() < cap
        uncapped = build(name, final_logit_softcapping=None)(x).logits
        assert uncapped.abs().max() > cap  # capping was active, and the view reproduced it


def random_windows(n: int = 2, t: int = 16) -> Windows:
    x = ids(n, t, seed=7)
    return Windows(x, "random", n, n * t, None)


def search(view: BlockView, scorer, steps: int = 2) -> Plan:
    return greedy(view, scorer, Plan("blockpruner", {}, {}, {}), candidate_units(view), num_blocks=steps, ratio=None)


@pytest.mark.parametrize("name", FAMILIES)
def test_greedy_search_runs_and_the_incremental_scorer_agrees(name):
    view = BlockView(tiny(name))
    windows = random_windows()
    plan = search(view, PlainScorer(view, windows))
    assert len(plan.steps) == 2
    first = plan.steps[0]
    assert first["removed"] == min(first["scores"], key=lambda u: (first["scores"][u], view.by_name[u].index))
    assert plan.steps[1]["ppl"] == pytest.approx(perplexity(view, windows, plan.removed_blocks), rel=1e-9)
    # cached block boundaries (whole layers for parallel residual) must not change any score
    fast = search(view, IncrementalScorer(view, windows, batch_size=2))
    assert fast.removed == plan.removed
    for a, b in zip(fast.steps, plan.steps):
        assert a["scores"] == pytest.approx(b["scores"], rel=1e-6)


def attention_cache_holders(model: torch.nn.Module, x: torch.Tensor) -> list[bool]:
    """Per layer: whether the KV cache holds keys for it after a forward pass. A removed first-layer
    attention's slot holds one number per token (the sequence length transformers reads there): not keys."""
    cache = model(x, use_cache=True).past_key_values
    assert cache.get_seq_length() == x.shape[1]
    return [getattr(layer, "keys", None) is not None and layer.keys.numel() > 0
            and layer.keys.shape[1] * layer.keys.shape[-1] > 1 for layer in cache.layers]


def generate(model, prompt: torch.Tensor, cache: bool) -> torch.Tensor:
    return model.generate(prompt, max_new_tokens=2 * SLIDING, do_sample=False, use_cache=cache, pad_token_id=0,
                          eos_token_id=None)


def assert_round_trip(name, view, removed, out):
    loaded = load(out)
    x = ids(t=3 * SLIDING)
    want = view.logits(x, frozenset(removed))
    got = loaded(x).logits
    assert torch.allclose(got, want, atol=1e-4, rtol=0), (name, sorted(removed), (got - want).abs().max())
    prompt = x[:1, :SLIDING + 2]  # generation runs past the sliding window
    assert torch.equal(generate(loaded, prompt, True), generate(loaded, prompt, False))
    return loaded


REMOTE_CODE_MASKS = [{"attn.0", "mlp.1", "attn.2"}, {"mlp.0", "attn.1"}]


@pytest.mark.parametrize("name", FAMILIES)
def test_remote_code_export_round_trips_and_layers_without_attention_hold_no_cache(name, tmp_path):
    model = tiny(name)
    view = BlockView(model)
    for k, removed in enumerate(REMOTE_CODE_MASKS):
        out = tmp_path / f"{name}-{k}"
        export(model, removed, out, fmt="remote-code")
        loaded = assert_round_trip(name, view, removed, out)
        assert sum(p.numel() for p in loaded.parameters()) == view.total_params - view.removed_params(removed)
        holders = attention_cache_holders(loaded, ids(1, 6))
        assert holders == [f"attn.{i}" not in removed for i in range(LAYERS)], (name, sorted(removed), holders)


@pytest.mark.parametrize("name", FAMILIES)
def test_vanilla_export_of_whole_layers_round_trips(name, tmp_path):
    model = tiny(name)
    view = BlockView(model)
    removed = {"attn.1", "mlp.1"}
    export(model, removed, tmp_path / name, fmt="vanilla")
    loaded = assert_round_trip(name, view, removed, tmp_path / name)
    assert type(loaded) is type(model) and loaded.config.num_hidden_layers == LAYERS - 1
    assert attention_cache_holders(loaded, ids(1, 6)) == [True] * (LAYERS - 1)


def test_gpt2_that_scales_attention_by_layer_index_keeps_its_indices(tmp_path):
    # renumbering would change such a layer's arithmetic: vanilla refuses, remote-code keeps every index
    model = build("gpt2", scale_attn_by_inverse_layer_idx=True)
    view = BlockView(model)
    with pytest.raises(UserError, match="remote-code"):
        export(model, {"attn.1", "mlp.1"}, tmp_path / "v", fmt="vanilla")
    export(model, {"attn.1", "mlp.1"}, tmp_path / "rc", fmt="remote-code")
    assert_round_trip("gpt2", view, {"attn.1", "mlp.1"}, tmp_path / "rc")


def test_an_unsupported_model_names_the_supported_families_and_how_to_add_one():
    config = transformers.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=48, is_decoder=True)
    with pytest.raises(UserError) as e:
        BlockView(transformers.BertLMHeadModel(config))
    msg = str(e.value)
    assert "'bert'" in msg
    for family in ("llama", "gemma2", "gpt_neox", "gpt2", "opt", "mixtral", "qwen3_moe"):
        assert family in msg
    assert "Adapter" in msg and "register" in msg


@pytest.mark.parametrize("name,overrides,reason", [
    ("opt", {"do_layer_norm_before": False}, "post-norm"),  # opt-350m: norms on the residual stream
    ("gpt2", {"add_cross_attention": True}, "cross-attention"),
])
def test_layer_shapes_that_are_not_residual_branches_are_refused_with_the_reason(name, overrides, reason):
    with pytest.raises(UserError, match=reason):
        BlockView(build(name, **overrides))


def likelihood_requests() -> list:
    """Hand-built lm-eval requests ((context, continuation) strings, context ids, continuation ids): shared
    prompts with choices of different lengths, a one-token prompt, and one too long to keep whole."""
    g = torch.Generator().manual_seed(3)
    tokens = lambda n: torch.randint(3, VOCAB, (n,), generator=g).tolist()  # noqa: E731
    reqs = []
    for prompt_len, choices in ((9, (3, 1, 5, 2)), (1, (4, 2)), (14, (6, 6))):
        prompt = tokens(prompt_len)
        reqs += [((f"p{prompt_len}", f"c{i}"), prompt, tokens(n)) for i, n in enumerate(choices)]
    reqs.append((("long", "c"), tokens(60), tokens(8)))  # 68 tokens: over max_length 64, HFLM truncates it
    return reqs


@pytest.mark.parametrize("name", FAMILIES)
def test_shared_prompt_scoring_equals_lm_evals_hflm(name):
    from lm_eval.models.huggingface import HFLM

    from blockprune.evaluate import mask_in_memory
    from blockprune.evaluate.shared_prefix import SharedPrefixHFLM
    from conftest import byte_tokenizer

    reqs = likelihood_requests()
    for removed in (set(), {"attn.1"}):
        model = mask_in_memory(copy.deepcopy(tiny(name)), removed)
        ref = HFLM(pretrained=model, tokenizer=byte_tokenizer(), batch_size=4, max_length=64)
        got = SharedPrefixHFLM(pretrained=model, tokenizer=byte_tokenizer(), batch_size=4, max_length=64)
        want, have = ref._loglikelihood_tokens(reqs, disable_tqdm=True), got._loglikelihood_tokens(reqs, disable_tqdm=True)
        assert [g for _, g in have] == [g for _, g in want], (name, removed)
        assert torch.allclose(torch.tensor([ll for ll, _ in have]), torch.tensor([ll for ll, _ in want]),
                              rtol=1e-5, atol=1e-4), (name, removed, have, want)


# -- a family added as docs/add-a-family.md says: one adapter file, registered ------------------------
def test_an_adapter_registered_at_runtime_is_picked_up(tmp_path, calib_file):
    import sys

    from blockprune import cli
    from blockprune.arch import adapter_for, supported, unregister
    from conftest import byte_tokenizer

    tok = byte_tokenizer()
    torch.manual_seed(0)
    model = transformers.ArceeForCausalLM(transformers.ArceeConfig(**llama_like(vocab_size=len(tok)))).eval()
    ckpt = tmp_path / "arcee"
    model.save_pretrained(ckpt)
    tok.save_pretrained(ckpt)
    prune = ["prune", "--model", str(ckpt), "--calibration", calib_file, "--seqlen", "32", "--num-blocks", "2",
             "--quiet"]
    with pytest.raises(UserError, match="unsupported architecture 'arcee'"):
        adapter_for(model)
    assert cli.main([*prune, "--out", str(tmp_path / "before")]) == 2

    from conftest import doc_module

    mod = doc_module("add-a-family.md", "blockprune.arch.arcee")
    try:
        assert type(adapter_for(model)) is mod.ArceeAdapter and "arcee" in supported()
        assert cli.main([*prune, "--out", str(tmp_path / "run")]) == 0
        removed = Plan.load(tmp_path / "run").removed_blocks
        assert len(removed) == 2
        loaded = load(tmp_path / "run" / "model")
        x = ids()
        assert torch.allclose(loaded(x).logits, BlockView(model).logits(x, removed), atol=1e-4, rtol=0)
    finally:
        unregister("arcee")
        sys.modules.pop("blockprune.arch.arcee", None)
    assert "arcee" not in supported()

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


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # tiny models: thread start-up and contention on a shared machine cost more than the arithmetic
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
    assert [layer.keys is not None for layer in cache.layers] == [
        i not in no_attn for i in range(got.config.num_hidden_layers)]
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

"""The block view computes exactly the model without the masked residual branches."""
import copy
import random
import textwrap

import pytest
import torch

from blockprune.data import Windows
from blockprune.window_nll import perplexity, window_nll
from blockprune.view import BlockView
from conftest import growth_in_a_fresh_process, tiny_llama


def zeroed(model, removed):
    """The stock model with each removed branch's output projection zeroed."""
    m = copy.deepcopy(model)
    with torch.no_grad():
        for name in removed:
            kind, layer = name.split(".")
            mod = m.model.layers[int(layer)]
            (mod.self_attn.o_proj if kind == "attn" else mod.mlp.down_proj).weight.zero_()
    return m


def test_blocks_are_named_in_execution_order():
    view = BlockView(tiny_llama(layers=3))
    assert [b.name for b in view.blocks] == ["attn.0", "mlp.0", "attn.1", "mlp.1", "attn.2", "mlp.2"]
    assert [b.index for b in view.blocks] == list(range(6))


@pytest.mark.parametrize("seed", range(6))
def test_masking_equals_zeroed_output_projections(seed):
    model = tiny_llama(layers=4)
    view = BlockView(model)
    rng = random.Random(seed)
    names = [b.name for b in view.blocks]
    removed = set(rng.sample(names, rng.randint(1, 5)))
    ids = torch.randint(1, 97, (2, 24), generator=torch.Generator().manual_seed(seed))
    got = view.logits(ids, removed)
    want = zeroed(model, removed)(ids).logits
    assert torch.allclose(got, want, atol=1e-5, rtol=0), (removed, (got - want).abs().max())
    # and masking really changes the function
    assert not torch.allclose(got, view.logits(ids), atol=1e-3)


def test_unmasked_view_equals_model_and_perplexity_matches_transformers_loss():
    model = tiny_llama(layers=3)
    view = BlockView(model)
    ids = torch.randint(1, 97, (3, 20), generator=torch.Generator().manual_seed(1))
    assert torch.allclose(view.logits(ids), model(ids).logits, atol=1e-6)
    w = Windows(ids, "random", 3, 60, None)
    ppl = perplexity(view, w, batch_size=2)
    loss = model(ids, labels=ids).loss.item()
    assert ppl == pytest.approx(torch.tensor(loss).exp().item(), rel=1e-4)


def test_perplexity_is_exp_of_mean_window_nll_by_hand():
    model = tiny_llama(layers=2)
    view = BlockView(model)
    ids = torch.randint(1, 97, (2, 10), generator=torch.Generator().manual_seed(2))
    logits = model(ids).logits.double()
    by_hand = []
    for i in range(2):
        logp = logits[i, :-1].log_softmax(-1)
        by_hand.append(-logp[torch.arange(9), ids[i, 1:]].mean())
    nll = window_nll(view, Windows(ids, "r", 2, 20, None))
    assert torch.allclose(nll, torch.stack(by_hand), atol=1e-5)
    assert perplexity(view, Windows(ids, "r", 2, 20, None)) == pytest.approx(float(torch.stack(by_hand).mean().exp()), rel=1e-5)


def test_block_params_account_for_every_parameter():
    model = tiny_llama(layers=3)
    view = BlockView(model)
    embed_and_head = model.model.embed_tokens.weight.numel() + model.lm_head.weight.numel() + model.model.norm.weight.numel()
    assert sum(b.params for b in view.blocks) + embed_and_head == view.total_params


def test_unknown_block_names_are_refused():
    view = BlockView(tiny_llama(layers=2))
    with pytest.raises(ValueError, match="unknown block names"):
        view.check_names({"attn.7"})
    view.check_names({"attn.1", "mlp.0"})


def test_the_lm_head_holds_one_vocabulary_slice_not_the_logit_matrix():
    """`window_nll` on a 65536-token vocabulary and a 2048-token window (a logit matrix of 537 MB), in a
    fresh process where glibc's mmap threshold has been raised (as any forward pass raises it): the peak RSS
    grows by a few slices, not by the matrix. Each slice's logsumexp, kept as its own small tensor, pinned the
    heap between the freed slices and grew the process by about the whole matrix."""
    script = textwrap.dedent("""
        import json, torch
        from transformers import LlamaConfig, LlamaForCausalLM
        from blockprune import machine
        from blockprune.view import BlockView
        torch.set_num_threads(1)
        cfg = LlamaConfig(vocab_size=65536, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                          num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=2048)
        view = BlockView(LlamaForCausalLM(cfg).eval())
        g = torch.Generator().manual_seed(0)
        h, ids = torch.randn(1, 2048, 64, generator=g), torch.randint(0, 65536, (1, 2048), generator=g)
        chunk = torch.empty(3 * 2**20)
        del chunk  # a freed 12 MB chunk: glibc serves smaller ones from its heap after it
        machine.reset_peak()
        before = machine.rss()
        for _ in range(3):
            view.window_nll(h, ids)
        print(json.dumps({"grew": machine.peak() - before, "reset": machine.reset_peak()}))
    """)
    grew = growth_in_a_fresh_process(script)
    matrix = 2047 * 65536 * 4
    assert grew < matrix / 4, f"window_nll grew the process by {grew / 2**20:.0f} MiB"

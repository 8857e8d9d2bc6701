"""The published width baselines (docs/width-baselines.md): Wanda-sp, FLAP (with bias compensation) and
LLM-Pruner's Taylor importance, on tiny models: each score against a hand computation of its formula,
the statistics and gradients they read, bias compensation, and every exported checkpoint reloading with
the in-memory logits."""
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from blockprune.data import Windows
from blockprune.errors import UserError
from blockprune.export import export_width as export
from blockprune.view import BlockView
from blockprune.width import WidthOptions, apply, narrow, prune_width, record, widths
from blockprune.width import flap, taylor, wanda_sp
from blockprune.width.modules import Geometry
from blockprune.width.stats import Moments, input_moments
from blockprune.arch.llama import LlamaAdapter

from conftest import growth_in_a_fresh_process, tiny_llama

LLAMA = LlamaAdapter.width_modules
NEW = ["wanda-sp", "flap", "llm-pruner", "llm-pruner-vector", "llm-pruner-element2"]


def windows(n=3, t=24, vocab=97, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Windows(torch.randint(1, vocab, (n, t), generator=g), "test", n, n * t, seed)


def logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


def capture_inputs(model, layer, names=("self_attn.o_proj", "mlp.down_proj"), w=None):
    """The inputs of the given modules of one layer over the windows, tokens stacked (T x C, float64)."""
    w = w or windows()
    got = {n: [] for n in names}
    mods = {n: model.model.layers[layer].get_submodule(n) for n in names}
    def keep(name):
        return lambda _m, a: got[name].append(a[0].detach().double().reshape(-1, a[0].shape[-1]))

    hooks = [m.register_forward_pre_hook(keep(n)) for n, m in mods.items()]
    for i in range(len(w)):
        logits(model, w.ids[i:i + 1])
    for h in hooks:
        h.remove()
    return {n: torch.cat(v) for n, v in got.items()}


# -- Wanda-sp -------------------------------------------------------------------------------------------
def test_wanda_sp_scores_match_hand_computation():
    w = torch.tensor([[1.0, -2.0, 0.0, 4.0], [3.0, 2.0, -2.0, 0.0]])  # mean |W| per column: 2, 2, 1, 2
    sq = torch.tensor([8.0, 2.0, 18.0, 0.0])  # over 2 samples: sqrt(sq / 2) = 2, 1, 3, 0
    assert wanda_sp.channel_scores(w, sq, 2).tolist() == pytest.approx([4, 2, 3, 0])
    assert wanda_sp.head_scores(w, sq, 2, head_dim=2).tolist() == pytest.approx([6, 3])  # heads sum their channels


def test_wanda_sp_scores_on_a_tiny_llama():
    model = tiny_llama(layers=3)
    w = windows()
    res = prune_width(BlockView(model), w, 0.2, WidthOptions(score="wanda-sp", layers="1"))
    x = capture_inputs(model, 1, w=w)
    layer = model.model.layers[1]
    norm_o = (x["self_attn.o_proj"].pow(2).sum(0) / len(w)).sqrt()
    per_channel = layer.self_attn.o_proj.weight.double().abs().mean(0) * norm_o
    heads = per_channel.reshape(4, 8).sum(1)
    torch.testing.assert_close(res.scores[1].heads, heads)
    torch.testing.assert_close(res.scores[1].groups, heads.reshape(2, 2).sum(1))
    norm_a = (x["mlp.down_proj"].pow(2).sum(0) / len(w)).sqrt()
    torch.testing.assert_close(res.scores[1].channels, layer.mlp.down_proj.weight.double().abs().mean(0) * norm_a)


def test_wanda_sp_uniform_scores_each_layer_after_the_earlier_ones_are_pruned():
    """The official order: layer 2 is scored on what the already-pruned layer 1 outputs; global ranks
    scores from one dense pass."""
    model = tiny_llama(layers=4)
    w = windows()
    dense = wanda_sp.compute(BlockView(model), w, [1, 2], 1).scores
    res = prune_width(BlockView(model), w, 0.25, WidthOptions(score="wanda-sp", layers="1:3"))
    after_1 = wanda_sp.compute(BlockView(narrow(model, {1: res.keep[1]})), w, [2], 1).scores[2]
    assert len(res.keep[1].channels) < 48
    torch.testing.assert_close(res.scores[1].channels, dense[1].channels)
    torch.testing.assert_close(res.scores[2].channels, after_1.channels)
    torch.testing.assert_close(res.scores[2].heads, after_1.heads)
    assert not torch.allclose(res.scores[2].channels, dense[2].channels)
    ids = windows(2, 16, seed=9).ids
    torch.testing.assert_close(logits(res.model, ids), logits(narrow(model, res.keep), ids), rtol=0, atol=0)
    assert res.removed_params == prune_width(BlockView(model), w, 0.25,
                                             WidthOptions(score="local", layers="1:3")).removed_params
    glob = prune_width(BlockView(model), w, 0.25, WidthOptions(score="wanda-sp", layers="1:3", allocation="global"))
    torch.testing.assert_close(glob.scores[2].channels, dense[2].channels)


# -- FLAP ----------------------------------------------------------------------------------------------
def test_flap_scores_match_hand_computation():
    variance = torch.tensor([1.0, 2.0, 0.5, 4.0])
    w = torch.tensor([[1.0, 0.0, 1.0, 1.0], [1.0, 1.0, 1.0, 0.0]])  # squared column norms 2, 1, 2, 1
    assert flap.fluctuation(variance, w).tolist() == pytest.approx([2, 2, 1, 4])
    # MLP channels: standardised f = (f - 2.25) / sqrt(4.75 / 3)
    s = (4.75 / 3) ** 0.5
    assert flap.channel_scores(variance, w).tolist() == pytest.approx([-0.25 / s, -0.25 / s, -1.25 / s, 1.75 / s])
    # heads (head_dim 2): m = f^2 = 4, 4, 1, 16; z = (m - 6.25) / sqrt(132.75 / 3); a head is the mean of its z's
    s = (132.75 / 3) ** 0.5
    z = [(m - 6.25) / s for m in (4, 4, 1, 16)]
    assert flap.head_scores(variance, w, 2).tolist() == pytest.approx([(z[0] + z[1]) / 2, (z[2] + z[3]) / 2])
    assert flap.standardise(torch.tensor([3.0, 3.0])).tolist() == [0.0, 0.0]  # constant: no division by zero


def test_moments_give_the_mean_and_sample_variance_over_tokens():
    x = torch.tensor([[1.0, 2.0], [3.0, 2.0], [5.0, 8.0]], dtype=torch.float64)
    m = Moments(3, x.sum(0), x.pow(2).sum(0))
    assert m.mean.tolist() == pytest.approx([3, 4])
    assert m.variance.tolist() == pytest.approx([4, 12])  # n - 1 in the denominator


def test_input_moments_are_the_projection_inputs():
    model = tiny_llama(layers=3)
    w = windows()
    moments, tokens = input_moments(BlockView(model), w, [0, 2])
    assert tokens == w.ids.numel() and sorted(moments) == [0, 2]
    for layer in (0, 2):
        x = capture_inputs(model, layer, w=w)
        for key, name in (("o", "self_attn.o_proj"), ("down", "mlp.down_proj")):
            torch.testing.assert_close(moments[layer][key].mean, x[name].mean(0))
            torch.testing.assert_close(moments[layer][key].variance, x[name].var(0))


def test_global_allocation_by_score_alone_or_per_parameter():
    """FLAP's adaptive structure (and LLM-Pruner's global pruning) rank units by score alone: a KV group
    (1536 parameters) scoring 3 stays while 16 channels (96 each) scoring 2 go; per parameter the group goes."""
    from blockprune.width.allocation import allocate
    from blockprune.width.scores import LayerScores

    view = BlockView(tiny_llama(layers=2))
    scores = {i: LayerScores(torch.tensor([1.5, 1.5, 9.0, 9.0]), torch.tensor([3.0, 18.0]), torch.full((48,), 2.0))
              for i in (0, 1)}
    keep, _ = allocate(view.adapter, scores, 1536, "global", "groups", rank="score")
    assert [len(keep[i].heads) for i in (0, 1)] == [4, 4] and sum(48 - len(keep[i].channels) for i in (0, 1)) == 16
    keep, _ = allocate(view.adapter, scores, 1536, "global", "groups")
    assert sorted(len(keep[i].heads) for i in (0, 1)) == [2, 4] and all(len(keep[i].channels) == 48 for i in (0, 1))


def test_flap_ranks_by_score_and_head_units_score_their_mean():
    from blockprune.width.registry import SCORES

    assert (SCORES["flap"].rank, SCORES["flap"].reduce, SCORES["flap"].compensate) == ("score", "mean", True)
    assert SCORES["llm-pruner"].rank == "score" and SCORES["wanda-sp"].rank == "per-param"
    res = prune_width(BlockView(tiny_llama(layers=4)), windows(), 0.2,
                      WidthOptions(score="flap", allocation="global", gqa="heads"))
    for i, u in res.units.items():
        for s, heads, _ in u.attn.order:  # an attention unit of one head per group scores their mean
            assert s == pytest.approx(float(res.scores[i].heads[heads].mean()))
        torch.testing.assert_close(res.scores[i].groups, res.scores[i].heads.reshape(2, 2).mean(1))


# -- bias compensation -------------------------------------------------------------------------------
def _flap(model, **kw):
    return prune_width(BlockView(model), windows(), 0.25, WidthOptions(score="flap", **kw))


@pytest.mark.parametrize("gqa", ["groups", "heads"])
def test_bias_compensation_keeps_each_compensated_output_mean(gqa):
    """Given the dense model's inputs, each compensated projection's output has the dense mean over the
    calibration tokens; the same slices without the biases do not."""
    model = tiny_llama(layers=4)
    res = _flap(model, gqa=gqa)
    bare = narrow(model, res.keep)
    for i, k in res.keep.items():
        x = capture_inputs(model, i)
        d = model.model.layers[i].self_attn.head_dim
        cols = {"self_attn.o_proj": [h * d + j for h in k.heads for j in range(d)], "mlp.down_proj": k.channels}
        for name, kept in cols.items():
            dense = model.model.layers[i].get_submodule(name)
            pruned = res.model.model.layers[i].get_submodule(name)
            want = (x[name] @ dense.weight.double().T).mean(0)
            got = (x[name][:, kept] @ pruned.weight.double().T + pruned.bias.double()).mean(0)
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
            plain = bare.model.layers[i].get_submodule(name)
            assert plain.bias is None and not torch.allclose((x[name][:, kept] @ plain.weight.double().T).mean(0),
                                                             want, rtol=1e-3, atol=1e-3)


def test_bias_compensation_in_the_running_model():
    """Only layer 1 pruned: its attention output keeps the dense calibration mean inside the pruned model."""
    model = tiny_llama(layers=3)
    res = _flap(model, layers="1")
    assert len(res.keep[1].heads) < 4
    outs = {}
    for key, m in (("dense", model), ("pruned", res.model)):
        got = []
        h = m.model.layers[1].self_attn.register_forward_hook(lambda _m, _a, out: got.append(out[0].double()))
        for i in range(3):
            logits(m, windows().ids[i:i + 1])
        h.remove()
        outs[key] = torch.cat(got).reshape(-1, 32).mean(0)
    torch.testing.assert_close(outs["pruned"], outs["dense"], rtol=1e-5, atol=1e-5)


def test_compensation_biases_are_counted_and_zero_where_only_the_config_flag_needs_them():
    model = tiny_llama(layers=4)
    res = _flap(model)
    n = sum(p.numel() for p in res.model.parameters())
    assert n == sum(p.numel() for p in model.parameters()) - res.removed_params
    assert 0 < res.removed_params <= res.target_params
    assert res.model.config.attention_bias and res.model.config.mlp_bias
    assert not model.config.attention_bias  # the dense model is left as it was
    for i, layer in enumerate(res.model.model.layers):
        for lin in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj, layer.mlp.gate_proj,
                    layer.mlp.up_proj):
            assert lin.bias is not None and not lin.bias.any()
        outputs = (layer.self_attn.o_proj.bias, layer.mlp.down_proj.bias)
        assert all(b.any() for b in outputs) if i in res.keep else not any(b.any() for b in outputs)
    # per layer: q/k/v/o and gate/up/down biases, at the kept widths
    created = sum(len(k.heads) * 8 + 2 * len(k.kv) * 8 + 32 + 2 * len(k.channels) + 32 for k in res.keep.values())
    created += 2 * (4 * 8 + 2 * 2 * 8 + 32 + 2 * 48 + 32)  # the two dense layers
    assert res.bias_params == created


@pytest.mark.parametrize("family,why", [("Mistral", "mistral"), ("Qwen2", "qwen2"), ("Qwen3", "qwen3"),
                                        ("Gemma", "gemma")])
def test_flap_refuses_families_whose_config_cannot_carry_the_biases(family, why):
    import transformers

    extra = {"head_dim": 8} if family in ("Qwen3", "Gemma") else {}
    cfg = getattr(transformers, f"{family}Config")(vocab_size=97, hidden_size=32, intermediate_size=48,
                                                   num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                                   pad_token_id=0, **extra)
    model = getattr(transformers, f"{family}ForCausalLM")(cfg).eval()
    with pytest.raises(UserError) as err:
        prune_width(BlockView(model), windows(), 0.2, WidthOptions(score="flap"))
    msg = str(err.value)
    assert msg.startswith(f"bias compensation (flap) does not support {why}") and "(supported: llama)" in msg
    assert "\n" not in msg
    prune_width(BlockView(model), windows(), 0.2, WidthOptions(score="wanda-sp", layers="all"))  # the others work


@pytest.mark.parametrize("allocation,gqa", [("uniform", "groups"), ("global", "groups"), ("global", "heads")])
def test_flap_nobias_selects_flaps_units_and_only_the_biases_differ(allocation, gqa, replaced):
    """FLAP's ablation: `flap-nobias` keeps exactly flap's heads and channels (it frees the biases flap would
    create on top of the target, as flap does), with every weight equal and no bias added anywhere."""
    import dataclasses

    from blockprune.width import SCORES

    model = tiny_llama(layers=4)
    kw = dict(allocation=allocation, gqa=gqa)
    comp = prune_width(BlockView(model), windows(), 0.25, WidthOptions(score="flap", **kw))
    bare = prune_width(BlockView(model), windows(), 0.25, WidthOptions(score="flap-nobias", **kw))
    assert bare.keep == comp.keep
    assert comp.bias_params > 0 and bare.bias_params == 0 and bare.biases is None
    assert bare.removed_params == comp.removed_params + comp.bias_params  # the biases are the only difference
    with_biases, without = dict(comp.model.named_parameters()), dict(bare.model.named_parameters())
    assert set(without) == {n for n in with_biases if not n.endswith(".bias")}
    assert all(torch.equal(p, with_biases[n]) for n, p in without.items())
    assert not bare.model.config.attention_bias and not bare.model.config.mlp_bias
    ids = windows(2, 16, seed=2).ids
    assert not torch.allclose(logits(comp.model, ids), logits(bare.model, ids))
    rec = json.loads(json.dumps(record(bare, WidthOptions(score="flap-nobias", **kw))))
    assert "bias_params" not in rec and not any("bias_compensation" in d for d in rec["layers"])
    torch.testing.assert_close(logits(apply(model, rec), ids), logits(bare.model, ids), rtol=0, atol=0)
    # the reserve is what makes the selections equal: without it the same scores keep more here
    replaced(SCORES, dataclasses.replace(SCORES["flap-nobias"], reserve_biases=False))
    plain = prune_width(BlockView(model), windows(), 0.25, WidthOptions(score="flap-nobias", **kw))
    assert plain.keep != comp.keep and plain.removed_params < bare.removed_params


def test_flap_nobias_through_the_api_records_flaps_selection_without_biases(tmp_path, tiny_checkpoint, short_calib):
    from transformers import AutoModelForCausalLM

    from blockprune.api import prune
    from blockprune.plan import Plan

    kw = dict(ratio=0.2, calibration=short_calib, seqlen=32, allocation="global", progress=False)
    prune(tiny_checkpoint, tmp_path / "flap", method="flap", **kw)
    run = prune(tiny_checkpoint, tmp_path / "nobias", method="flap-nobias", **kw)
    comp, bare = Plan.load(tmp_path / "flap").width, Plan.load(tmp_path / "nobias").width
    assert bare["score"] == "flap-nobias" and "bias_params" not in bare
    keys = ("layer", "kept_heads", "kept_kv", "kept_channels", "head_scores", "channel_scores")
    assert [{k: d[k] for k in keys} for d in bare["layers"]] == [{k: d[k] for k in keys} for d in comp["layers"]]
    assert bare["removed_params"] == comp["removed_params"] + comp["bias_params"]
    cfg = json.loads((Path(run.checkpoint) / "config.json").read_text())
    assert not cfg.get("attention_bias") and not cfg.get("mlp_bias")
    back = AutoModelForCausalLM.from_pretrained(run.checkpoint, trust_remote_code=True)
    assert not any(n.endswith(".bias") for n, _ in back.named_parameters())


# -- LLM-Pruner ----------------------------------------------------------------------------------------
def _linear(w, g, f=None):
    lin = nn.Linear(w.shape[1], w.shape[0], bias=False)
    with torch.no_grad():
        lin.weight.copy_(w)
    return lin, g, f


def _tiny_blocks(with_fisher=False):
    """hidden 2, two heads of head_dim 1 in one KV group, two MLP channels; weights and gradients by hand."""
    t = torch.tensor
    parts = {
        "q_proj": (t([[1.0, 2.0], [3.0, -1.0]]), t([[1.0, -1.0], [-1.0, 2.0]])),  # S rows: |.|: 3, 5; |sum|: 1, 5
        "k_proj": (t([[1.0, 1.0]]), t([[1.0, -1.0]])),  # S = [1, -1]: element 2, vector 0
        "v_proj": (t([[2.0, 0.0]]), t([[1.0, 5.0]])),  # S = [2, 0]: 2, 2
        "o_proj": (t([[2.0, 0.0], [1.0, 1.0]]), t([[1.0, 0.0], [-1.0, 2.0]])),  # S cols: element 3, 2; vector 1, 2
        "gate_proj": (t([[1.0, 0.0], [0.0, 1.0]]), t([[1.0, 1.0], [1.0, 1.0]])),  # rows: 1, 1 (both)
        "up_proj": (t([[2.0, 1.0], [1.0, 1.0]]), t([[1.0, -1.0], [0.0, 1.0]])),  # rows: element 3, 1; vector 1, 1
        "down_proj": (t([[1.0, 2.0], [3.0, 4.0]]), t([[1.0, 0.0], [0.0, -1.0]])),  # cols: 1, 4 (both)
    }
    attn, mlp = nn.Module(), nn.Module()
    grad, fisher = {}, {}
    for name, (w, g) in parts.items():
        lin, _, _ = _linear(w, g)
        setattr(attn if name in ("q_proj", "k_proj", "v_proj", "o_proj") else mlp, name, lin)
        grad[lin.weight] = g
        fisher[lin.weight] = torch.ones_like(w)
    grads = taylor.Gradients(grad, fisher if with_fisher else None, 0, 0)
    return attn, mlp, grads


def test_llm_pruner_scores_match_hand_computation():
    geo = Geometry(heads=2, kv=1, head_dim=1, channels=2)
    attn, mlp, grads = _tiny_blocks()
    s = taylor.layer_scores(attn, mlp, LLAMA, geo, grads, "element1")
    assert s.heads.tolist() == pytest.approx([3 + 3, 5 + 2])  # q row + o column
    assert s.groups.tolist() == pytest.approx([6 + 7 + 2 + 2])  # its heads + k and v rows
    assert s.channels.tolist() == pytest.approx([1 + 3 + 1, 1 + 1 + 4])  # gate row + up row + down column
    s = taylor.layer_scores(attn, mlp, LLAMA, geo, grads, "vector")
    assert s.heads.tolist() == pytest.approx([1 + 1, 5 + 2])
    assert s.groups.tolist() == pytest.approx([2 + 7 + 0 + 2])
    assert s.channels.tolist() == pytest.approx([1 + 1 + 1, 1 + 1 + 4])
    attn, mlp, grads = _tiny_blocks(with_fisher=True)
    s = taylor.layer_scores(attn, mlp, LLAMA, geo, grads, "element2")
    # F = 1: S = W*g - W^2/2. q: [[.5, -4], [-7.5, -2.5]] -> rows 4.5, 10; o: [[0, 0], [-1.5, 1.5]] -> cols 1.5, 1.5
    assert s.heads.tolist() == pytest.approx([4.5 + 1.5, 10 + 1.5])


def _direct_grads(model, w, weights):
    """Autograd of the mean over windows of each window's mean NLL, and the mean squared per-window gradient."""
    total = [torch.zeros_like(p) for p in weights]
    fisher = [torch.zeros_like(p) for p in weights]
    for i in range(len(w)):
        ids = w.ids[i:i + 1]
        out = model(ids).logits[0, :-1]
        loss = nn.functional.cross_entropy(out, ids[0, 1:])
        gs = torch.autograd.grad(loss, weights)
        for t, f, g in zip(total, fisher, gs):
            t += g / len(w)
            f += g * g / len(w)
    return total, fisher


def test_llm_pruner_gradients_and_their_memory():
    model = tiny_llama(layers=3)
    w = windows()
    view = BlockView(model)
    layer = model.model.layers[1]
    weights = [layer.self_attn.q_proj.weight, layer.self_attn.o_proj.weight, layer.mlp.down_proj.weight]
    want, want_fisher = _direct_grads(model, w, weights)
    for p in model.parameters():
        p.grad = None
    first = taylor.gradients(view, w, [1], batch_size=2)
    second = taylor.gradients(view, w, [1], fisher=True)
    for p, g, f in zip(weights, want, want_fisher):
        torch.testing.assert_close(first.grad[p], g, rtol=1e-4, atol=1e-7)
        torch.testing.assert_close(second.grad[p], g, rtol=1e-4, atol=1e-7)
        torch.testing.assert_close(second.fisher[p], f, rtol=1e-4, atol=1e-10)
    # only layer 1's seven projections hold gradients: 4 bytes each (fp32), the Fisher variant two float32
    # accumulators more
    per_layer = 32 * 32 + 2 * 32 * 16 + 32 * 32 + 3 * 32 * 48
    assert first.params == per_layer and first.bytes == 4 * per_layer and second.bytes == 3 * 4 * per_layer
    assert all(p.grad is None for p in model.parameters())  # the model is left as it was
    assert all(p.requires_grad for p in model.parameters())


def test_llm_pruner_scores_on_a_tiny_llama_use_the_calibration_gradient():
    model = tiny_llama(layers=3)
    w = windows()
    res = prune_width(BlockView(model), w, 0.2, WidthOptions(score="llm-pruner", layers="1"))
    layer = model.model.layers[1]
    names = ["q_proj", "k_proj", "v_proj", "o_proj"]
    mods = [layer.self_attn.get_submodule(n) for n in names] + [layer.mlp.gate_proj, layer.mlp.up_proj,
                                                                  layer.mlp.down_proj]
    grads, _ = _direct_grads(model, w, [m.weight for m in mods])
    s = [(m.weight.detach().double() * g.double()).abs() for m, g in zip(mods, grads)]
    heads = s[0].sum(1).reshape(4, 8).sum(1) + s[3].sum(0).reshape(4, 8).sum(1)
    kv = (s[1].sum(1) + s[2].sum(1)).reshape(2, 8).sum(1)
    torch.testing.assert_close(res.scores[1].heads, heads, rtol=1e-4, atol=1e-8)
    torch.testing.assert_close(res.scores[1].groups, heads.reshape(2, 2).sum(1) + kv, rtol=1e-4, atol=1e-8)
    torch.testing.assert_close(res.scores[1].channels, s[4].sum(1) + s[5].sum(1) + s[6].sum(0), rtol=1e-4, atol=1e-8)
    assert res.info == {"taylor": "element1", "gradient_params": sum(m.weight.numel() for m in mods),
                        "gradient_bytes": 4 * sum(m.weight.numel() for m in mods)}


# -- every baseline: options, plans and checkpoints ---------------------------------------------------
@pytest.mark.parametrize("score", NEW)
@pytest.mark.parametrize("allocation,gqa", [("uniform", "groups"), ("global", "heads")])
def test_baselines_meet_the_target_and_reproduce_from_their_record(score, allocation, gqa):
    model = tiny_llama(layers=4, num_attention_heads=8, num_key_value_heads=2, hidden_size=64)
    view = BlockView(model)
    opts = WidthOptions(score=score, allocation=allocation, gqa=gqa, layers="all")
    res = prune_width(view, windows(), 0.3, opts)
    assert 0 < res.removed_params <= res.target_params
    assert sum(p.numel() for p in res.model.parameters()) == sum(p.numel() for p in model.parameters()) - \
        res.removed_params
    for w in widths(res.model):
        assert w["heads"] % w["kv"] == 0 and w["channels"] >= 1
    rec = json.loads(json.dumps(record(res, opts)))  # through JSON, as plan.json holds it
    ids = windows(2, 16, seed=2).ids
    torch.testing.assert_close(logits(apply(model, rec), ids), logits(res.model, ids), rtol=0, atol=0)
    assert ("bias_params" in rec) == (score == "flap")


@pytest.mark.parametrize("score", NEW)
def test_per_layer_widths_reload_with_from_pretrained(tmp_path, score):
    from transformers import AutoModelForCausalLM

    res = prune_width(BlockView(tiny_llama(layers=4)), windows(), 0.25, WidthOptions(score=score))
    out = export(res.model, tmp_path / "m", meta={"method": score})
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["blockprune"]["format"] == "remote-code"
    back = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True).eval()
    assert widths(back) == widths(res.model)
    if score == "flap":
        assert cfg["attention_bias"] and cfg["mlp_bias"]
        down = back.model.layers[1].mlp.down_proj
        torch.testing.assert_close(down.bias, res.model.model.layers[1].mlp.down_proj.bias)
        assert back.model.layers[1].self_attn.o_proj.bias.any()
    ids = windows(2, 20, seed=3).ids
    torch.testing.assert_close(logits(back, ids), logits(res.model, ids), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("score", NEW)
def test_uniform_widths_reload_without_remote_code(tmp_path, score):
    from transformers import AutoModelForCausalLM

    model = tiny_llama(layers=3, num_attention_heads=8, num_key_value_heads=4, hidden_size=48)
    res = prune_width(BlockView(model), windows(), 0.25, WidthOptions(score=score, layers="all"))
    out = export(res.model, tmp_path / "m")
    assert not list(out.glob("*.py"))
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "llama" and cfg["blockprune"]["format"] == "vanilla"
    assert cfg["attention_bias"] == cfg["mlp_bias"] == (score == "flap")
    back = AutoModelForCausalLM.from_pretrained(out).eval()  # no trust_remote_code
    if score == "flap":
        assert back.model.layers[0].mlp.down_proj.bias.any() and back.model.layers[0].self_attn.o_proj.bias.any()
    ids = windows(2, 20, seed=4).ids
    torch.testing.assert_close(logits(back, ids), logits(res.model, ids), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["flap", "llm-pruner"])
def test_prune_api_records_and_exports_the_baselines(tmp_path, tiny_checkpoint, short_calib, method):
    from blockprune import models
    from blockprune.api import prune
    from blockprune.export import load
    from blockprune.plan import Plan

    kw = dict(method=method, ratio=0.2, calibration=short_calib, seqlen=32, progress=False)
    first = prune(tiny_checkpoint, tmp_path / "a", **kw)
    prune(tiny_checkpoint, tmp_path / "b", **kw)
    assert (tmp_path / "a" / "plan.json").read_bytes() == (tmp_path / "b" / "plan.json").read_bytes()
    w = Plan.load(tmp_path / "a").width
    assert w["score"] == method and 0 < w["removed_params"] <= w["target_params"]
    if method == "flap":
        assert w["bias_params"] > 0 and all(len(d["bias_compensation"]["o"]) == 32 for d in w["layers"])
    else:
        assert w["scoring"]["gradient_bytes"] == 4 * w["scoring"]["gradient_params"] > 0
    base, _ = models.load(tiny_checkpoint)
    ids = torch.randint(0, 200, (1, 20))
    torch.testing.assert_close(logits(load(first.checkpoint), ids), logits(apply(base, w), ids), rtol=1e-5, atol=1e-5)


def test_cli_offers_the_baselines(tmp_path, tiny_checkpoint, short_calib, capsys):
    from blockprune.cli import main

    run = tmp_path / "run"
    assert main(["prune", "--model", tiny_checkpoint, "--method", "wanda-sp", "--ratio", "0.2", "--calibration",
                 short_calib, "--seqlen", "32", "--allocation", "global", "--gqa", "heads", "--out", str(run),
                 "--quiet"]) == 0
    assert "query heads" in capsys.readouterr().out
    assert json.loads((run / "plan.json").read_text())["width"]["gqa"] == "heads"


def test_flap_composes_with_depth_and_width_pruning(tmp_path):
    """Depth-pruned, then FLAP (removed branches stay removed, biases only where a branch is), then llm-bip
    on the FLAP checkpoint (its biases sliced or kept): each checkpoint reloads with its in-memory logits."""
    from blockprune.export import export as depth_export
    from blockprune.export import load

    depth = load(depth_export(tiny_llama(layers=4), {"attn.1", "mlp.2"}, tmp_path / "depth"))
    first = prune_width(BlockView(depth), windows(), 0.15, WidthOptions(score="flap", layers="all"))
    ws = widths(first.model)
    assert ws[1]["heads"] is None and ws[2]["channels"] is None
    back = load(export(first.model, tmp_path / "flap"))
    ids = windows(2, 20, seed=5).ids
    torch.testing.assert_close(logits(back, ids), logits(first.model, ids), rtol=1e-5, atol=1e-5)
    assert any(p.any() for n, p in back.named_parameters() if n.endswith(("o_proj.bias", "down_proj.bias")))
    second = prune_width(BlockView(back), windows(), 0.1, WidthOptions(layers="all"))
    again = load(export(second.model, tmp_path / "bip"))
    torch.testing.assert_close(logits(again, ids), logits(second.model, ids), rtol=1e-5, atol=1e-5)


# -- the official code's selections (tests/fixtures/official_width.py ran CASIA-IVA-Lab/FLAP's own code) ------
def _official():
    from pathlib import Path

    return json.loads((Path(__file__).parent / "fixtures" / "official_width.json").read_text())


def _official_target(view, scores, layers, gqa="groups"):
    """The parameters the official selection removes, counted by this model's units."""
    from blockprune.width.allocation import layer_units
    from blockprune.width.modules import modules_for

    spec = modules_for(view.adapter)
    total = 0
    for i, rec in enumerate(layers):
        u = layer_units(view.adapter, spec, i, scores[i], gqa)
        total += (u.geo.heads - len(rec["kept_heads"])) * u.attn.cost
        total += (u.geo.channels - len(rec["kept_channels"])) * u.channel_cost
    return total


def test_wanda_sp_selects_what_the_official_prune_wanda_sp_selects():
    """Layer by layer on the pruned earlier layers' outputs, at the official per-layer counts."""
    ref = _official()
    model = tiny_llama(**ref["model"])
    ids = torch.tensor(ref["windows"])
    w = Windows(ids, "fixture", len(ids), ids.numel(), 0)
    view = BlockView(model)
    layers = ref["wanda-sp"]
    target = _official_target(view, wanda_sp.compute(view, w, [0, 1, 2], 1).scores, layers)
    res = prune_width(view, w, (target + 0.5) / view.total_params, WidthOptions(score="wanda-sp", layers="all"))
    assert [(k.heads, k.channels) for k in res.keep.values()] == [(r["kept_heads"], r["kept_channels"]) for r in layers]


class _OfficialFluctuation:
    """FLAP's streaming statistic (lib/layerwrapper.py BiasGPT, one window per sample), in closed form
    from per-window sums: the first window only seeds the mean; window k >= 1 adds
    k / ((k + 1)(N - 1)) * sum_t (x_t - m_k)^2, m_k the running mean of the window means up to k."""

    def __init__(self, per_window, tokens):
        s = torch.stack([m.sum for m in per_window])
        q = torch.stack([m.sq for m in per_window])
        n = len(per_window)
        k = torch.arange(n, dtype=torch.float64)[:, None]
        run = torch.cumsum(s / tokens, 0) / (k + 1)
        spread = q - 2 * run * s + tokens * run ** 2
        self.variance = (k / ((k + 1) * (n - 1)) * spread)[1:].sum(0)
        self.mean = run[-1]


def test_flap_selects_and_compensates_as_the_official_prune_flap_given_its_variance_estimator(monkeypatch):
    """Everything but the variance estimator (standardising, head means, the adaptive structure's ranking
    and weights, the compensation) against the official code: with the official streaming statistic in
    place of the sample variance, the same heads and channels and the same biases."""
    ref = _official()
    model = tiny_llama(**ref["model"])
    ids = torch.tensor(ref["windows"])
    w = Windows(ids, "fixture", len(ids), ids.numel(), 0)
    view = BlockView(model)

    def official_moments(view, windows, layers, batch_size=1):
        per = [input_moments(view, Windows(windows.ids[j:j + 1], "w", 1, windows.ids.shape[1], 0), layers)[0]
               for j in range(len(windows))]
        return {i: {k: _OfficialFluctuation([p[i][k] for p in per], windows.ids.shape[1]) for k in per[0][i]}
                for i in layers}, windows.ids.numel()

    monkeypatch.setattr(flap, "input_moments", official_moments)
    layers = ref["flap"]
    target = _official_target(view, flap.compute(view, w, [0, 1, 2], 1).scores, layers)
    res = prune_width(view, w, (target + 0.5) / view.total_params,
                      WidthOptions(score="flap", layers="all", allocation="global"))
    assert [(k.heads, k.channels) for k in res.keep.values()] == [(r["kept_heads"], r["kept_channels"]) for r in layers]
    for i, rec in enumerate(layers):
        layer = res.model.model.layers[i]
        torch.testing.assert_close(layer.self_attn.o_proj.bias.detach(), torch.tensor(rec["o_bias"]), rtol=1e-5,
                                   atol=1e-5)
        torch.testing.assert_close(layer.mlp.down_proj.bias.detach(), torch.tensor(rec["down_bias"]), rtol=1e-5,
                                   atol=1e-5)


@pytest.mark.parametrize("score", ["llm-pruner", "llm-pruner-vector", "llm-pruner-element2"])
def test_llm_pruner_importance_is_the_official_taylor_importance(score):
    """The official TaylorImportance (param_first, vectorize, param_mix) of every KV group (with its heads)
    and MLP channel, recorded by tests/fixtures/official_llm_pruner.py, on the same model and windows."""
    from pathlib import Path

    ref = json.loads((Path(__file__).parent / "fixtures" / "official_llm_pruner.json").read_text())
    ids = torch.tensor(ref["windows"])
    w = Windows(ids, "fixture", len(ids), ids.numel(), 0)
    model = tiny_llama(**ref["model"])
    res = prune_width(BlockView(model), w, 0.1, WidthOptions(score=score, layers="1:3"))
    for i in ref["layers"]:
        want = ref["importance"][score][str(i)]
        for key, got in (("groups", res.scores[i].groups), ("channels", res.scores[i].channels)):
            torch.testing.assert_close(got, torch.tensor(want[key], dtype=torch.float64), rtol=1e-5, atol=1e-7)


# -- the pruned model without a copy (width.masking; export narrowing in place) ----------------------
@pytest.mark.parametrize("score,gqa", [("llm-bip", "groups"), ("llm-bip", "heads"), ("flap", "groups"),
                                       ("flap", "heads")])
def test_the_masked_dense_model_computes_what_the_narrowed_copy_computes(score, gqa):
    """prune scores the pruned model as the dense one masked (removed heads' and channels' inputs to the
    output projections zeroed, FLAP's compensation added): the same logits as the narrowed copy, and the
    dense model computes as before once the context ends."""
    model = tiny_llama(layers=4)
    ids = windows().ids
    dense = logits(model, ids)
    res = prune_width(BlockView(model), windows(), 0.3, WidthOptions(score=score, gqa=gqa, layers="all"))
    assert res.built is None  # no copy made while scoring
    with res.view() as pruned:
        assert pruned.model is model
        got = logits(model, ids)
    assert not torch.allclose(got, dense)
    torch.testing.assert_close(got, logits(res.model, ids), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits(model, ids), dense, rtol=0, atol=0)


def test_compensation_biases_counted_on_the_dense_model_are_those_the_copy_gets():
    from blockprune.width import bias

    model = tiny_llama(layers=4)
    res = _flap(model, gqa="heads")
    assert res.bias_params == bias.created(BlockView(model).adapter, res.keep) > 0
    copy = narrow(model, res.keep)
    assert bias.add(copy, res.biases) == res.bias_params


def test_narrowing_in_place_gives_the_copy_and_frees_the_old_projections():
    model = tiny_llama(layers=4)
    res = prune_width(BlockView(model), windows(), 0.3, WidthOptions(score="flap", layers="all"))
    rec = record(res, WidthOptions(score="flap", layers="all"))
    want = logits(apply(model, rec), windows().ids)
    old = model.model.layers[1].mlp.down_proj
    same = apply(model, rec, in_place=True)
    assert same is model and model.model.layers[1].mlp.down_proj is not old
    torch.testing.assert_close(logits(model, windows().ids), want, rtol=0, atol=0)


def test_prune_and_export_of_a_width_plan_copy_no_weights(tmp_path, tiny_checkpoint, calib_file, monkeypatch):
    """A width run's scoring, its pruned perplexity and its export make no second copy of the model (the
    memory that kept width methods off an 8B model on a 24 GB machine); the checkpoint still reproduces the
    recorded perplexity."""
    import blockprune.width as width_pkg
    from blockprune.api import prune
    from blockprune.options import PruneOptions
    from blockprune.verify import verify

    real = width_pkg.narrow

    def in_place_only(model, keep, *, in_place=False):
        assert in_place, "a narrowed copy of the model"
        return real(model, keep, in_place=True)

    monkeypatch.setattr(width_pkg, "narrow", in_place_only)
    opts = PruneOptions(method="flap", ratio=0.2, calibration=calib_file, seqlen=32, validation="none")
    run = prune(tiny_checkpoint, tmp_path / "run", options=opts, progress=False)
    assert run.checkpoint is not None
    v = verify(run.out)
    assert v.ok() and v.masked is not None and v.checkpoint is not None


@pytest.mark.parametrize("collect", ["collect_activations", "input_moments"])
def test_the_statistics_pass_holds_its_temporaries_not_every_layers(collect):
    """The width scores' statistics pass over 12 layers and a 2048-token window, in a fresh process: its peak
    RSS grows by about one hook's float64 temporaries, not by every layer's. Each layer's sums, allocated as
    small tensors between those temporaries, pinned glibc's heap above them (at SmolLM2-135M's shape the pass
    grew the process by 600 MB, the size of the weights)."""
    import textwrap

    script = textwrap.dedent(f"""
        import json, torch
        from transformers import LlamaConfig, LlamaForCausalLM
        from blockprune import machine
        from blockprune.data import Windows
        from blockprune.view import BlockView
        from blockprune.width.scores import collect_activations
        from blockprune.width.stats import input_moments
        torch.set_num_threads(1)
        cfg = LlamaConfig(vocab_size=97, hidden_size=256, intermediate_size=1024, num_hidden_layers=12,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048)
        view = BlockView(LlamaForCausalLM(cfg).eval())
        ids = torch.randint(1, 97, (1, 2048), generator=torch.Generator().manual_seed(0))
        w = Windows(ids, "test", 1, 2048, 0)
        collect = {collect}
        prep = view.prepare(ids)
        view.run(prep.hidden, prep, frozenset())  # a plain pass first: it settles glibc's thresholds
        del prep
        machine.reset_peak()
        before = machine.rss()
        collect(view, w, list(range(12)), 1)
        print(json.dumps({{"grew": machine.peak() - before, "reset": machine.reset_peak()}}))
    """)
    grew = growth_in_a_fresh_process(script)
    hook = 2 * 2048 * 1024 * 8  # the down projection's input in float64 and its square
    assert grew < 3 * hook, f"{collect} grew the process by {grew / 2**20:.0f} MiB"

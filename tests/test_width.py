"""Width pruning (LLM-BIP and baselines) on tiny models: scores, allocation, slicing, export, plan."""
import json

import pytest
import torch
from torch import nn

from blockprune.data import Windows
from blockprune.errors import UserError
from blockprune.view import BlockView
from blockprune.export import export_width as export
from blockprune.width import WidthOptions, prune_width, widths
from blockprune.width.modules import Geometry
from blockprune.width.scores import (activation_channel_scores, activation_head_scores, collect_activations,
                                     magnitude_scores, propagation_factor, spectral)
from blockprune.arch.llama import LlamaAdapter

from conftest import tiny_llama

LLAMA = LlamaAdapter.width_modules


def windows(n=3, t=24, vocab=97, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Windows(torch.randint(1, vocab, (n, t), generator=g), "test", n, n * t, seed)


def logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


# -- scores ---------------------------------------------------------------------------------------
def test_activation_scores_match_hand_computation():
    # two heads of head_dim 2 in a hidden size of 2: W_o[:, 0] = diag(3, 4) (spectral norm 4), W_o[:, 1] = I (1)
    w_o = torch.tensor([[3.0, 0.0, 1.0, 0.0], [0.0, 4.0, 0.0, 1.0]])
    head_sq = torch.tensor([4.0, 9.0])  # ||o_0|| = 2, ||o_1|| = 3
    w_up = torch.tensor([[2.0, 0.0], [0.0, 1.0]])  # spectral 2
    w_down = torch.tensor([[0.5, 0.0], [0.0, 3.0]])  # spectral 3; column norms 0.5, 3
    factor = propagation_factor(w_up, w_down)
    assert factor == pytest.approx(1 + 2 * 3)
    assert activation_head_scores(head_sq, w_o, 2, factor).tolist() == pytest.approx([2 * 4 * 7, 3 * 1 * 7])
    assert activation_head_scores(head_sq, w_o, 2).tolist() == pytest.approx([8, 3])  # local: no factor
    chan_sq = torch.tensor([16.0, 1.0])  # ||a_0|| = 4, ||a_1|| = 1
    assert activation_channel_scores(chan_sq, w_down).tolist() == pytest.approx([4 * 0.5, 1 * 3])


@pytest.mark.parametrize("shape", [(7, 3), (3, 7), (5, 5)])
def test_spectral_norm_is_the_largest_singular_value_in_either_orientation(shape):
    # a wide matrix's norm is taken on its transpose (3x faster): the same number, tall or wide
    u, _ = torch.linalg.qr(torch.randn(shape[0], shape[0], dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(shape[1], shape[1], dtype=torch.float64))
    k = min(shape)
    w = u[:, :k] @ torch.diag(torch.tensor([5.0, 2.0, 1.0] + [0.5] * (k - 3), dtype=torch.float64)) @ v[:, :k].T
    assert spectral(w.float()) == pytest.approx(5.0, rel=1e-6)
    assert spectral(w) == pytest.approx(spectral(w.T), rel=1e-12)


def test_magnitude_scores_match_hand_computation():
    hidden, d = 2, 1
    attn, mlp = nn.Module(), nn.Module()
    attn.q_proj, attn.k_proj, attn.v_proj = (nn.Linear(hidden, 2, bias=False), nn.Linear(hidden, 1, bias=False),
                                             nn.Linear(hidden, 1, bias=False))
    attn.o_proj = nn.Linear(2, hidden, bias=False)
    mlp.gate_proj, mlp.up_proj = nn.Linear(hidden, 1, bias=False), nn.Linear(hidden, 1, bias=False)
    mlp.down_proj = nn.Linear(1, hidden, bias=False)
    with torch.no_grad():
        attn.q_proj.weight.copy_(torch.tensor([[1.0, 2.0], [0.0, 0.0]]))
        attn.o_proj.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 1.0]]))
        attn.k_proj.weight.copy_(torch.tensor([[1.0, 1.0]]))
        attn.v_proj.weight.copy_(torch.tensor([[0.0, 1.0]]))
        mlp.gate_proj.weight.copy_(torch.tensor([[3.0, 0.0]]))
        mlp.up_proj.weight.copy_(torch.tensor([[0.0, 4.0]]))
        mlp.down_proj.weight.copy_(torch.tensor([[0.0], [12.0]]))
    s = magnitude_scores(attn, mlp, LLAMA, Geometry(heads=2, kv=1, head_dim=d, channels=1))
    assert s.heads.tolist() == pytest.approx([(1 + 4 + 4) ** 0.5, 1.0])  # q row + o column of each head
    assert s.groups.tolist() == pytest.approx([(9 + 1 + 2 + 1) ** 0.5])  # both heads + k and v rows
    assert s.channels.tolist() == pytest.approx([13.0])  # sqrt(9 + 16 + 144)


def test_hooks_collect_the_down_projection_input():
    model = tiny_llama(layers=2)
    view = BlockView(model)
    w = windows()
    acts = collect_activations(view, w, [0, 1])
    mlp = model.model.layers[1].mlp
    seen = []
    handle = mlp.register_forward_hook(lambda m, args, out: seen.append(args[0].detach()))
    for i in range(len(w)):
        model(w.ids[i:i + 1])
    handle.remove()
    x = torch.cat(seen).double()
    a = nn.functional.silu(x @ mlp.gate_proj.weight.double().T) * (x @ mlp.up_proj.weight.double().T)
    assert torch.allclose(acts.channels[1], a.pow(2).sum(dim=(0, 1)), rtol=1e-4)
    assert acts.heads[1].shape == (4,) and acts.tokens == w.ids.numel()


# -- pruning units whose score is exactly zero changes nothing ---------------------------------------
@pytest.mark.parametrize("score", ["llm-bip", "local"])
@pytest.mark.parametrize("gqa", ["groups", "heads"])
def test_removing_zero_score_units_leaves_logits_unchanged(score, gqa):
    model = tiny_llama(layers=4)  # 4 heads in 2 KV groups of head_dim 8, 48 channels
    dead_heads = [2, 3] if gqa == "groups" else [1, 3]  # a whole group / one head in every group
    dead_channels = list(range(0, 48, 4))  # 12 channels
    with torch.no_grad():
        for i in (1, 2):
            layer = model.model.layers[i]
            for h in dead_heads:
                layer.self_attn.o_proj.weight[:, h * 8:(h + 1) * 8] = 0
            layer.mlp.down_proj.weight[:, dead_channels] = 0
    view = BlockView(model)
    # exactly the dead units' parameters: uniform allocation then removes one attention unit and 12 channels
    attn_cost = 2 * (2 * 32 * 8) + (2 * 32 * 8 if gqa == "groups" else 0)
    target = 2 * (attn_cost + 12 * 3 * 32)
    res = prune_width(view, windows(), (target + 0.5) / view.total_params, WidthOptions(score=score, gqa=gqa))
    for i in (1, 2):
        heads = res.scores[i].heads
        assert (heads[dead_heads] == 0).all() and (heads[[h for h in range(4) if h not in dead_heads]] > 0).all()
        assert res.keep[i].heads == [h for h in range(4) if h not in dead_heads]
        assert res.keep[i].channels == [j for j in range(48) if j not in dead_channels]
    assert res.removed_params == target
    ids = windows(2, 20, seed=1).ids
    torch.testing.assert_close(logits(res.model, ids), logits(model, ids), rtol=1e-5, atol=1e-5)


# -- allocation and shapes --------------------------------------------------------------------------
@pytest.mark.parametrize("allocation", ["uniform", "global"])
@pytest.mark.parametrize("gqa", ["groups", "heads"])
@pytest.mark.parametrize("score", ["llm-bip", "local", "magnitude"])
def test_gqa_shapes_stay_valid_and_target_holds(allocation, gqa, score):
    model = tiny_llama(layers=4, num_attention_heads=8, num_key_value_heads=2, hidden_size=64)
    view = BlockView(model)
    res = prune_width(view, windows(), 0.3, WidthOptions(score=score, allocation=allocation, gqa=gqa, layers="all"))
    assert 0 < res.removed_params <= res.target_params == int(0.3 * view.total_params)
    for i, w in enumerate(widths(res.model)):
        attn = res.model.model.layers[i].self_attn
        assert w["heads"] % w["kv"] == 0 and w["heads"] >= w["kv"] >= 1 and w["channels"] >= 1
        assert attn.num_key_value_groups == w["heads"] // w["kv"]
        assert attn.k_proj.out_features == attn.v_proj.out_features == w["kv"] * attn.head_dim
        if gqa == "heads":
            assert w["kv"] == 2
    if allocation == "uniform":
        assert all(w == widths(res.model)[0] for w in widths(res.model))
    ids = windows(1, 16, seed=2).ids
    assert torch.isfinite(logits(res.model, ids)).all()
    assert sum(p.numel() for p in res.model.parameters()) == view.total_params - res.removed_params + \
        sum(p.numel() for p in model.parameters()) - view.total_params  # tied weights aside, exact count


def test_first_and_last_layers_stay_dense_by_default():
    model = tiny_llama(layers=4)
    res = prune_width(BlockView(model), windows(), 0.2, WidthOptions())
    ws = widths(res.model)
    assert ws[0] == ws[3] == {"heads": 4, "kv": 2, "channels": 48}
    assert ws[1] != ws[0] and sorted(res.keep) == [1, 2]


def test_bad_options_are_user_errors():
    view = BlockView(tiny_llama(layers=4))
    with pytest.raises(UserError, match="--layers"):
        prune_width(view, windows(), 0.2, WidthOptions(layers="7:9"))
    with pytest.raises(UserError, match="--allocation"):
        prune_width(view, windows(), 0.2, WidthOptions(allocation="best"))


def test_unsupported_family_is_refused_clearly():
    from transformers import Phi3Config, Phi3ForCausalLM

    model = Phi3ForCausalLM(Phi3Config(vocab_size=97, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2, pad_token_id=0)).eval()
    with pytest.raises(UserError, match="width pruning does not support phi3 yet"):
        prune_width(BlockView(model), windows(), 0.2, WidthOptions())
    llama_shaped = tiny_llama(layers=2)
    llama_shaped.config.model_type = "mixtral"  # the same adapter serves it, but width pruning was not checked on it
    with pytest.raises(UserError, match="width pruning does not support mixtral yet"):
        prune_width(BlockView(llama_shaped), windows(), 0.2, WidthOptions())


# -- export ---------------------------------------------------------------------------------------
def _qwen(cls_name, **extra):
    import transformers

    torch.manual_seed(0)
    cfg = getattr(transformers, f"{cls_name}Config")(vocab_size=97, hidden_size=32, intermediate_size=48,
                                                     num_hidden_layers=3, num_attention_heads=4,
                                                     num_key_value_heads=2, pad_token_id=0,
                                                     tie_word_embeddings=False, **extra)
    return getattr(transformers, f"{cls_name}ForCausalLM")(cfg).eval()


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3", "mistral", "gemma"])
def test_per_layer_widths_export_reloads_with_the_same_logits(tmp_path, family):
    from transformers import AutoModelForCausalLM

    model = tiny_llama(layers=4) if family == "llama" else _qwen(family.capitalize(), **(
        {"head_dim": 8} if family in ("qwen3", "gemma") else {}))
    res = prune_width(BlockView(model), windows(), 0.25, WidthOptions(allocation="global", layers="0:-1"))
    out = export(res.model, tmp_path / "m", meta={"method": "llm-bip"})
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["blockprune"]["format"] == "remote-code" and cfg["blockprune"]["widths"] == widths(res.model)
    with pytest.raises(Exception):  # a plain loader must refuse it rather than read a dense model
        AutoModelForCausalLM.from_pretrained(out)
    back = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True).eval()
    assert widths(back) == widths(res.model)
    ids = windows(2, 20, seed=3).ids
    torch.testing.assert_close(logits(back, ids), logits(res.model, ids), rtol=1e-5, atol=1e-5)
    gen = back.generate(ids[:1, :6], max_new_tokens=5, do_sample=False)  # the KV cache copes with mixed widths
    ref = res.model.generate(ids[:1, :6], max_new_tokens=5, do_sample=False)
    assert torch.equal(gen, ref)


@pytest.mark.parametrize("gqa", ["groups", "heads"])
def test_uniform_widths_load_without_remote_code(tmp_path, gqa):
    from transformers import AutoModelForCausalLM

    # hidden 48 is divisible by every head count the pruning can leave (8, 6, 4, 2): Llama's config insists
    model = tiny_llama(layers=3, num_attention_heads=8, num_key_value_heads=4, hidden_size=48)
    res = prune_width(BlockView(model), windows(), 0.25, WidthOptions(layers="all", gqa=gqa))
    out = export(res.model, tmp_path / "m")
    assert not list(out.glob("*.py"))
    cfg = json.loads((out / "config.json").read_text())
    w = widths(res.model)[0]
    assert (cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["intermediate_size"], cfg["head_dim"]) == \
        (w["heads"], w["kv"], w["channels"], 6)
    assert cfg["model_type"] == "llama" and cfg["blockprune"]["format"] == "vanilla"
    back = AutoModelForCausalLM.from_pretrained(out).eval()  # no trust_remote_code
    assert type(back).__module__.startswith("transformers.models.llama")
    ids = windows(2, 20, seed=4).ids
    torch.testing.assert_close(logits(back, ids), logits(res.model, ids), rtol=1e-5, atol=1e-5)


def test_auto_falls_back_to_remote_code_when_the_config_refuses_the_head_count(tmp_path):
    model = tiny_llama(layers=2, num_attention_heads=8, num_key_value_heads=4, hidden_size=64)
    res = prune_width(BlockView(model), windows(), 0.2, WidthOptions(layers="all"))
    assert widths(res.model)[0]["heads"] == 6  # 64 % 6 != 0
    out = export(res.model, tmp_path / "m")
    assert json.loads((out / "config.json").read_text())["blockprune"]["format"] == "remote-code"


def test_vanilla_format_refused_for_per_layer_widths(tmp_path):
    res = prune_width(BlockView(tiny_llama(layers=4)), windows(), 0.2, WidthOptions())
    with pytest.raises(UserError, match="same widths in every layer"):
        export(res.model, tmp_path / "m", fmt="vanilla")


# -- composition ------------------------------------------------------------------------------------
def test_depth_then_width_composes(tmp_path):
    from blockprune.export import export as depth_export
    from blockprune.export import load

    model = tiny_llama(layers=4)
    depth_export(model, {"attn.1", "mlp.2"}, tmp_path / "depth")
    depth = load(tmp_path / "depth")
    res = prune_width(BlockView(depth), windows(), 0.15, WidthOptions(layers="all"))
    ws = widths(res.model)
    assert ws[1]["heads"] is None and ws[2]["channels"] is None  # removed branches stay removed
    assert ws[1]["channels"] < 48 or ws[2]["heads"] < 4 or ws[0] != ws[3]
    out = export(res.model, tmp_path / "both")
    back = load(out)
    ids = windows(2, 20, seed=5).ids
    torch.testing.assert_close(logits(back, ids), logits(res.model, ids), rtol=1e-5, atol=1e-5)


def _width_checkpoint(tmp_path):
    """A tiny Llama width-pruned with per-layer widths, exported and loaded back (a remote-code model)."""
    from blockprune.export import load

    res = prune_width(BlockView(tiny_llama(layers=4)), windows(), 0.2, WidthOptions(allocation="global", layers="all"))
    assert len({tuple(w.values()) for w in widths(res.model)}) > 1  # really per-layer widths
    back = load(export(res.model, tmp_path / "width", meta={"method": "llm-bip"}))
    assert "widths" in back.config.blockprune
    return back


@pytest.mark.parametrize("fmt,removed", [("remote-code", {"attn.1", "mlp.2"}),
                                         ("auto", {"attn.3", "mlp.3"})])  # a whole layer: auto must not pick vanilla
def test_width_then_depth_composes(tmp_path, fmt, removed):
    import copy

    from blockprune.evaluate.subject import mask_in_memory
    from blockprune.export import export as depth_export
    from blockprune.export import load

    wide = _width_checkpoint(tmp_path)
    ws = widths(wide)
    ids = windows(2, 20, seed=7).ids
    before = logits(wide, ids)
    out = depth_export(wide, removed, tmp_path / "both", fmt=fmt, meta={"method": "blockpruner"})
    torch.testing.assert_close(logits(wide, ids), before, rtol=0, atol=0)  # the exported model is left as it was
    info = json.loads((out / "config.json").read_text())["blockprune"]
    assert info["format"] == "remote-code" and info["method"] == "blockpruner"
    assert info["removed"] == sorted(removed, key=lambda n: (int(n.split(".")[1]), n))
    want = [{"heads": None if f"attn.{i}" in removed else w["heads"], "kv": None if f"attn.{i}" in removed else w["kv"],
             "channels": None if f"mlp.{i}" in removed else w["channels"]} for i, w in enumerate(ws)]
    assert info["widths"] == want  # the earlier widths, and the removed branches absent
    back = load(out)
    assert widths(back) == want
    gone = tuple(f"model.layers.{n.split('.')[1]}.{'self_attn' if n.startswith('attn') else 'mlp'}." for n in removed)
    assert not [k for k in back.state_dict() if k.startswith(gone)]  # the removed weights are absent
    ref = mask_in_memory(copy.deepcopy(wide), removed)  # the width model with the branches replaced in memory
    torch.testing.assert_close(logits(back, ids), logits(ref, ids), rtol=1e-5, atol=1e-5)
    gen = back.generate(ids[:1, :6], max_new_tokens=5, do_sample=False)  # layers without attention: no KV cache
    assert torch.equal(gen, ref.generate(ids[:1, :6], max_new_tokens=5, do_sample=False))
    # and once more: a further depth removal keeps the earlier ones
    again = load(depth_export(back, {"attn.0"}, tmp_path / "again"))
    assert again.config.blockprune["removed"] == sorted(removed | {"attn.0"}, key=lambda n: (int(n.split(".")[1]), n))
    assert again.config.blockprune["widths"][0]["heads"] is None
    ref = mask_in_memory(ref, {"attn.0"})
    torch.testing.assert_close(logits(again, ids), logits(ref, ids), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fmt", ["vanilla", "nemotron-nas"])
def test_width_then_depth_refuses_formats_without_per_layer_widths(tmp_path, fmt):
    from blockprune.export import export as depth_export

    wide = _width_checkpoint(tmp_path)
    with pytest.raises(UserError, match=r"per-layer widths.*only the remote-code format.*--format remote-code"):
        depth_export(wide, {"attn.1", "mlp.1"}, tmp_path / "out", fmt=fmt)
    assert not (tmp_path / "out").exists()


def test_depth_prune_api_on_a_width_checkpoint(tmp_path, tiny_checkpoint, short_calib):
    import copy

    from blockprune.api import prune
    from blockprune.evaluate.subject import mask_in_memory
    from blockprune.export import load

    kw = dict(calibration=short_calib, seqlen=32, progress=False)
    wide = prune(tiny_checkpoint, tmp_path / "w", method="llm-bip", ratio=0.2, allocation="global", **kw)
    assert "widths" in load(wide.checkpoint).config.blockprune
    deep = prune(str(wide.checkpoint), tmp_path / "d", method="blockpruner", num_blocks=2, **kw)
    back = load(deep.checkpoint)
    info = back.config.blockprune
    assert info["removed"] == sorted(deep.plan.removed_blocks, key=lambda n: (int(n.split(".")[1]), n))
    assert info["base_model"] == str(wide.checkpoint) and "widths" in info
    ref = mask_in_memory(copy.deepcopy(load(wide.checkpoint)), deep.plan.removed_blocks)
    ids = torch.randint(0, 200, (1, 20))
    torch.testing.assert_close(logits(back, ids), logits(ref, ids), rtol=1e-5, atol=1e-5)


def test_width_then_width_composes(tmp_path):
    from blockprune.export import load

    first = prune_width(BlockView(tiny_llama(layers=4)), windows(), 0.15, WidthOptions())
    back = load(export(first.model, tmp_path / "w1"))
    second = prune_width(BlockView(back), windows(), 0.15, WidthOptions(layers="all", score="magnitude"))
    again = load(export(second.model, tmp_path / "w2"))
    ids = windows(1, 20, seed=6).ids
    torch.testing.assert_close(logits(again, ids), logits(second.model, ids), rtol=1e-5, atol=1e-5)


# -- the method through the API and the CLI -------------------------------------------------------
def test_prune_api_plan_is_reproducible_and_exports_the_recorded_model(tmp_path, tiny_checkpoint, short_calib):
    from blockprune import models
    from blockprune.api import prune
    from blockprune.export import load
    from blockprune.plan import Plan
    from blockprune.width import apply

    kw = dict(method="llm-bip", ratio=0.2, calibration=short_calib, seqlen=32, allocation="global", progress=False)
    first = prune(tiny_checkpoint, tmp_path / "a", **kw)
    prune(tiny_checkpoint, tmp_path / "b", **kw)
    assert (tmp_path / "a" / "plan.json").read_bytes() == (tmp_path / "b" / "plan.json").read_bytes()
    plan = Plan.load(tmp_path / "a")
    assert plan.steps == [] and plan.options["allocation"] == "global" and plan.options["layers"] == "1:-1"
    w = plan.width
    assert [d["layer"] for d in w["layers"]] == [1, 2] and w["score"] == "llm-bip"
    assert 0 < w["removed_params"] <= w["target_params"] and w["ratio"] == first.summary["ratio"]
    assert len(w["layers"][0]["channel_scores"]) == 48 and len(w["layers"][0]["head_scores"]) == 4
    base, _ = models.load(tiny_checkpoint)
    ids = torch.randint(0, 200, (1, 20))
    torch.testing.assert_close(logits(load(first.checkpoint), ids), logits(apply(base, w), ids), rtol=1e-5, atol=1e-5)
    from blockprune.evaluate import load_subject
    assert widths(load_subject(str(tmp_path / "a")).model) == widths(apply(base, w))  # `blockprune eval RUN`


def test_cli_prune_and_export_a_width_plan(tmp_path, tiny_checkpoint, short_calib, capsys):
    from transformers import AutoModelForCausalLM

    from blockprune.cli import main

    run = tmp_path / "run"
    assert main(["prune", "--model", tiny_checkpoint, "--method", "width-magnitude", "--ratio", "0.2",
                 "--calibration", short_calib, "--seqlen", "32", "--layers", "all", "--out", str(run), "--quiet"]) == 0
    assert "query heads" in capsys.readouterr().out
    assert not list((run / "model").glob("*.py"))  # uniform over all layers: the vanilla format
    AutoModelForCausalLM.from_pretrained(run / "model")
    assert main(["export", str(run), "--format", "remote-code", "--out", str(tmp_path / "rc")]) == 0
    assert (tmp_path / "rc" / "modeling_blockprune_width.py").exists()
    assert main(["prune", "--model", tiny_checkpoint, "--method", "llm-bip", "--num-blocks", "2",
                 "--calibration", short_calib, "--seqlen", "32", "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "give --ratio" in capsys.readouterr().err


# -- every family of tests/test_families.py: width pruning works, or says clearly that it does not ---------
def _documented_width_types() -> set[str]:
    """The model types docs/families.md's table marks as supported by width pruning ("yes", or
    "yes (`t` only)" for a row of several types)."""
    import re
    from pathlib import Path

    docs = Path(__file__).resolve().parents[1] / "docs" / "families.md"
    out: set[str] = set()
    for line in docs.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 8 or not cells[-1].startswith("yes"):
            continue
        only = re.findall(r"`([^`]+)`", cells[-1])
        out |= set(only or re.findall(r"`([^`]+)`", cells[1]))
    return out


def test_families_doc_lists_exactly_the_width_families():
    from blockprune.arch import width_families

    WIDTH_FAMILIES = width_families()

    assert _documented_width_types() == {t for spec in WIDTH_FAMILIES.values() for t in spec.model_types}


def _family_names():
    from test_families import FAMILIES
    return list(FAMILIES)


@pytest.mark.parametrize("name", _family_names())
def test_width_pruning_works_or_refuses_clearly_for_every_family(tmp_path, name):
    from blockprune.export import load
    from test_families import VOCAB, build

    model = build(name)
    model_type = model.config.model_type
    w = windows(2, 12, vocab=VOCAB)
    options = WidthOptions(allocation="global", layers="all")
    supported = sorted(_documented_width_types())
    if model_type not in supported:
        with pytest.raises(UserError) as err:
            prune_width(BlockView(model), w, 0.2, options)
        msg = str(err.value)
        assert f"width pruning does not support {model_type} yet" in msg
        assert f"(supported: {', '.join(supported)})" in msg
        return
    res = prune_width(BlockView(model), w, 0.2, options)
    assert res.removed_params > 0 and widths(res.model) != widths(model)
    back = load(export(res.model, tmp_path / "m"))
    assert widths(back) == widths(res.model)
    ids = windows(2, 12, vocab=VOCAB, seed=8).ids
    torch.testing.assert_close(logits(back, ids), logits(res.model, ids), rtol=1e-5, atol=1e-5)

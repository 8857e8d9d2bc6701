"""`--format gguf`: every kind of pruned model, written as one .gguf file, computes in a real llama.cpp
(llama-cpp-python, `pip install -e .[gguf]`, which scripts/install.sh installs) what it computes in
transformers; what llama.cpp cannot run is refused before anything is written."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from conftest import byte_tokenizer, tiny_llama

from blockprune.errors import UserError
from blockprune.export import export, export_width, mask_modules

#: f32 must match to 1e-3 of the largest |logit| (the issue's target; with an f32 KV cache it measured 2e-6,
#: with llama.cpp's default f16 cache 1.5e-3); f16 weights and cache measured up to 3.6e-3 on these tiny
#: random models, q8_0 (weights and, inside each product, activations in 8 bits) up to 9.4e-2
TOLERANCE = {"f32": 1e-3, "f16": 1e-2, "q8_0": 0.15}
PROMPT = "The quick brown fox jumps over the lazy dog. Pruned models run on laptops"
NEW_TOKENS = 4


@pytest.fixture(scope="module")
def smol_tokenizer():
    """SmolLM2's GPT-2-style BPE tokenizer (49152 tokens), offline from the embedded model."""
    from transformers import AutoTokenizer

    from blockprune import models

    try:
        return AutoTokenizer.from_pretrained(models.resolve("smollm2-135m"))
    except UserError as e:
        pytest.skip(f"the embedded SmolLM2 is not installed: {e}")


def tiny(seed: int = 0):
    """A random 4-layer Llama with SmolLM2's vocabulary: 4 heads of 16 over 2 KV heads, 96 MLP channels."""
    return tiny_llama(seed, 4, vocab_size=49152, hidden_size=64, intermediate_size=96, num_attention_heads=4,
                      num_key_value_heads=2, bos_token_id=1, eos_token_id=2, pad_token_id=2)


def narrowed(model):
    """Per-layer widths as LLM-BIP leaves them: layer 1 keeps 2 heads of 1 KV group and 40 channels (not a
    multiple of q8_0's 32-value block), layer 2 keeps every head and 64 channels."""
    from blockprune.width.allocation import Keep
    from blockprune.width.slicing import narrow

    return narrow(model, {1: Keep([2, 3], [1], list(range(0, 80, 2))), 2: Keep([0, 1, 2, 3], [0, 1], list(range(64)))})


KINDS = {  # name -> removed blocks (None: the width-pruned model)
    "dense": frozenset(),
    "whole-layers": frozenset({"attn.1", "mlp.1"}),
    "attention-only": frozenset({"attn.1", "attn.2"}),
    "mlp-only": frozenset({"mlp.1", "mlp.3"}),  # mlp.3: the last layer, where llama.cpp selects output rows
    "first-attention": frozenset({"attn.0", "mlp.2"}),
    "width": None,
}


def reference(kind: str):
    """(the transformers model the file must reproduce, what to export, its removed blocks)."""
    import copy

    base = tiny()
    removed = KINDS[kind]
    if removed is None:
        model = narrowed(base)
        return model, model, frozenset()
    masked = copy.deepcopy(base)
    mask_modules(masked, removed)
    return masked, base, removed


def write(kind: str, path, tok, outtype: str):
    model, source, removed = reference(kind)
    options = {"outtype": outtype}
    if KINDS[kind] is None:
        export_width(source, path, fmt="gguf", tokenizer=tok, meta={"method": "test"}, options=options)
    else:
        export(source, removed, path, fmt="gguf", tokenizer=tok, meta={"method": "test"}, options=options)
    return model


@torch.no_grad()
def transformers_run(model, ids: list[int]) -> tuple[np.ndarray, list[int]]:
    """Last-token logits and the greedy continuation (full forward passes, no cache)."""
    x = torch.tensor([ids])
    last = model(x).logits[0, -1].double().numpy()
    out = []
    for _ in range(NEW_TOKENS):
        out.append(int(model(x).logits[0, -1].argmax()))
        x = torch.cat([x, torch.tensor([[out[-1]]])], dim=1)
    return last, out


def llama_cpp_run(path, ids: list[int], exact: bool = True) -> tuple[np.ndarray, list[int]]:
    """Last-token logits and the greedy continuation in llama.cpp; `exact`: an f32 KV cache (llama.cpp's
    default f16 cache alone puts the logits 1e-3 off) and no flash attention, for the f32 comparison."""
    llama_cpp = pytest.importorskip("llama_cpp")
    cache = {"type_k": llama_cpp.GGML_TYPE_F32, "type_v": llama_cpp.GGML_TYPE_F32, "flash_attn": False} if exact else {}
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=128, n_batch=128, n_threads=1, n_threads_batch=1,
                          logits_all=True, verbose=False, **cache)
    try:
        llm.eval(ids)
        last = np.array(llm.scores[len(ids) - 1], dtype=np.float64)
        out = []
        for _ in range(NEW_TOKENS):
            out.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
            llm.eval([out[-1]])
        return last, out
    finally:
        llm.close()


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("outtype", ["f32", "f16", "q8_0"])
def test_llama_cpp_computes_the_pruned_model(tmp_path, smol_tokenizer, kind, outtype):
    pytest.importorskip("llama_cpp")
    path = tmp_path / f"{kind}.gguf"
    model = write(kind, path, smol_tokenizer, outtype)
    ids = smol_tokenizer(PROMPT).input_ids
    want, want_greedy = transformers_run(model, ids)
    got, got_greedy = llama_cpp_run(path, ids, exact=outtype == "f32")
    err = relative_error(got, want)
    print(f"{kind} {outtype}: max |logit error| / max |logit| = {err:.2e}")
    assert err <= TOLERANCE[outtype], f"{kind} {outtype}: {err:.2e}"
    assert int(got.argmax()) == int(want.argmax())
    if outtype == "f32":
        assert got_greedy == want_greedy


def test_the_architecture_and_stand_ins_are_the_plainest_that_express_the_model(tmp_path, smol_tokenizer):
    from gguf import GGUFReader

    def fields(kind):
        path = tmp_path / f"{kind}.gguf"
        write(kind, path, smol_tokenizer, "f32")
        r = GGUFReader(path)
        return {k: f.contents() for k, f in r.fields.items() if not k.startswith("tokenizer.ggml.")}, r

    dense, r = fields("dense")
    assert dense["general.architecture"] == "llama" and dense["llama.block_count"] == 4
    assert {t.name for t in r.tensors} >= {"token_embd.weight", "output.weight", "blk.3.ffn_down.weight"}
    layers, _ = fields("whole-layers")
    assert layers["general.architecture"] == "llama" and layers["llama.block_count"] == 3
    assert layers["blockprune.removed"] == ["attn.1", "mlp.1"] and layers["blockprune.method"] == "test"
    first, r = fields("first-attention")
    assert first["general.architecture"] == "deci"
    assert first["deci.attention.head_count"] == [1, 4, 4, 4] and first["deci.feed_forward_length"] == [96, 96, 32, 96]
    assert first["blockprune.stand_ins"] == ["attn.0", "mlp.2"]
    q0 = next(t for t in r.tensors if t.name == "blk.0.attn_output.weight")
    assert not np.any(q0.data)  # the stand-in head's output projection: exactly zero
    width, _ = fields("width")
    assert width["deci.attention.head_count"] == [4, 2, 4, 4] and width["deci.attention.head_count_kv"] == [2, 1, 2, 2]
    # layer 1's 40 channels get 24 zero ones in every outtype (f32 here): a multiple of FFN_ALIGN
    assert width["deci.feed_forward_length"] == [96, 64, 64, 96] and "blockprune.stand_ins" not in width
    assert json.loads(width["blockprune.provenance"])["ffn_zero_channels"] == {"1": 24}
    # q8_0: so its down projection is q8_0 too (not f16)
    write("width", tmp_path / "width-q8_0.gguf", smol_tokenizer, "q8_0")
    r = GGUFReader(tmp_path / "width-q8_0.gguf")
    assert r.fields["deci.feed_forward_length"].contents() == [96, 64, 64, 96]
    assert {t.tensor_type.name for t in r.tensors if t.name.startswith("blk.1.ffn_")} == {"F32", "Q8_0"}  # F32: norm


def test_a_first_layer_without_attention_keeps_its_padded_ffn(tmp_path, smol_tokenizer):
    """Both rewrites on one layer: layer 0's attention is a stand-in head and its 40 channels get 24 zero
    ones in q8_0; llama.cpp still computes the model."""
    import copy

    from gguf import GGUFReader

    from blockprune.width.allocation import Keep
    from blockprune.width.slicing import narrow

    model = narrow(tiny(), {0: Keep(None, None, list(range(40)))})
    path = export(model, frozenset({"attn.0"}), tmp_path / "m.gguf", fmt="gguf", tokenizer=smol_tokenizer,
                  options={"outtype": "q8_0"})
    r = GGUFReader(path)
    assert r.fields["deci.attention.head_count"].contents() == [1, 4, 4, 4]
    assert r.fields["deci.feed_forward_length"].contents() == [64, 96, 96, 96]
    pytest.importorskip("llama_cpp")
    masked = copy.deepcopy(model)
    mask_modules(masked, frozenset({"attn.0"}))
    ids = smol_tokenizer(PROMPT).input_ids
    want, _ = transformers_run(masked, ids)
    got, _ = llama_cpp_run(path, ids, exact=False)
    # misplaced zeros or a lost padding would be garbage or a shape error; q8_0's own noise (4.9e-2 here)
    # flips this random model's near-tied next token, so only the error is held
    assert relative_error(got, want) <= TOLERANCE["q8_0"]


def test_tokenizer_is_the_one_llama_cpp_ships_for_smollm2(tmp_path, smol_tokenizer):
    """Tokens, types, merges, special ids and BOS handling equal those of the SmolLM2 GGUF that llama.cpp's
    own converter wrote (the embedded model's file); the chat template travels."""
    import importlib.util
    from pathlib import Path

    from gguf import GGUFReader

    from blockprune.models import ALIASES

    alias = ALIASES["smollm2-135m"]
    spec = importlib.util.find_spec(alias.package)
    original = GGUFReader(Path(list(spec.submodule_search_locations)[0]) / alias.gguf)
    path = tmp_path / "dense.gguf"
    write("dense", path, smol_tokenizer, "f32")
    ours = GGUFReader(path)
    for key in ("tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type",
                "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id", "tokenizer.ggml.add_bos_token",
                "tokenizer.chat_template"):
        assert ours.fields[key].contents() == original.fields[key].contents(), key


def test_llama_cpp_tokenizes_as_transformers_does(tmp_path, smol_tokenizer):
    llama_cpp = pytest.importorskip("llama_cpp")
    path = tmp_path / "dense.gguf"
    write("dense", path, smol_tokenizer, "q8_0")
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, n_threads=1, verbose=False, vocab_only=True)
    chat = smol_tokenizer.apply_chat_template([{"role": "user", "content": "Hi there, 3.14 apples?"}],
                                              tokenize=False, add_generation_prompt=True)
    for text in (PROMPT, "  indented\n\tcode() != 42 — ünïcode 🦙", chat):
        assert llm.tokenize(text.encode(), add_bos=True, special=True) == smol_tokenizer(text).input_ids
    llm.close()


# -- refusals: nothing is written --------------------------------------------------------------------
def test_unsupported_outtype_is_refused_before_writing(tmp_path, smol_tokenizer):
    out = tmp_path / "m.gguf"
    with pytest.raises(UserError, match="--outtype 'q4_0'.*f32, f16, bf16, q8_0"):
        export(tiny(), frozenset(), out, fmt="gguf", tokenizer=smol_tokenizer, options={"outtype": "q4_0"})
    assert list(tmp_path.iterdir()) == []


def test_a_family_llama_cpp_graphs_cannot_compute_is_refused(tmp_path, smol_tokenizer):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    qwen = Qwen2ForCausalLM(Qwen2Config(vocab_size=49152, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2)).eval()
    with pytest.raises(UserError, match="writes Llama-layout models.*this qwen2 model has .*--format remote-code"):
        export(qwen, frozenset({"attn.1"}), tmp_path / "q.gguf", fmt="gguf", tokenizer=smol_tokenizer)
    assert list(tmp_path.iterdir()) == []


def test_a_tokenizer_llama_cpp_may_split_differently_is_refused(tmp_path):
    tok = byte_tokenizer()
    model = tiny_llama(0, 2, vocab_size=len(tok))
    with pytest.raises(UserError, match="GPT-2-style BPE tokenizer llama.cpp knows"):
        export(model, frozenset(), tmp_path / "b.gguf", fmt="gguf", tokenizer=tok)
    assert list(tmp_path.iterdir()) == []


def test_outtype_belongs_to_gguf_only(tmp_path, smol_tokenizer):
    with pytest.raises(UserError, match="--format remote-code takes no --outtype .only --format gguf does"):
        export(tiny(), frozenset({"attn.1"}), tmp_path / "rc", fmt="remote-code", tokenizer=smol_tokenizer,
               options={"outtype": "f16"})
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_leaves_no_file(tmp_path, smol_tokenizer, monkeypatch):
    import gguf

    def broken(self, *a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensors_to_file", broken)
    with pytest.raises(UserError, match="could not write .*No space left"):
        export(tiny(), frozenset(), tmp_path / "m.gguf", fmt="gguf", tokenizer=smol_tokenizer)
    assert list(tmp_path.iterdir()) == []


# -- the command line --------------------------------------------------------------------------------
def run_folder(tmp_path, tok):
    """A run folder whose plan removes attn.2 and layer 1 of a saved tiny Llama with SmolLM2's tokenizer."""
    from blockprune import models
    from blockprune.export import load
    from blockprune.plan import Plan

    base = tmp_path / "base"
    tiny().save_pretrained(base)
    tok.save_pretrained(base)
    plan = Plan(method="blockpruner", model={"source": str(base), "family": "llama",
                                             "sha256": models.fingerprint(load(base))},
                calibration={}, options={}, status="done",
                steps=[{"step": 1, "removed": "attn.2", "ppl": 1.0}, {"step": 2, "removed": "layer.1", "ppl": 2.0}])
    run = tmp_path / "run"
    plan.save(run / "plan.json")
    return run


def test_cli_writes_the_run_and_its_dense_model(tmp_path, smol_tokenizer, capsys):
    from gguf import GGUFReader

    from blockprune.cli import main

    run = run_folder(tmp_path, smol_tokenizer)
    assert main(["export", str(run), "--format", "gguf"]) == 0
    pruned = GGUFReader(run / "model-f16.gguf")
    assert pruned.fields["blockprune.removed"].contents() == ["attn.1", "mlp.1", "attn.2"]
    assert pruned.fields["deci.attention.head_count"].contents() == [4, 0, 4]
    assert main(["export", str(run), "--format", "gguf", "--dense", "--outtype", "q8_0"]) == 0
    dense = GGUFReader(run / "dense-q8_0.gguf")
    assert dense.fields["blockprune.method"].contents() == "dense" and "blockprune.removed" not in dense.fields
    assert dense.fields["llama.block_count"].contents() == 4
    assert sorted(p.name for p in run.iterdir()) == ["dense-q8_0.gguf", "model-f16.gguf", "plan.json"]
    assert "wrote" in capsys.readouterr().out


def test_cli_refusals_write_nothing(tmp_path, smol_tokenizer, capsys):
    from blockprune.cli import main

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["export", str(empty), "--format", "gguf"]) == 2
    assert "no plan" in capsys.readouterr().err and list(empty.iterdir()) == []
    run = run_folder(tmp_path, smol_tokenizer)
    assert main(["export", str(run), "--format", "gguf", "--outtype", "q4_0"]) == 2
    assert "invalid choice: 'q4_0'" in capsys.readouterr().err
    assert main(["export", str(run), "--format", "vanilla", "--outtype", "f16"]) == 2
    assert "takes no --outtype" in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == ["plan.json"]


# -- the real model ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_pruned_smollm2_in_llama_cpp(tmp_path):
    """SmolLM2-135M with single attention and MLP blocks and a whole layer removed, on a chat prompt:
    llama.cpp's f32 logits match transformers' to 1e-3 (measured 1.3e-6) with the same greedy continuation,
    f16's to 1e-2 (measured 1.4e-3) with the same next token."""
    import copy

    from blockprune import models

    net, tok = models.load("smollm2-135m")
    removed = frozenset({"attn.3", "attn.17", "mlp.23", "attn.26", "mlp.26"})
    masked = copy.deepcopy(net)
    mask_modules(masked, removed)
    ids = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  tokenize=True, add_generation_prompt=True, return_dict=True)["input_ids"]
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    want, want_greedy = transformers_run(masked, ids)
    for outtype in ("f32", "f16"):
        path = export(net, removed, tmp_path / f"smol-{outtype}.gguf", fmt="gguf", tokenizer=tok,
                      options={"outtype": outtype}, meta={"method": "test"})
        got, got_greedy = llama_cpp_run(path, ids, exact=outtype == "f32")
        assert relative_error(got, want) <= TOLERANCE[outtype], outtype
        assert got_greedy == want_greedy if outtype == "f32" else got.argmax() == want.argmax()

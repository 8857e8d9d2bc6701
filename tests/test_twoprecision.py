"""Two-precision racing: bf16 ranks, the search's precision decides near-ties; fallback to racing."""
import copy
import json

import pytest
import torch

import blockprune
from blockprune.scoring import twoprecision
from blockprune.api import PruneOptions
from blockprune.data import Windows
from blockprune.errors import UserError
from blockprune.scoring.plain import PlainScorer
from blockprune.plan import Plan
from blockprune.scoring.racing import RacingScorer
from blockprune.search import candidate_units, greedy
from blockprune.scoring.twoprecision import TwoPrecisionScorer
from blockprune.view import BlockView
from conftest import crash_after_saves, single_and_torchrun, tiny_llama


def near_tie():
    """A tiny model whose two best first-step blocks bf16 orders the other way round from fp32."""
    view = BlockView(tiny_llama(5, 6))
    ids = torch.randint(1, 97, (8, 24), generator=torch.Generator().manual_seed(5))
    return view, Windows(ids, "random", 8, 8 * 24, None)


def best(scores):
    return min(range(len(scores)), key=scores.__getitem__)


def empty_plan():
    return Plan(method="blockpruner", model={}, calibration={}, options={})


def test_a_near_tie_bf16_misorders_is_decided_in_fp32():
    view, w = near_tie()
    cands = candidate_units(view)
    fp32 = PlainScorer(view, w).score(frozenset(), [u.blocks for u in cands]).scores
    bf16 = PlainScorer(BlockView(copy.deepcopy(view.model).to(torch.bfloat16)), w).score(
        frozenset(), [u.blocks for u in cands]).scores
    assert best(fp32) != best(bf16)  # the premise: bf16 alone would choose another block

    plan = greedy(view, TwoPrecisionScorer(view, w, fast_dtype="bf16"), empty_plan(), cands, num_blocks=1, ratio=None)
    step = plan.steps[0]
    assert step["removed"] == cands[best(fp32)].name
    assert step["ppl"] == pytest.approx(fp32[best(fp32)], rel=1e-6)  # the recorded perplexity is fp32's
    rec = step["precision"]
    assert rec["fast"] == "bf16" and rec["margin"] > 0 and rec["fast_windows"] > 0 and rec["full_windows"] > 0
    assert {cands[best(fp32)].name, cands[best(bf16)].name} <= set(rec["decided_in_full"])
    for name in rec["decided_in_full"]:  # decided candidates carry their fp32 score on every window
        assert step["scores"][name] == pytest.approx(fp32[[u.name for u in cands].index(name)], rel=1e-6)


def test_clear_losers_never_run_in_full_precision():
    view, w = near_tie()
    scorer = TwoPrecisionScorer(view, w, batch_size=2, fast_dtype="bf16", floor_from=3)
    ran_full = set()
    real = scorer.full.final_nll

    def spy(batch, removed, first):
        ran_full.add(frozenset(removed))
        return real(batch, removed, first)

    scorer.full.final_nll = spy
    cands = [u.blocks for u in candidate_units(view)]
    scored = scorer.score(frozenset(), cands)
    fp32 = PlainScorer(view, w).score(frozenset(), cands).scores
    # full precision ran only the probe (the 3 best after one batch) and the near-ties: never a clear loser
    losers = [i for i, s in enumerate(fp32) if s > 1.1 * min(fp32)]
    assert losers
    assert ran_full and all(cands[i] not in ran_full for i in losers)
    assert scored.precision["full_windows"] < scored.precision["fast_windows"]
    assert len(scored.decided) < len(cands)


def test_without_a_fast_precision_the_scorer_is_racing():
    view, w = near_tie()
    cands = [u.blocks for u in candidate_units(view)]
    fallback = TwoPrecisionScorer(view, w, fast_dtype=None).score(frozenset(), cands)
    racing = RacingScorer(view, w).score(frozenset(), cands)
    assert fallback.scores == racing.scores and fallback.windows == racing.windows
    assert fallback.precision is None
    # a model already in bf16 has no faster copy to race in: racing again
    bf16_view = BlockView(copy.deepcopy(view.model).to(torch.bfloat16))
    assert TwoPrecisionScorer(bf16_view, w, fast_dtype="bf16").fast_dtype is None


def test_auto_resolves_by_what_the_device_runs_natively(monkeypatch):
    monkeypatch.setattr("blockprune.options.native_fast_dtype", lambda device: None)
    assert PruneOptions(num_blocks=1).resolved("cpu").scorer == "incremental"  # today's exact default
    for resolved in (PruneOptions(num_blocks=1).resolved("cpu"), PruneOptions(num_blocks=1, scorer="fast").resolved("cpu")):
        resolved.validate()  # compare validates each method's resolved options again
    fast_here = PruneOptions(num_blocks=1, scorer="fast").resolved("cpu")
    assert (fast_here.scorer, fast_here.fast_dtype) == ("fast", "none")
    monkeypatch.setattr("blockprune.options.native_fast_dtype", lambda device: "bf16")
    auto = PruneOptions(num_blocks=1).resolved("cpu")
    assert (auto.scorer, auto.fast_dtype) == ("fast", "bf16")
    assert PruneOptions(num_blocks=1, dtype="bf16").resolved("cpu").scorer == "incremental"
    assert PruneOptions(num_blocks=1, metric="bi").resolved("cpu").scorer == "incremental"
    assert PruneOptions(num_blocks=1, fast_dtype="none").resolved("cpu").scorer == "incremental"
    monkeypatch.setattr("blockprune.options.native_fast_dtype", lambda device: None)
    with pytest.raises(UserError, match="--racing-z does nothing here: --scorer auto means incremental"):
        PruneOptions(num_blocks=1, racing_z=3.0).resolved("cpu")


def test_native_bf16_is_read_from_thecpu_flags(monkeypatch):
    monkeypatch.setattr(twoprecision, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    assert twoprecision.native_fast_dtype("cpu") == "bf16"
    monkeypatch.setattr(twoprecision, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    assert twoprecision.native_fast_dtype("cpu") is None


def prune_fast(ckpt, calib, out, **kw):
    return blockprune.prune(ckpt, out, calibration=calib, progress=False, export=False, num_blocks=3, nsamples=8,
                            seqlen=32, scorer="fast", fast_dtype="bf16", **kw)


def test_a_resumed_fast_search_gives_the_byte_identical_plan(tiny_checkpoint, calib_file, tmp_path, monkeypatch):
    whole = prune_fast(tiny_checkpoint, calib_file, tmp_path / "whole")
    assert whole.plan.options["scorer"] == "fast" and whole.plan.options["fast_dtype"] == "bf16"
    assert all("precision" in s for s in whole.plan.steps)
    restore = crash_after_saves(monkeypatch, 3)  # dense ppl, step 1, step 2: then the process "dies"
    with pytest.raises(KeyboardInterrupt):
        prune_fast(tiny_checkpoint, calib_file, tmp_path / "killed")
    restore()
    prune_fast(tiny_checkpoint, calib_file, tmp_path / "killed", resume=True)
    assert (tmp_path / "killed" / "plan.json").read_bytes() == (tmp_path / "whole" / "plan.json").read_bytes()


def test_two_processes_give_the_single_process_plan(tiny_checkpoint, calib_file, tmp_path):
    args = ["prune", "--model", tiny_checkpoint, "--calibration", calib_file, "--seqlen", "32", "--nsamples", "8",
            "--num-blocks", "3", "--no-export", "--quiet", "--scorer", "fast", "--fast-dtype", "bf16"]
    single, multi = (json.loads(p) for p in single_and_torchrun(args, tmp_path))
    # the same choices and full-precision perplexities; what each rank raced (window counts, margins) differs
    assert [s["removed"] for s in multi["steps"]] == [s["removed"] for s in single["steps"]]
    assert [s["ppl"] for s in multi["steps"]] == pytest.approx([s["ppl"] for s in single["steps"]], rel=1e-6)


def test_verify_confirms_a_fast_plan(tiny_checkpoint, calib_file, tmp_path, capsys):
    from blockprune import cli

    blockprune.prune(tiny_checkpoint, tmp_path / "run", calibration=calib_file, progress=False, num_blocks=2,
                     nsamples=8, seqlen=32, scorer="fast", fast_dtype="bf16")
    # every recorded step perplexity is full precision, so re-scoring in fp32 confirms it
    assert cli.main(["verify", str(tmp_path / "run")]) == 0
    assert "verified" in capsys.readouterr().out


def test_the_fast_copy_never_holds_a_second_full_precision_copy_of_a_weight():
    """Converted tensor by tensor: no operation during the copy makes an fp32 tensor (a deep copy then a
    cast would clone every fp32 weight first); the copy equals that one, tied weights stay tied."""
    import copy

    from torch.utils._python_dispatch import TorchDispatchMode

    from blockprune.scoring.twoprecision import fast_copy
    from conftest import tiny_llama

    class Made(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.fp32 = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            inputs = {a.untyped_storage().data_ptr() for a in args if isinstance(a, torch.Tensor)}
            for t in out if isinstance(out, (tuple, list)) else [out]:
                # new fp32 memory (a view of an input, as detach makes, holds none)
                if (isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.numel() > 64
                        and t.untyped_storage().data_ptr() not in inputs):
                    self.fp32 += 1
            return out

    model = tiny_llama(0, layers=2, tie_word_embeddings=True)
    with Made() as made:
        low = fast_copy(model, torch.bfloat16)
    assert made.fp32 == 0
    with Made() as made:
        copy.deepcopy(model).to(torch.bfloat16)
    assert made.fp32 > 0  # the probe sees the old way's full-precision clones
    ref = copy.deepcopy(model).to(torch.bfloat16)
    assert all(torch.equal(a, b) for a, b in zip(low.state_dict().values(), ref.state_dict().values()))
    assert low.lm_head.weight is low.model.embed_tokens.weight and next(model.parameters()).dtype == torch.float32

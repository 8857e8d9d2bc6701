"""`blockprune estimate` and prune's memory check (issue 31): the estimate's figures against what a run
really holds, the refusal of a run that would not fit, disk-backed caches, loading straight into bf16."""
import json
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from conftest import save_tiny_checkpoint

from blockprune import estimate, scoring
from blockprune.cli import main
from blockprune.options import PruneOptions

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _text(path: Path, chars: int) -> str:
    import random

    rng = random.Random(0)
    words = ["the", "model", "block", "prune", "layer", "attention", "weights", "data", "cat", "sat", "on", "mat"]
    out = []
    while sum(len(w) + 1 for w in out) < chars:
        out.append(rng.choice(words))
    path.write_text(" ".join(out))
    return str(path)


def _tensor_bytes(tensors) -> int:
    """Bytes of distinct tensor storages (a tensor shared by several dict entries counted once)."""
    seen, total = set(), 0
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in seen:
            seen.add(t.untyped_storage().data_ptr())
            total += t.untyped_storage().nbytes()
    return total


def _flat(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for o in obj:
            yield from _flat(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _flat(o)


def _caches(scorer):
    if hasattr(scorer, "cache"):
        return [scorer.cache]
    if getattr(scorer, "fast_dtype", None) is None:
        return [scorer.racing.cache]
    return [scorer.full, scorer.fast]


def _items(est, prefix):
    return [it.bytes for it in est.memory.items if it.name.startswith(prefix)]


@pytest.mark.parametrize("scorer,every,extra", [("incremental", 1, {}), ("incremental", 3, {}),
                                                ("racing", 2, {"cache_device": "cpu"}),
                                                ("fast", 1, {"fast_dtype": "bf16"}),
                                                ("racing", 3, {"cache_device": "disk"}),
                                                ("incremental", 2, {"tie_word_embeddings": True})])
def test_the_estimate_counts_what_the_run_holds(tmp_path, scorer, every, extra):
    """Weights, boundary caches and prepared inputs: the estimate's bytes equal the bytes of the tensors
    the real scorer holds once its cache is filled and a step scored (exact: these are counts, not
    measurements); the leader copy it keeps is within the estimate's bound."""
    from blockprune import models
    from blockprune.data import load_windows
    from blockprune.view import BlockView

    tie = extra.pop("tie_word_embeddings", False)
    ckpt = save_tiny_checkpoint(tmp_path / "m", layers=5, tie_word_embeddings=tie)
    calib = _text(tmp_path / "c.txt", 700)
    opts = PruneOptions(num_blocks=1, calibration=calib, seqlen=32, batch_size=2, scorer=scorer, cache_every=every,
                        **extra)
    est = estimate.estimate(str(ckpt), opts, "cpu", timing=False)
    net, tok = models.load(str(ckpt), "fp32")
    view = BlockView(net)
    windows = load_windows(calib, tok, 32)
    assert est.calibration.windows == len(windows) and est.calibration.how == "tokenized"
    assert _items(est, "weights") == [_tensor_bytes(net.parameters())]
    resolved = opts.resolved("cpu")
    if resolved.cache_device == "disk":  # as prune hands it over: a folder for the mapped files
        resolved = replace(resolved, cache_device=f"disk:{tmp_path}")
    s = scoring.make_scorer(view, windows, resolved)
    cands = [frozenset({b.name}) for b in view.blocks]
    s.score(frozenset(), cands)
    caches = _caches(s)
    assert len(caches) == len(_items(est, "boundary cache")) == (2 if scorer == "fast" else 1)
    for cache, cached, prepared in zip(caches, _items(est, "boundary cache"), _items(est, "prepared inputs")):
        assert len(cache.states[0]) == estimate.stored_boundaries(len(view.blocks), every)
        assert cached == _tensor_bytes(t for st in cache.states for t in st.values())
        held = _tensor_bytes(t for p in cache.preps for t in _flat(p.layer_kwargs))
        assert prepared == held
        # the embeddings' output is held once, as the cache's boundary 0 (not also on the model's device)
        assert all(p.hidden is st[0] for p, st in zip(cache.preps, cache.states))
    leaders = _items(est, "leader copy")
    if resolved.cache_device in (None, "cpu"):
        assert len(leaders) == len(caches) == len(_items(est, "candidate in flight"))
        for cache, bound, flight in zip(caches, leaders, _items(est, "candidate in flight")):
            kept = _tensor_bytes(t for _, _, passed in cache._leader.values() for t in passed.values())
            assert 0 < kept <= bound
            # a candidate in flight holds at most one batch's run past boundary 0, the first block's all of it
            assert flight == _tensor_bytes(t for k, t in cache.states[0].items() if k)
            assert all(_tensor_bytes(passed.values()) <= flight for _, _, passed in cache._leader.values())
    if scorer == "fast":
        assert _items(est, "fast copy") == [_tensor_bytes(s.fast_view.model.parameters())]


def test_a_disk_cache_is_counted_on_disk_and_keeps_no_leader(tiny_checkpoint, calib_file):
    est = estimate.estimate(tiny_checkpoint, PruneOptions(num_blocks=1, calibration=calib_file, seqlen=32,
                                                          cache_device="disk"), "cpu", timing=False)
    # one cache, or two where the CPU runs bf16 natively and the default scorer is the fast one (fp32 and bf16)
    cache = [it for it in est.memory.items if it.name.startswith("boundary cache")]
    assert cache and {it.where for it in cache} == {"disk"} and not _items(est, "leader copy")
    assert est.memory.needed["disk"] == sum(it.bytes for it in cache)


@pytest.mark.parametrize("method", ["llm-pruner", "llm-pruner-element2"])
def test_the_estimate_counts_the_gradients_a_width_run_holds(tiny_checkpoint, calib_file, tmp_path, method):
    """LLM-Pruner's gradient memory in the estimate is what its scoring pass reports holding (the .grad
    tensors, and the Fisher variant's two float32 accumulators) for the layers it prunes."""
    from blockprune.api import prune

    opts = PruneOptions(method=method, ratio=0.2, calibration=calib_file, seqlen=32, validation="none")
    est = estimate.estimate(tiny_checkpoint, opts, "cpu", timing=False)
    plan = prune(tiny_checkpoint, tmp_path / "run", options=opts, export=False, progress=False).plan
    held = plan.width["scoring"]["gradient_bytes"]
    assert _items(est, "gradients") == [held] and held == (12 if method.endswith("element2") else 4) * \
        plan.width["scoring"]["gradient_params"]


def _peak_in_a_fresh_process(ckpt: Path, out: Path, options: str, large_model_allocator: bool = False) -> dict:
    """`prune` with PruneOptions(`options`) in a fresh one-thread process: its peak RSS (VmHWM, the process's
    own: getrusage's ru_maxrss keeps this test process's RSS at the fork, which the whole suite grows past
    the run's), the estimate's peak and windows, made in that process before any weight (its runtime).
    glibc's malloc mmaps an allocation over its threshold and unmaps it when freed, but raises the threshold
    to each such block freed, up to 32 MiB, and serves what falls under it from its heap, where fragments
    stay resident: a model large enough for memory to matter (1B and up) has its largest tensors over 32 MiB,
    while this tiny one's (4-32 MiB) went to the heap, and the depth test's peak RSS came out 1.06-1.30 GB
    over 18 runs (two over 1.2) against an estimate of 1.07. `large_model_allocator` fixes the threshold at
    1 MiB (`MALLOC_MMAP_THRESHOLD_`) so that the tiny model allocates as a large one does: 12 runs of 12 at
    1.04-1.06 GB. (LLM-Pruner's width
    run, so set, peaked 14% under its estimate: the autograd buffers its backward pass frees go back to the
    system, where the default allocator keeps them; its estimate errs high, the side a refusal can afford.)"""
    script = textwrap.dedent(f"""
        import json, torch
        torch.set_num_threads(1)
        from blockprune import estimate, machine
        from blockprune.api import prune
        from blockprune.options import PruneOptions
        opts = PruneOptions({options}, validation="none")
        est = estimate.estimate({str(ckpt)!r}, opts, "cpu", timing=False)
        prune({str(ckpt)!r}, {str(out)!r}, options=opts, export=False, progress=False, force=True)
        print(json.dumps({{"rss": machine.peak(), "peak": est.memory.peak["cpu"], "windows": est.calibration.windows}}))
    """)
    got = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": SRC,
                              **({"MALLOC_MMAP_THRESHOLD_": str(1 << 20)} if large_model_allocator else {})})
    assert got.returncode == 0, got.stderr[-3000:]
    return json.loads(got.stdout.strip().splitlines()[-1])


def test_peak_rss_of_a_run_is_within_15_percent_of_the_estimate(tmp_path):
    """A model whose caches dominate (hidden 512, 64 windows of 256 tokens: 9 boundaries of 32 MiB and
    the leader copy), pruned one step in a fresh process: its peak RSS against the estimate's peak, the
    runtime included. Tolerance 15%: twelve runs of this size measured 1.1-3.1% under the estimate of 1.07 GB
    with the allocator set as large models use it (`_peak_in_a_fresh_process`); the issue's target of 10% is
    for bench/scale's sizes, where weights and caches dwarf the runtime's variation."""
    ckpt = save_tiny_checkpoint(tmp_path / "m", layers=4, hidden_size=512, intermediate_size=1024,
                                num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=512)
    calib = _text(tmp_path / "c.txt", 64 * 256 + 100)
    r = _peak_in_a_fresh_process(ckpt, tmp_path / "run", f"num_blocks=1, calibration={calib!r}, seqlen=256, "
                                 "scorer='incremental', batch_size=4", large_model_allocator=True)
    assert r["windows"] == 64
    assert abs(r["rss"] - r["peak"]) <= 0.15 * r["rss"], r


@pytest.mark.parametrize("method", ["llm-pruner", "llm-bip"])
def test_peak_rss_of_a_width_run_is_within_15_percent_of_the_estimate(tmp_path, method):
    """Width methods in a fresh process: LLM-Pruner's backward pass over one 2048-token window (autograd's
    activations, the gradients, the whole logits: most of its peak, so leaving any out fails) and LLM-BIP's
    narrowed copy, against the estimate's peak; the tolerance as above."""
    ckpt = save_tiny_checkpoint(tmp_path / "m", layers=4, hidden_size=512, intermediate_size=2048,
                                num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=2048)
    calib = _text(tmp_path / "c.txt", 2048 + 100)
    r = _peak_in_a_fresh_process(ckpt, tmp_path / "run", f"method={method!r}, ratio=0.2, calibration={calib!r}, "
                                 "seqlen=2048")
    assert r["windows"] == 1
    assert abs(r["rss"] - r["peak"]) <= 0.15 * r["rss"], r


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_prune_refuses_a_run_that_would_not_fit_before_loading_weights(tmp_path, calib_file, tiny_checkpoint,
                                                                      capsys, monkeypatch):
    from blockprune import models

    opts = PruneOptions(num_blocks=2, calibration=calib_file, seqlen=32)
    est = estimate.estimate(tiny_checkpoint, opts, "cpu", timing=False)
    runtime = _items(est, "runtime")[0]
    cache = _items(est, "boundary cache")[0]
    # too little for the caches, enough with fewer boundaries or none in memory
    monkeypatch.setattr(estimate, "_mem_available", lambda: est.memory.needed["cpu"] - runtime - cache // 2)
    real_load = models.load
    monkeypatch.setattr(models, "load", lambda *a, **k: pytest.fail("loaded weights before refusing"))
    out = tmp_path / "run"
    argv = ["prune", "--model", tiny_checkpoint, "--calibration", calib_file, "--seqlen", "32", "--num-blocks", "2",
            "--out", out, "--quiet", "--no-export"]
    code, _, err = _cli(capsys, *argv)
    assert code == 2
    first = err.splitlines()[0]
    assert first.startswith("blockprune: error: this run would not fit")
    assert "--cache-device disk" in first and "--cache-every" in first and "--force" in first
    assert "boundary cache" in err and "DOES NOT FIT" in err  # the estimate follows the line
    assert not out.exists()
    # the estimate command says the same, exit 1, and --json carries the fixes
    code, printed, _ = _cli(capsys, "estimate", *argv[1:-2], "--json", "--no-timing")
    d = json.loads(printed)
    assert code == 1 and d["fits"] is False and any("--cache-device disk" in f["options"] for f in d["would_fit_with"])
    # a suggested option makes it run; --force overrides
    monkeypatch.setattr(models, "load", real_load)
    code, _, err = _cli(capsys, *argv, "--cache-device", "disk")
    assert code == 0, err
    code, _, err = _cli(capsys, *argv[:-4], "--out", tmp_path / "forced", "--quiet", "--no-export", "--force")
    assert code == 0, err
    assert (tmp_path / "forced" / "plan.json").exists()


@pytest.mark.parametrize("scorer", ["incremental", "racing", "fast"])
def test_a_disk_cache_gives_the_same_plan_byte_for_byte(tmp_path, calib_file, tiny_checkpoint, monkeypatch, scorer):
    from blockprune.api import prune
    from blockprune.scoring import incremental

    folders = []
    real = incremental.mapped_copy

    def spy(h, folder):
        folders.append(Path(folder))
        assert Path(folder).is_dir()
        return real(h, folder)

    monkeypatch.setattr(incremental, "mapped_copy", spy)
    extra = {"fast_dtype": "bf16"} if scorer == "fast" else {}
    plans = {}
    for where in ("cpu", "disk"):
        out = tmp_path / where
        prune(tiny_checkpoint, out, num_blocks=3, calibration=calib_file, seqlen=32, scorer=scorer, cache_every=2,
              cache_device=where, batch_size=2, export=False, progress=False, **extra)
        plans[where] = (out / "plan.json").read_bytes()
        assert not list(out.glob(".cache-*")), "the temporary cache folder is removed at the end"
    assert plans["cpu"] == plans["disk"]
    assert folders and all(f.parent == tmp_path / "disk" and f.name.startswith(".cache-") for f in folders)


def test_a_bf16_run_makes_no_fast_copy(tiny_checkpoint, calib_file, monkeypatch):
    """Where bf16 is native, auto picks the fast scorer for an fp32 run; a bf16 run gets none, and a fast
    scorer asked for on a bf16 model makes no copy."""
    from blockprune import models, options
    from blockprune.data import load_windows
    from blockprune.scoring import twoprecision
    from blockprune.view import BlockView

    monkeypatch.setattr(options, "native_fast_dtype", lambda device: "bf16")
    assert PruneOptions(num_blocks=1).resolved("cpu").scorer == "fast"
    assert PruneOptions(num_blocks=1, dtype="bf16").resolved("cpu").scorer == "incremental"
    monkeypatch.setattr(twoprecision, "fast_copy", lambda *a: pytest.fail("made a fast copy of a bf16 model"))
    net, tok = models.load(tiny_checkpoint, "bf16")
    s = twoprecision.TwoPrecisionScorer(BlockView(net), load_windows(calib_file, tok, 32), fast_dtype="bf16")
    assert s.fast_dtype is None
    for dtype, copies in (("bf16", 0), ("fp32", 1)):
        est = estimate.estimate(tiny_checkpoint, PruneOptions(num_blocks=1, calibration=calib_file, seqlen=32,
                                                              dtype=dtype), "cpu", timing=False)
        assert len(_items(est, "fast copy")) == copies and len(_items(est, "boundary cache")) == 1 + copies


LOAD_PEAK = r"""
import json, sys, threading, time, torch
from blockprune import models

def anon():  # anonymous resident memory: what a copy of the weights would take (file pages of a
    with open("/proc/self/status") as f:  # memory-mapped checkpoint are not anonymous)
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024

def peak(fn):
    base, top, stop = anon(), [0], [False]
    def watch():
        while not stop[0]:
            top[0] = max(top[0], anon())
            time.sleep(0.001)
    t = threading.Thread(target=watch, daemon=True)
    t.start()
    out = fn()
    stop[0] = True
    t.join()
    return max(top[0], anon()) - base, out

models.load(sys.argv[2], "bf16")  # warm: the modules and thread pools loading imports
bf16, (net, _) = peak(lambda: models.load(sys.argv[1], "bf16"))
weights = sum(p.numel() * p.element_size() for p in net.parameters())
dtype = str(next(net.parameters()).dtype)
del net
from safetensors.torch import load_file  # the control: the weights read whole in fp32, then converted

def naive_load():
    full = {k: v.clone() for k, v in load_file(sys.argv[1] + "/model.safetensors").items()}
    return {k: v.to(torch.bfloat16) for k, v in full.items()}

naive, _ = peak(naive_load)
print(json.dumps({"bf16": bf16, "weights": weights, "dtype": dtype, "naive": naive}))
"""


def test_loading_in_bf16_never_materialises_an_fp32_copy(tmp_path):
    """A random Llama of 64M parameters saved in fp32 (257 MB; the dequantized smollm2-135m alias is such an
    fp32 checkpoint) loaded with --dtype bf16, in a fresh process: its anonymous memory, sampled every
    millisecond, peaks at the bf16 weights (128 MB), under bf16 + half the fp32 size, where a whole fp32
    copy would need bf16 + fp32. (ru_maxrss cannot tell: the fp32 file's pages, memory-mapped and read,
    count as resident either way.) The control, the same file read whole in fp32 and then converted, shows
    the probe sees a whole fp32 copy where there is one."""
    from conftest import byte_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    big = tmp_path / "big"
    LlamaForCausalLM(LlamaConfig(vocab_size=32000, hidden_size=512, intermediate_size=2048, num_hidden_layers=8,
                                 num_attention_heads=8, num_key_value_heads=4,
                                 tie_word_embeddings=False)).save_pretrained(big)
    byte_tokenizer().save_pretrained(big)
    fp32 = (big / "model.safetensors").stat().st_size
    small = save_tiny_checkpoint(tmp_path / "tiny")
    got = subprocess.run([sys.executable, "-c", LOAD_PEAK, str(big), str(small)], capture_output=True, text=True,
                         timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": SRC})
    assert got.returncode == 0, got.stderr[-3000:]
    r = json.loads(got.stdout.strip().splitlines()[-1])
    assert r["dtype"] == "torch.bfloat16" and r["weights"] < 0.55 * fp32
    assert r["bf16"] < r["weights"] + 0.5 * fp32, r
    assert r["naive"] >= r["weights"] + 0.9 * fp32, r  # the probe sees a whole fp32 copy where there is one


def test_stored_boundaries_follow_the_cache_rule():
    # boundary 0, then the end of every run of `every` blocks, the last one included
    assert estimate.stored_boundaries(8, 1) == 9 and estimate.stored_boundaries(8, 3) == 4
    assert estimate.stored_boundaries(64, 8) == 9 and estimate.stored_boundaries(8, 3, parallel=True) == 3


@pytest.mark.parametrize("method", ["llm-bip", "width-local", "width-magnitude"])
def test_the_estimate_counts_the_spectral_norms_a_width_score_takes(tiny_checkpoint, calib_file, tmp_path,
                                                                    monkeypatch, method):
    """The shapes a width run's estimate times are the matrices its scoring pass takes spectral norms of
    (LLM-BIP's MLP norms take longer than its forward passes at 8B on a CPU), and the time range adds them."""
    from blockprune.api import prune
    from blockprune.width import scores

    taken: dict = {}
    real = scores.spectral

    def counted(w):
        shape = tuple(w.shape)
        taken[shape] = taken.get(shape, 0) + 1
        return real(w)

    monkeypatch.setattr(scores, "spectral", counted)
    opts = PruneOptions(method=method, ratio=0.2, calibration=calib_file, seqlen=32, validation="none")
    est = estimate.estimate(tiny_checkpoint, opts, "cpu", timing=False)
    taken.clear()
    prune(tiny_checkpoint, tmp_path / "run", options=opts, export=False, progress=False)
    assert {(r, c): n for r, c, n in est.search.norms} == taken
    assert bool(taken) == (method != "width-magnitude")
    timing = estimate.Timing((0.0, 0.0), (0.0, 0.0), (0.0, 0.0), "fp32", "cpu",
                             norms=[(r, c, 1.0, 2.0) for r, c, _ in est.search.norms])
    lo, hi = estimate.seconds(est.search, timing)
    assert lo == sum(taken.values()) and hi == pytest.approx(2 * estimate.ACROSS_PROCESSES * sum(taken.values()))


@pytest.mark.parametrize("method", ["shortgpt", "relative-magnitude"])
def test_a_one_shot_depth_method_counts_a_perplexity_pass_per_removed_layer(tiny_checkpoint, calib_file, tmp_path,
                                                                            monkeypatch, method):
    """ShortGPT's work: the dense perplexity, its scoring pass, then the perplexity of the model pruned so far
    after each removal: the block runs the estimate counts are those the run makes."""
    from blockprune.api import prune
    from blockprune.arch.llama import LlamaAdapter

    opts = PruneOptions(method=method, num_blocks=2, calibration=calib_file, seqlen=32, validation="none")
    est = estimate.estimate(tiny_checkpoint, opts, "cpu", timing=False)
    runs = []
    real = LlamaAdapter.branch

    def counted(self, layer, kind, h, kw):  # one block on a batch of windows
        runs.append(h.shape[0])
        return real(self, layer, kind, h, kw)

    monkeypatch.setattr(LlamaAdapter, "branch", counted)
    prune(tiny_checkpoint, tmp_path / "run", options=opts, export=False, progress=False)
    lo, hi = est.search.block_runs
    assert runs and lo <= sum(runs) <= hi, (lo, sum(runs), hi)


def test_a_large_spectral_norm_is_timed_on_a_scaled_proxy(monkeypatch):
    """A norm too large to time in a moment: a smaller matrix of the same aspect, scaled by rows x cols^2."""
    timed = []
    monkeypatch.setattr(estimate, "NORM_PROXY", 64 * 16 ** 2)
    from blockprune.width import scores
    real = scores.spectral
    monkeypatch.setattr(scores, "spectral", lambda w: timed.append(tuple(w.shape)) or real(w))
    (r, c, lo, hi), = estimate.time_norms([(32, 128)], "cpu")
    assert (r, c) == (32, 128) and set(timed) == {(64, 16)} and 0 < lo <= hi


def test_estimate_command_prints_the_breakdown_and_a_time_range(tiny_checkpoint, calib_file, capsys):
    code, out, err = _cli(capsys, "estimate", "--model", tiny_checkpoint, "--calibration", calib_file, "--seqlen", "32",
                          "--num-blocks", "2", "--scorer", "racing")
    assert code == 0, err
    for word in ("weights (fp32)", "boundary cache (fp32)", "leader copy", "activations", "peak", "fits",
                 "candidate-windows scored exhaustively", "racing expected", "time (estimate)"):
        assert word in out, word
    code, out, _ = _cli(capsys, "estimate", "--model", tiny_checkpoint, "--calibration", calib_file, "--seqlen", "32",
                        "--num-blocks", "2", "--json")
    d = json.loads(out)
    assert d["fits"] and d["search"]["candidate_windows"] == (8 + 7) * d["calibration"]["windows"]
    assert d["time"][0] <= d["time"][1]


def test_a_run_no_option_can_fit_says_so(tmp_path, calib_file, tiny_checkpoint, capsys, monkeypatch):
    from blockprune import models

    monkeypatch.setattr(estimate, "_mem_available", lambda: 1)
    monkeypatch.setattr(models, "load", lambda *a, **k: pytest.fail("loaded weights before refusing"))
    code, _, err = _cli(capsys, "prune", "--model", tiny_checkpoint, "--calibration", calib_file, "--seqlen", "32",
                        "--num-blocks", "2", "--out", tmp_path / "run")
    assert code == 2 and "no option fits it" in err.splitlines()[0] and "the weights alone need" in err
    assert not (tmp_path / "run").exists()


def test_a_disk_cache_run_refused_later_leaves_no_folder(tmp_path, calib_file, tiny_checkpoint):
    from blockprune.api import prune
    from blockprune.errors import UserError

    # refused after the weights load (force: the estimate's check, which would refuse it first, is skipped)
    with pytest.raises(UserError, match="context"):
        prune(tiny_checkpoint, tmp_path / "run", num_blocks=1, calibration=calib_file, seqlen=256,
              cache_device="disk", export=False, progress=False, force=True)
    assert not (tmp_path / "run").exists()

import contextlib
import os
import sys
from pathlib import Path

import pytest
import torch

from blockprune.models import byte_tokenizer  # noqa: F401  (the tests import it from here)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def bench_script(path: str):
    """A bench script (`bench/...py`, relative to the repository) imported as a module, for its tests."""
    import importlib.util

    file = Path(__file__).resolve().parents[1] / path
    spec = importlib.util.spec_from_file_location("bench_" + "_".join(Path(path).with_suffix("").parts[1:]), file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_llama(seed: int = 0, layers: int = 4, **overrides):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = dict(vocab_size=97, hidden_size=32, intermediate_size=48, num_hidden_layers=layers, num_attention_heads=4,
               num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=False, pad_token_id=0)
    cfg.update(overrides)
    model = LlamaForCausalLM(LlamaConfig(**cfg)).eval()
    # random init leaves residual branches tiny; scale them up so each block matters distinctly
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    return model


class CharTokenizer:
    """A tokenizer for tiny models: one id per byte (mod vocab), callable like a HF tokenizer."""

    def __init__(self, vocab: int = 97):
        self.vocab = vocab
        self.pad_token_id = 0

    def __call__(self, text, return_tensors=None):
        ids = torch.tensor([[1 + (b % (self.vocab - 1)) for b in text.encode()]])
        return type("Enc", (), {"input_ids": ids})()


@pytest.fixture
def shared_data():
    if not SHARED_DATA.exists():
        pytest.skip(f"shared data folder {SHARED_DATA} not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def smollm2_run(tmp_path_factory):
    """One real BlockPruner run on SmolLM2 (2 Alpaca windows of 64 tokens, 3 blocks, its default checkpoint
    exported), shared by the real-model tests that check its path and its checkpoints: the search is most of
    their time, and one run serves them all. Tests may export it further; none may change what it holds."""
    if not SHARED_DATA.exists():
        pytest.skip(f"shared data folder {SHARED_DATA} not present")
    import blockprune

    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count())
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("BLOCKPRUNE_CACHE", _test_cache())
            return blockprune.prune("smollm2-135m", tmp_path_factory.mktemp("smollm2") / "run", data_dir=SHARED_DATA,
                                    calibration="alpaca", nsamples=2, seqlen=64, num_blocks=3, block_type="mix",
                                    progress=False)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def replaced():
    """`replaced(registry, entry)`: `entry` in place of the registry's entry of that name for the rest of the
    test (a variant of a built-in method, score, ...), the original back afterwards."""
    with contextlib.ExitStack() as stack:
        yield lambda registry, entry: stack.enter_context(registry.replaced(entry))


@pytest.fixture(autouse=True)
def _threads(request):
    # tiny models run fastest on one thread (and do not fight other processes for cores); real ones use all
    torch.set_num_threads(os.cpu_count() if request.node.get_closest_marker("slow") else 1)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    # the real-model cache is shared across tests (it is expensive to build); everything else is per-test
    monkeypatch.setenv("BLOCKPRUNE_CACHE", _test_cache())


def _test_cache() -> str:
    return os.environ.get("BLOCKPRUNE_TEST_CACHE", str(Path.home() / ".cache" / "blockprune"))


def save_tiny_checkpoint(path, seed: int = 0, layers: int = 4, **overrides):
    tok = byte_tokenizer()
    model = tiny_llama(seed, layers, vocab_size=len(tok), **overrides)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture
def tiny_checkpoint(tmp_path):
    return str(save_tiny_checkpoint(tmp_path / "tiny-llama"))


@pytest.fixture
def short_calib(tmp_path):
    """About ten 32-byte windows: enough for activation norms, cheap for the shared CPU (the width tests)."""
    p = tmp_path / "short.txt"
    p.write_text(" ".join(["the model prunes attention heads and channels of the block"] * 6))
    return str(p)


@pytest.fixture
def calib_file(tmp_path):
    """A local calibration text long enough for a few 32-token windows."""
    import random

    rng = random.Random(0)
    words = ["the", "model", "block", "prune", "layer", "attention", "weights", "data", "cat", "sat", "on", "mat"]
    text = " ".join(rng.choice(words) for _ in range(60))  # ~350 bytes: ten 32-token windows
    p = tmp_path / "calib.txt"
    p.write_text(text)
    return str(p)


def pytest_terminal_summary(terminalreporter):
    """Print the fault-injection tally (tests/test_faults.py) at the end of the run."""
    mod = sys.modules.get("test_faults")
    tally = getattr(mod, "TALLY", None)
    if tally and any(tally.values()):
        terminalreporter.write_sep("=", "fault-injection tally")
        terminalreporter.write_line(", ".join(f"{k}: {v}" for k, v in tally.items()))


def crash_after_saves(monkeypatch, saves: int):
    """Make Plan.save "kill" the process (KeyboardInterrupt) right after its `saves`-th write; returns a
    function that puts the real save back."""
    from blockprune.plan import Plan

    real_save, calls = Plan.save, {"n": 0}

    def crashing_save(self, path):
        real_save(self, path)
        calls["n"] += 1
        if calls["n"] == saves:
            raise KeyboardInterrupt

    monkeypatch.setattr(Plan, "save", crashing_save)
    return lambda: monkeypatch.setattr(Plan, "save", real_save)


def torchrun_cli(args: list[str], processes: int = 2):
    """Run `blockprune <args>` in `processes` torchrun processes (gloo on CPU, one thread each).

    --standalone: torchrun's own rendezvous on a free port it picks, so tests running side by side (or
    anything else holding a port) never collide."""
    import subprocess

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                           str(processes), "-m", "blockprune.cli", *args],
                          env=env, capture_output=True, text=True, timeout=600)


def single_and_torchrun(args: list[str], tmp_path) -> tuple[bytes, bytes]:
    """plan.json of `blockprune <args>` run in one process (tmp_path/single), then in two torchrun
    processes (tmp_path/multi)."""
    from blockprune import cli

    assert cli.main(args + ["--out", str(tmp_path / "single")]) == 0
    proc = torchrun_cli(args + ["--out", str(tmp_path / "multi")])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tuple((tmp_path / d / "plan.json").read_bytes() for d in ("single", "multi"))


def doc_module(doc: str, name: str):
    """The first python block of docs/`doc` (the file that page tells you to write), run as module `name`."""
    import sys
    import types
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / doc).read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    mod = types.ModuleType(name)
    mod.__package__ = name.rpartition(".")[0]
    sys.modules[name] = mod
    exec(compile(code, f"docs/{doc}", "exec"), mod.__dict__)
    return mod


def growth_in_a_fresh_process(script: str) -> int:
    """Run `script` (which prints {"grew": bytes, "reset": bool} as its last line, measured with
    blockprune.machine's peak reset) in a fresh one-thread process; the growth, or a skip where the kernel
    cannot reset a process's peak RSS."""
    import json
    import subprocess

    src = os.path.join(os.path.dirname(__file__), os.pardir, "src")
    got = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": src})
    assert got.returncode == 0, got.stderr[-3000:]
    r = json.loads(got.stdout.strip().splitlines()[-1])
    if not r["reset"]:
        pytest.skip("this kernel does not let a process reset its peak RSS")
    return r["grew"]

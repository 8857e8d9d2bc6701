"""What a run will need and take, from the model's config alone: `blockprune estimate`, and `prune`'s check.

Nothing here loads weights (but the `smollm2-135m` alias, whose config lives in its dequantized cache,
is dequantized once on first use, as the run would do first). The model is built on the meta device from
its config (so parameter counts, tied embeddings and the blocks are the run's own, from the same adapter),
the calibration text is tokenized when the model folder has a tokenizer (cheap; else its characters /
`CHARS_PER_TOKEN`), and the memory the run holds is added up from what the code keeps:

- weights: every parameter once (tied embeddings once) in `--dtype`;
- the fast scorer's copy (`--scorer fast` with a fast precision): parameters x 2 bytes, converted tensor
  by tensor (`scoring.twoprecision.fast_copy`), so the moment it is made (`transient`) holds the weights
  and the copy, before any boundary but the first is cached;
- each boundary cache (`scoring.incremental.BoundaryCache`): its stored boundaries (`stored_boundaries`:
  the code's own rule) x windows x seqlen x hidden x bytes, on `--cache-device` (`disk`: memory-mapped
  files, not memory), plus what each batch's prepared arguments hold on the model's device (the rotary
  position embeddings and position ids; the embeddings' output is the cache's boundary 0);
- the leader copy: the boundaries past boundary 0 once more, per cache, kept only where the cache lives
  on the model's device and only while free memory covers it twice over; so it is shown and counted in
  the peak, but a run is not refused for it (the cache does without it when memory is short);
- the candidate being scored: its run's boundaries, one batch's worth, kept until its score says whether
  it leads (wherever a leader may be kept);
- width methods: no copy of the weights for most (the pruned model's perplexity runs on the dense one
  masked, `width.masking`, and export narrows it in place), but a copy a sequential score (Wanda-sp under
  uniform allocation) narrows layer by layer as it scores; a score that reads activation statistics, its
  hooks' float64 copy of the MLP's intermediate and its square; a score that backpropagates (LLM-Pruner's)
  its gradients, autograd's saved activations and whole logits;
- while loading on a CPU: the checkpoint's memory-mapped pages beside the weights made from them (in the
  peak of resident memory, not in what the run needs: clean file pages the kernel can drop);
- activations of one forward of --batch-size windows through one block (the MLP's three intermediate
  tensors dominate), and the LM head's slice of the logits: `view.window_nll` runs one window and 1024
  vocabulary rows at a time on a CPU (16384 on an accelerator), so the logit matrix is never whole; a JS
  search (`--metric js`) and LLM-Pruner's gradients do hold a batch's whole logits;
- the runtime: this process's resident memory (Python, torch, transformers, the tokenizer) on a CPU run.

Time: one decoder layer of the model's shapes with random weights runs one window on this device (a
warm-up and `REPEATS` timed runs of each of its attention block, its MLP block, and the LM head: its fixed
part with one vocabulary slice, plus each further slice's product alone), and the search's block-runs are
counted: a candidate at block i runs the blocks from the stored boundary at or before i to the end and
then the head; each step also re-fills the cache past the removed block, and the monitor runs one pass. The range spans the fastest timed run (times
`INSIDE_MODEL`: a layer alone runs slower than inside the model) to the slowest (times `ACROSS_PROCESSES`:
the same layer timed in another process on a shared machine ran up to 21% slower), the step counts a
`--ratio` can mean, and racing's expected candidate-windows (exhaustive for the upper end of
`incremental` and `plain`). A one-shot method scores no candidate: a depth one runs the dense model's
perplexity, one scoring pass and a perplexity pass per removal; a width one a few passes of the dense model,
plus the float64 SVDs of its score's spectral norms, each shape timed (or a smaller matrix of its aspect,
scaled by rows x cols^2)."""
from __future__ import annotations

import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import UserError

# characters per token when the model folder has no tokenizer: SmolLM2's tokenizer gives 4.4-4.6 on
# Alpaca, 4.2 on WikiText-2 and 4.4 on PTB; 4 errs towards more windows (more memory, more time)
CHARS_PER_TOKEN = 4.0
REPEATS = 3  # each timed this often after a warm-up, however slow (one run of a seconds-long block missed by 10%)
# racing's candidate-windows as a share of exhaustive scoring's, the upper end of the expected range:
# bench/search_speed measured 247-286 of 952 (26-30%) on SmolLM2 at z 2.5-3
RACING_SHARE = 0.35
# the low end of the time range is the fastest timed run times this: a decoder layer timed alone ran 3-15%
# slower per block than the same blocks inside the whole model (bench/scale, SmolLM2-135M's shapes, 1 thread)
INSIDE_MODEL = 0.85
# the high end of the time range is the slowest timed run times this: the one-layer timing moves between
# processes on a shared VM (Llama-3.2-3B's MLP, fp32, 2048 tokens: 3.45 s in one process, 4.18 s in
# another), and whole runs took up to 1.09x the slowest timed run's range (bench/scale, AMD EPYC, 1 thread)
ACROSS_PROCESSES = 1.15
BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
GiB = 1024 ** 3


@dataclass
class Shapes:
    """What the estimate needs from a model's config (read off a meta-device model)."""

    family: str
    params: int
    layers: int
    blocks: int
    hidden: int
    intermediate: int
    vocab: int
    head_dim: int
    parallel: bool
    eager_attention: bool
    heads: int
    unit_params: dict[str, list[int]] = field(default_factory=dict)  # granularity -> candidate sizes
    checkpoint_bytes: int = 2  # bytes a parameter in the checkpoint's files (the config's dtype; 2 if unsaid)
    width_weights: list[int] = field(default_factory=list)  # per layer, the projection weights width methods prune


def _config(spec: str):
    """(config, where): the model's config from a local folder, the alias's cache or the hub, no weights."""
    from transformers import AutoConfig

    from . import models

    if spec in models.ALIASES:
        cached = models.cache_dir() / spec
        if not (cached / "config.json").exists():
            models._alias_checkpoint(spec)  # dequantizes once (the run would do the same first)
        where = cached
    else:
        where = models.resolve(spec)
    try:
        return AutoConfig.from_pretrained(where, trust_remote_code=True), where
    except (OSError, ValueError) as e:
        raise UserError(f"could not read the config of '{spec}': {str(e).splitlines()[0]}") from e


def meta_model(config):
    """The model built on the meta device: shapes and parameter counts, no memory."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config, trust_remote_code=True)


def shapes(config) -> Shapes:
    from .search.greedy import candidate_units
    from .view import BlockView

    view = BlockView(meta_model(config))
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    hidden = cfg.hidden_size
    heads = getattr(cfg, "num_attention_heads", 1)
    head_dim = getattr(cfg, "head_dim", None) or hidden // heads
    inter = getattr(cfg, "intermediate_size", None) or getattr(cfg, "ffn_hidden_size", None) or 4 * hidden
    sizes = {}
    for gran, kind in (("block", "mix"), ("layer", "mix")):
        try:
            sizes[gran] = [u.params for u in candidate_units(view, gran, kind)]
        except Exception:  # noqa: BLE001 - a pool the family cannot form: estimated from blocks
            sizes[gran] = [b.params for b in view.blocks]
    try:
        from .width.taylor import weights_of

        width = [sum(p.numel() for p in weights_of(view, [i])) for i in range(view.num_layers)]
    except Exception:  # noqa: BLE001 - a family the width methods do not support: no width run to estimate
        width = []
    impl = getattr(config, "_attn_implementation", None) or "sdpa"
    saved = str(getattr(cfg, "dtype", None) or getattr(config, "dtype", None) or "bfloat16").removeprefix("torch.")
    return Shapes(config.model_type, view.total_params, view.num_layers, len(view.blocks), hidden, inter,
                  cfg.vocab_size, head_dim, view.parallel, impl == "eager", heads, sizes,
                  4 if saved == "float32" else 2, width)


def stored_boundaries(blocks: int, every: int, parallel: bool = False) -> int:
    """How many boundaries a BoundaryCache holds once filled: boundary 0 and the end of every run of
    `every` blocks (the last one included); parallel layers store layer boundaries only."""
    if parallel:
        every = 2 * math.ceil(every / 2)
    return 1 + math.ceil(blocks / every)


@dataclass
class Calibration:
    windows: int
    validation_windows: int
    how: str  # "tokenized" or "estimated (N characters / 4 per token)"


def calibration(where, options, data_dir=None, tokenizer=None) -> Calibration:
    """The run's window counts: exact where a tokenizer loads, else from the text's characters."""
    from . import monitor
    from .data import JOINER, load_rows, load_windows, sample_indices

    if tokenizer is None:
        try:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(where, trust_remote_code=True)
        except Exception:  # noqa: BLE001 - a config-only folder (or any tokenizer that will not load)
            tokenizer = None
    vsource = options.validation_source
    if tokenizer is not None:
        windows = len(load_windows(options.calibration, tokenizer, options.seqlen, nsamples=options.nsamples,
                                   seed=options.seed, data_dir_=data_dir))
        vwindows = len(monitor.load(vsource, options, tokenizer, data_dir)) if vsource else 0
        return Calibration(windows, vwindows, "tokenized")
    rows = load_rows(options.calibration, data_dir)
    whole = options.calibration in ("wikitext2", "ptb") or Path(options.calibration).suffix == ".txt"
    picked = rows if whole else [rows[i] for i in sample_indices(len(rows), options.nsamples, options.seed)]
    chars = len(JOINER.get(options.calibration, "\n\n").join(picked))
    windows = max(1, int(chars / CHARS_PER_TOKEN) // options.seqlen)
    vwindows = 0
    if vsource:  # as many rows, at most monitor.DEFAULT_ROWS: the calibration's windows scaled by rows
        n = monitor.rows(options.validation_nsamples, options.nsamples)
        vwindows = max(1, round(windows * n / max(1, len(picked))))
    return Calibration(windows, vwindows, f"estimated ({chars} characters / {CHARS_PER_TOKEN:g} per token: "
                                          f"no tokenizer in the model folder)")


@dataclass
class Item:
    name: str
    bytes: int
    where: str  # "device" (the model's), "cpu", "disk"
    note: str = ""


@dataclass
class Memory:
    items: list[Item]
    peak: dict[str, int]  # where -> bytes at the peak, the leader copy included
    needed: dict[str, int]  # where -> bytes the run cannot do without (the leader copy left out)
    transient: dict[str, int]  # where -> the moment the fast copy is made


def memory(s: Shapes, cal: Calibration, options, device: str = "cpu", runtime: int = 0) -> Memory:
    """The memory a run with these (resolved) options holds, by item."""
    from .scoring import PERPLEXITY

    w, b = BYTES[options.dtype], min(options.batch_size, cal.windows)
    S, H, W = options.seqlen, s.hidden, cal.windows
    method = options.chosen_method
    dev = "cpu" if device == "cpu" else "device"
    items = [Item(f"weights ({options.dtype})", s.params * w, dev, f"{s.params:,} parameters")]
    if dev != "cpu":  # models.load reads the checkpoint into host memory, then moves it to the device
        items.append(Item("weights while loading", s.params * w, "cpu", "in host memory until moved to the device"))
    ppl = options.metric == PERPLEXITY
    fast = method.uses_scorer and ppl and options.scorer == "fast" and options.fast_dtype not in ("none", "auto")
    caches: list[tuple[str, int]] = []
    if method.uses_scorer and (options.metric == "js" or (ppl and options.scorer != "plain")):
        caches.append((options.dtype, w))
    if fast:
        items.append(Item("fast copy (bf16)", s.params * 2, dev, "the fast scorer's second copy of the weights"))
        caches.append(("bf16", 2))
    leader = 0
    cache_where = (options.cache_device or device) if ppl else device  # the JS scorer keeps its cache by the model
    on_disk = cache_where == "disk"
    cache_place = "disk" if on_disk else ("cpu" if cache_where == "cpu" else "device")
    if cache_place == "device" and dev == "cpu":
        cache_place = "cpu"
    every = options.cache_every if ppl else 1  # the JS scorer keeps every boundary
    n = stored_boundaries(s.blocks, every, s.parallel)
    for label, cb in caches:
        per = W * S * H * cb
        items.append(Item(f"boundary cache ({label})", n * per, cache_place,
                          f"{n} boundaries x {W} windows x {S} tokens x hidden {H} x {cb} bytes"
                          + (" (memory-mapped files)" if on_disk else "")))
        # each batch's prepared arguments on the model's device: rotary cos and sin (1 x seqlen x head_dim
        # per batch, broadcast over its windows) and position ids (int64)
        batches = math.ceil(W / b)
        prep = batches * S * (s.head_dim * 2 * cb + 8)
        if s.eager_attention:
            prep += batches * b * S * S * cb
        items.append(Item(f"prepared inputs ({label})", prep, dev, "position embeddings"))
        if ppl and cache_place == dev and device != "auto":  # BoundaryCache.keep_leader
            leader += (n - 1) * per
            items.append(Item(f"leader copy ({label})", (n - 1) * per, dev,
                              "up to: kept only while free memory covers it twice over"))
            # the candidate being scored keeps its run's boundaries until its score says whether it leads
            # (BoundaryCache.final_nll): one batch's worth, leader or not
            items.append(Item(f"candidate in flight ({label})", (n - 1) * b * S * H * cb, dev,
                              f"the boundaries of the run being scored: {n - 1} x {b} window(s)"))
    # activations: one block on `b` windows (MLP intermediates, or attention's q/k/v and output), plus the
    # residual stream and a norm's fp32 upcast
    act = b * S * (max(3 * s.intermediate, 4 * H + 2 * s.heads * s.head_dim) * w + 2 * H * w + H * 4)
    if s.eager_attention:
        act += b * s.heads * S * S * 4
    chunk = 1024 if dev == "cpu" else 16384
    logits = S * min(chunk, s.vocab) * 4 * 2
    note = f"one window x {S} tokens x {min(chunk, s.vocab)} vocabulary rows x 4 bytes, twice (view.window_nll)"
    if options.metric == "js":  # dense and masked logits of a batch, their float64 log-softmaxes
        logits = b * S * s.vocab * (2 * w + 5 * 8)
        note = f"{b} windows x {S} tokens x {s.vocab} vocabulary: logits and float64 log-softmaxes (--metric js)"
    score = _width_score(options)
    if score and score.sequential is not None and getattr(options, "allocation", "uniform") == "uniform":
        # width.sequential scores each layer on the outputs of the pruned earlier ones: a copy it narrows
        # as it goes (other scores run the pruned model masked, width.masking, and export narrows in place)
        items.append(Item(f"narrowed copy ({options.dtype})", s.params * w, dev,
                          "the pruned model: a copy of the weights, narrowed as each layer is scored"))
    if score and score.needs_data and not score.gradients:
        # the statistics hooks (width.stats, which every statistics-based score reads) take each hooked input in
        # float64 and square it: two float64 copies of the largest (the MLP's intermediate) at once
        items.append(Item("statistics hooks (float64)", b * S * max(s.intermediate, s.heads * s.head_dim) * 16, dev,
                          f"the down projection's input of {b} window(s) in float64, and its square"))
    if score and score.gradients:
        from .width.taylor import held_bytes

        gb = 1 if score.fisher else b  # the Fisher variants run one window per backward pass
        pruned = _pruned_weights(s, options)
        grads = held_bytes(pruned, w, score.fisher)
        items.append(Item("gradients", grads, dev, f"{pruned:,} weights of the pruned layers: .grad and float32 "
                          "copies or accumulators (width.taylor.gradients)"))
        # what autograd keeps for the backward pass: per layer and token about 10 hidden-sized tensors
        # (norms, attention's inputs and output, projections' inputs) and 3 intermediate-sized ones (the
        # gate's input, the gated product); fitted to LLM-Pruner's measured peak on SmolLM2-135M's shape
        # (-6%) and on an 8-layer model of hidden size 512 (+8%)
        saved = gb * S * s.layers * (10 * H + 3 * s.intermediate) * w
        items.append(Item(f"autograd activations (batch {gb})", saved, dev,
                          f"{s.layers} layers x {S} tokens kept for the backward pass"))
        logits = gb * S * s.vocab * (w + 2 * 4)
        note = f"{gb} windows x {S} tokens x {s.vocab} vocabulary: logits, log-softmax and their gradient"
    items.append(Item(f"activations (batch {b})", act, dev, "one block's intermediates and the residual stream"))
    items.append(Item("logits", logits, dev, note))
    if runtime and dev == "cpu":
        items.append(Item("runtime", runtime, "cpu", "Python, torch, transformers, tokenizer (this process)"))
    needed: dict[str, int] = {}
    for it in items:
        if not it.name.startswith("leader"):
            needed[it.where] = needed.get(it.where, 0) + it.bytes
    peak = dict(needed)
    if leader:
        peak[dev] = peak.get(dev, 0) + leader
    # while the fast copy is made: the weights and the copy, nothing cached yet but boundary 0
    # while loading: the checkpoint's files are memory-mapped, and the pages read count in the resident
    # memory next to the weights made from them (clean file pages: the kernel can drop them, so they
    # are in the peak but not in what the run needs)
    if dev == "cpu":
        load = (runtime or 0) + s.params * (w + s.checkpoint_bytes)
        if load > peak.get("cpu", 0):
            peak["cpu"] = load
            items.append(Item("checkpoint pages while loading", s.params * s.checkpoint_bytes, "cpu",
                              "memory-mapped files, counted in the resident memory only while the weights load"))
    transient = {}
    if fast:
        base = runtime if dev == "cpu" else 0
        transient[dev] = base + s.params * (w + 2) + sum(it.bytes for it in items if it.name.startswith("prepared"))
        peak[dev] = max(peak.get(dev, 0), transient[dev])
        needed[dev] = max(needed.get(dev, 0), transient[dev])
    return Memory(items, peak, needed, transient)


def _width_score(options):
    from .width import get_score

    name = getattr(options.chosen_method, "score", None)
    return get_score(name) if name else None


def _pruned_weights(s: Shapes, options) -> int:
    """The projection weights of the layers a width method prunes (`--layers`)."""
    from .width import parse_layers

    return sum(s.width_weights[i] for i in parse_layers(getattr(options, "layers", "1:-1"), s.layers))


def available(device: str, out: str | os.PathLike | None = None) -> dict[str, int | None]:
    """Free memory where the run would put things: MemAvailable (psutil) for the CPU, free memory of a
    CUDA device, free disk space under `out`."""
    free: dict[str, int | None] = {"cpu": _mem_available(), "device": None, "disk": None}
    if device != "cpu":
        try:
            import torch

            if device == "auto" and torch.cuda.is_available():  # sharded over every GPU: their free memory
                free["device"] = sum(torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count()))
            elif torch.device(device).type == "cuda":
                free["device"] = torch.cuda.mem_get_info(torch.device(device))[0]
        except Exception:  # noqa: BLE001 - a device that cannot report: unchecked
            pass
    path = Path(out) if out is not None else Path.cwd()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        free["disk"] = shutil.disk_usage(path).free
    except OSError:
        pass
    return free


def _mem_available() -> int | None:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _rss() -> int:
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        return 0


def shortfall(mem: Memory, free: dict[str, int | None], runtime: int) -> dict[str, int]:
    """Bytes missing where the run would not fit (empty: it fits). The process's own memory (runtime)
    is in use already, so it is not asked of MemAvailable again."""
    short = {}
    for where, need in mem.needed.items():
        have = free.get(where)
        if have is None:
            continue
        ask = need - (runtime if where == "cpu" else 0)
        if ask > have:
            short[where] = ask - have
    return short


# -- time ----------------------------------------------------------------------------------------------

@dataclass
class Timing:
    attn: tuple[float, float]  # seconds per window of one attention block: fastest, slowest timed run
    mlp: tuple[float, float]
    head: tuple[float, float]  # the whole LM head on one window
    dtype: str
    device: str
    load: float | None = None  # the 1-minute load average while timing (a busy machine times slower)
    threads: int | None = None  # torch's CPU threads while timing (the run uses as many)
    #: seconds of one float64 spectral norm of each matrix shape the run takes (rows, cols, fastest, slowest)
    norms: list[tuple[int, int, float, float]] = field(default_factory=list)


def time_layer(config, dtype: str, device: str, seqlen: int) -> Timing:
    """Time one decoder layer of the model's shapes (random weights) and the LM head on one window."""
    import copy

    import torch
    from transformers import AutoModelForCausalLM

    from .models import DTYPES
    from .view import VOCAB_SLICE_ACCELERATOR, VOCAB_SLICE_CPU, BlockView

    dev = torch.device("cpu" if device == "auto" else device)
    chunk = VOCAB_SLICE_CPU if dev.type == "cpu" else VOCAB_SLICE_ACCELERATOR
    cfg = copy.deepcopy(config)
    text = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    vocab = text.vocab_size
    text.num_hidden_layers = 1
    text.vocab_size = min(vocab, chunk)  # one slice of the head: its time is scaled to the vocabulary
    for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
        v = getattr(text, name, None)
        if isinstance(v, int) and v >= text.vocab_size:
            setattr(text, name, 0)
    for name in ("layer_types", "sliding_window_pattern_list", "block_configs"):
        v = getattr(text, name, None)
        if isinstance(v, list) and v:
            setattr(text, name, v[:1])
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, trust_remote_code=True, dtype=DTYPES[dtype]).to(dev).eval()
    view = BlockView(model)
    ids = torch.randint(0, text.vocab_size, (1, seqlen))
    prep = view.prepare(ids)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    def timed(fn) -> tuple[float, float]:
        fn()  # warm-up
        sync()
        runs = []
        for _ in range(REPEATS):
            t = time.perf_counter()
            fn()
            sync()
            runs.append(time.perf_counter() - t)
        return min(runs), max(runs)

    with torch.no_grad():
        attn = timed(lambda: view.run(prep.hidden, prep, frozenset(), 0, 1))
        if view.parallel:  # a parallel layer runs whole: half each
            both = timed(lambda: view.run(prep.hidden, prep, frozenset(), 0, 2))
            attn = mlp = (both[0] / 2, both[1] / 2)
        else:
            mlp = timed(lambda: view.run(prep.hidden, prep, frozenset(), 1, 2))
        h = view.run(prep.hidden, prep, frozenset())
        one = timed(lambda: view.window_nll(h, ids))  # the head's fixed part (final norm, targets) and one slice
        # each further slice: its product and logsumexp alone (scaling the whole call by the slices would
        # repeat the fixed part: bench/scale measured that 15% over on SmolLM2's head)
        weight = model.get_output_embeddings().weight
        x = torch.randn(seqlen - 1, weight.shape[1], dtype=weight.dtype, device=dev)
        more = timed(lambda: torch.logsumexp(torch.nn.functional.linear(x, weight).float(), -1))
    slices = math.ceil(vocab / text.vocab_size)
    head = tuple(one[i] + (slices - 1) * more[i] for i in (0, 1))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return Timing(attn, mlp, head, dtype, str(dev), load, torch.get_num_threads())


# A spectral norm too large to time in a moment is timed on a smaller matrix of the same aspect and scaled
# by rows x cols^2 (the SVD's work); float64 SVD on one thread ran 8% more seconds per unit of that work at
# 8192x3072 than at 2048x768 (AMD EPYC), so the scaled time's range is widened by these factors
NORM_PROXY = 2048 * 768 ** 2
NORM_SCALED = (0.9, 1.25)


def time_norms(shapes: list[tuple[int, int]], device: str) -> list[tuple[int, int, float, float]]:
    """Seconds of one float64 spectral norm (`width.scores.spectral`) of each shape: fastest and slowest of
    two runs after a warm-up, of a random matrix of that shape or of its scaled-down proxy."""
    import torch

    from .width.scores import spectral

    dev = torch.device("cpu" if device == "auto" else device)
    out = []
    for rows, cols in sorted(set(shapes)):
        tall, narrow = max(rows, cols), min(rows, cols)
        work = tall * narrow ** 2
        k = max(1.0, (work / NORM_PROXY) ** (1 / 3))
        m, n = max(1, round(tall / k)), max(1, round(narrow / k))
        w = torch.randn(m, n, dtype=torch.float64, device=dev, generator=torch.Generator(dev).manual_seed(0))
        runs = []
        for i in range(3):
            t = time.perf_counter()
            spectral(w)  # returns a Python float: the device has finished
            if i:
                runs.append(time.perf_counter() - t)
        scale = work / (m * n ** 2)
        lo, hi = (NORM_SCALED if k > 1 else (1.0, 1.0))
        out.append((rows, cols, min(runs) * scale * lo, max(runs) * scale * hi))
    return out


@dataclass
class Search:
    steps: tuple[int, int]
    candidate_windows: int  # exhaustive scoring, the whole search
    racing: tuple[int, int] | None  # racing's expected range (None: the scorer does not race)
    block_runs: tuple[float, float]  # window-blocks run, low and high (for the time)
    head_runs: tuple[float, float]  # window-heads run
    note: str = ""
    norms: tuple[tuple[int, int, int], ...] = ()  # spectral norms a width score takes: (rows, cols, how many)


def search(s: Shapes, cal: Calibration, options) -> Search:
    """Counts of a run's work: steps, candidate-windows, block runs and head runs (per window)."""
    from . import scoring

    method = options.chosen_method
    W, V, N = cal.windows, cal.validation_windows, s.blocks
    B = min(options.batch_size, W)
    gran = method.granularity
    if not method.uses_scorer and gran == "width":  # one-shot passes: the dense model over every window
        passes = (1, 4)
        norms = _norms(s, options)
        return Search((1, 1), 0, None, (passes[0] * W * N, passes[1] * W * N), (passes[0] * W, passes[1] * W),
                      "no candidate scoring: forward passes over the windows"
                      + (f" and {sum(c for *_, c in norms):,} spectral norms" if norms else ""), norms)
    sizes = sorted(s.unit_params.get("block" if gran != "layer" else "layer", []))
    if options.block_type != "mix" and gran == "block":
        kind = options.block_type
        sizes = sorted(p for i, p in enumerate(s.unit_params["block"]) if (i % 2 == 0) == (kind == "mha"))
    pool = len(sizes)
    if options.num_blocks is not None:
        steps = (options.num_blocks, options.num_blocks)
    else:
        budget = options.ratio * s.params
        lo = hi = 0
        acc = 0
        for p in reversed(sizes):  # the largest units first: fewest steps
            if acc + p > budget:
                break
            acc, lo = acc + p, lo + 1
        acc = 0
        for p in sizes:
            if acc + p > budget:
                break
            acc, hi = acc + p, hi + 1
        steps = (max(1, lo), max(1, hi))
    per_unit = N // max(1, pool) if pool else 1  # blocks per unit
    if not method.uses_scorer:
        # a one-shot depth method (ShortGPT, Relative Magnitude): the dense model's perplexity, one scoring
        # pass over the blocks (its float64 statistics count up to a second one: bench/scale measured 3.5-3.6
        # dense passes for one removal), then each removal step's perplexity on the model pruned so far
        runs = [sum(N - (t + 1) * per_unit for t in range(K)) for K in steps]
        mon = (V, V * (1 + steps[1]))  # the overfitting monitor: the dense model's, and up to one a step
        return Search(steps, 0, None, (2 * W * N + W * runs[0] + mon[0] * N, 3 * W * N + W * runs[1] + mon[1] * N),
                      ((1 + steps[0]) * W + mon[0], (2 + steps[1]) * W + mon[1]),
                      "no candidate scoring: a scoring pass and each removal step's perplexity")
    every = options.cache_every if options.metric == scoring.PERPLEXITY else 1
    if options.scorer == "plain" and options.metric == scoring.PERPLEXITY:
        every = N  # a full pass per candidate: no cache
    races = options.metric == scoring.PERPLEXITY and scoring.get(options.scorer).races
    one_step = method.complete_scores and not method.iterative
    totals = []
    for K in steps:
        cw = blocks_run = heads = 0.0
        racing_lo = racing_hi = 0.0
        for t in range(1 if one_step else K):
            cands = pool - t
            kept = (N - t * per_unit) / N
            # a candidate at unit position j (first block j * per_unit) starts at the stored boundary before it
            mean_run = sum(N - (j * per_unit // every) * every for j in range(pool)) / max(1, pool) * kept
            cw += cands * W
            blocks_run += cands * W * mean_run + (N if t == 0 else N / 2 * kept) * W + (V * N * kept)
            heads += cands * W + V
            if races:
                first = cands * B + (min(8, cands) * B if B < 2 and W > B else 0)
                lo = min(cands * W, first + 2 * max(0, W - B))
                racing_lo += lo
                racing_hi += max(lo, min(cands * W, RACING_SHARE * cands * W))
        blocks_run += W * N  # the dense model's pass
        heads += W
        totals.append((int(cw), blocks_run, heads, int(racing_lo), int(racing_hi)))
    (cw_lo, br_lo, h_lo, r_lo, _), (cw_hi, br_hi, h_hi, _, r_hi) = totals[0], totals[-1]
    note = ""
    if method.name == "blockpruner-refined":
        note = "greedy's search; the refining swaps after it add more (not estimated)"
    elif method.name == "blockpruner-evo":
        note = f"the seeds' greedy completions only; {options.generations} generations of raced mutations add more"
    if races:  # racing spends the fraction racing/exhaustive of the candidates' block runs
        lo_share = r_lo / max(1, cw_lo)
        cand_lo = (br_lo - W * N) * lo_share
        cand_hi = br_hi
        return Search(steps, cw_hi, (r_lo, r_hi), (cand_lo + W * N, cand_hi),
                      (h_lo * lo_share, h_hi), note)
    return Search(steps, cw_hi, None, (br_lo, br_hi), (h_lo, h_hi), note)


def _norms(s: Shapes, options) -> tuple[tuple[int, int, int], ...]:
    """The spectral norms a width method's score takes over the layers it prunes, by shape."""
    from .width import parse_layers

    score = _width_score(options)
    if score is None or score.matrix_norms is None:
        return ()
    layers = len(parse_layers(getattr(options, "layers", "1:-1"), s.layers))
    counts: dict[tuple[int, int], int] = {}
    for shape in score.matrix_norms(s.hidden, s.heads, s.head_dim, s.intermediate):
        counts[shape] = counts.get(shape, 0) + layers
    return tuple((r, c, n) for (r, c), n in counts.items())


def norm_seconds(work: Search, timing: Timing) -> tuple[float, float]:
    """The time range of a width score's spectral norms, at their own timing."""
    per_norm = {(r, c): (lo, hi) for r, c, lo, hi in timing.norms}
    return tuple(sum(n * per_norm[(r, c)][i] for r, c, n in work.norms) for i in (0, 1))


def seconds(work: Search, timing: Timing) -> tuple[float, float]:
    """The time range: the work's low end at the fastest timed runs (times `INSIDE_MODEL`), its high end at
    the slowest (times `ACROSS_PROCESSES`); a width score's spectral norms at their own timing."""
    block = ((timing.attn[0] + timing.mlp[0]) / 2, (timing.attn[1] + timing.mlp[1]) / 2)
    norms = norm_seconds(work, timing)
    return (INSIDE_MODEL * (work.block_runs[0] * block[0] + work.head_runs[0] * timing.head[0]) + norms[0],
            ACROSS_PROCESSES * (work.block_runs[1] * block[1] + work.head_runs[1] * timing.head[1] + norms[1]))


# -- the whole estimate ----------------------------------------------------------------------------------

@dataclass
class Estimate:
    model: str
    device: str
    shapes: Shapes
    calibration: Calibration
    options: dict[str, Any]
    memory: Memory
    available: dict[str, int | None]
    short: dict[str, int]
    search: Search
    timing: Timing | None = None
    time: tuple[float, float] | None = None
    timing_error: str | None = None

    @property
    def fits(self) -> bool:
        return not self.short

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["fits"] = self.fits
        return d


def estimate(model: str, options, device: str = "cpu", data_dir=None, out=None, timing: bool = True,
             tokenizer=None) -> Estimate:
    """The estimate for `prune(model, out, options=options, device=device)`; `options` as given (they are
    resolved for `device` here, as prune does). `timing` False skips the timed layer (prune's check)."""
    options.validate()
    resolved = options.resolved(device)
    config, where = _config(model)
    s = shapes(config)
    max_len = getattr(config.get_text_config() if hasattr(config, "get_text_config") else config,
                      "max_position_embeddings", None)
    if max_len is not None and resolved.seqlen > max_len:  # as prune says it once the weights are in
        raise UserError(f"--seqlen {resolved.seqlen} is above the model's context of {max_len} tokens")
    cal = calibration(where, resolved, data_dir, tokenizer)
    runtime = _rss()
    mem = memory(s, cal, resolved, device, runtime)
    free = available(device, out)
    est = Estimate(model, device, s, cal, _shown(resolved), mem, free, shortfall(mem, free, runtime),
                   search(s, cal, resolved))
    if timing:
        try:
            est.timing = time_layer(config, resolved.dtype, device, resolved.seqlen)
            est.timing.norms = time_norms([(r, c) for r, c, _ in est.search.norms], device)
            est.time = seconds(est.search, est.timing)
        except Exception as e:  # noqa: BLE001 - a family whose one-layer copy will not build: no time
            est.timing_error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return est


def _shown(options) -> dict[str, Any]:
    keys = ("method", "dtype", "scorer", "fast_dtype", "batch_size", "cache_every", "cache_device", "nsamples",
            "seqlen", "calibration", "num_blocks", "ratio", "metric", "block_type")
    return {k: getattr(options, k) for k in keys}


def suggestions(model: str, options, device: str, data_dir, out, est: Estimate) -> list[tuple[str, Estimate]]:
    """Options that would make a run that does not fit fit: each alone (the fewest --cache-every that
    does), else all of them together; empty when not even that fits (the weights alone are too much)."""
    tries: list[tuple[str, dict]] = []
    n = options.cache_every
    while n < est.shapes.blocks:
        n *= 2
        tries.append((f"--cache-every {n}", {"cache_every": n}))
    if options.cache_device != "disk":
        tries.append(("--cache-device disk", {"cache_device": "disk"}))
    if options.dtype == "fp32":
        tries.append(("--dtype bf16", {"dtype": "bf16"}))
    if options.batch_size > 1:
        tries.append(("--batch-size 1", {"batch_size": 1}))
    found = []
    for flag, change in tries:
        if flag.startswith("--cache-every") and any(f.startswith("--cache-every") for f, _ in found):
            continue
        e = _variant(est, replace(options, **change), device, out)
        if e.fits:
            found.append((flag, e))
    if found:
        return found
    together = [(f, c) for f, c in tries if not f.startswith("--cache-every")]
    if not together:
        return []
    change = {k: v for _, c in together for k, v in c.items()}
    e = _variant(est, replace(options, **change), device, out)
    return [(" ".join(f for f, _ in together), e)] if e.fits else []


def _variant(est: Estimate, options, device: str, out) -> Estimate:
    resolved = options.resolved(device)
    runtime = next((it.bytes for it in est.memory.items if it.name == "runtime"), 0)
    mem = memory(est.shapes, est.calibration, resolved, device, runtime)
    return replace(est, options=_shown(resolved), memory=mem, short=shortfall(mem, est.available, runtime),
                   search=search(est.shapes, est.calibration, resolved), timing=None, time=None)


def check(model: str, options, device: str = "cpu", data_dir=None, out=None) -> Estimate | None:
    """prune's check before any weight loads: a UserError (exit 2) with the estimate and the options that
    would fit when the run would not. An estimate that cannot be made only warns: it is no reason to stop."""
    try:
        est = estimate(model, options, device, data_dir, out, timing=False)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001
        print(f"blockprune: warning: no memory estimate ({type(e).__name__}: {e}); running without the check",
              file=sys.stderr)
        return None
    if est.fits:
        return est
    fixes = suggestions(model, options, device, data_dir, out, est)
    where = "; ".join(f"{_place(w, device)}: needs {gib(est.memory.needed[w])} with {gib(est.available[w] or 0)} free"
                      for w in est.short)
    if fixes:
        fix = "options that would fit: " + "; ".join(f"{flag} (needs {_needs(e, device)})" for flag, e in fixes)
    else:
        weights = next(it.bytes for it in est.memory.items if it.name.startswith("weights"))
        fix = (f"no option fits it (--cache-every, --cache-device disk, --dtype bf16, --batch-size 1 tried; the "
               f"weights alone need {gib(weights)}): use a machine with more memory")
    raise UserError(f"this run would not fit ({where}); {fix}; or pass --force to run anyway (the estimate "
                    f"follows)\n{render(est)}")


def _needs(e: Estimate, device: str) -> str:
    return ", ".join(f"{gib(b)} {_place(w, device)}" for w, b in e.memory.needed.items() if b)


def _place(where: str, device: str) -> str:
    return {"device": device, "cpu": "memory" if device == "cpu" else "host memory", "disk": "disk"}[where]


def gib(n: float) -> str:
    if n >= GiB:
        return f"{n / GiB:.2f} GiB"
    return f"{n / 1024 ** 2:.1f} MiB"


def duration(sec: float) -> str:
    if sec < 90:
        return f"{sec:.0f} s"
    if sec < 5400:
        return f"{sec / 60:.0f} min"
    if sec < 4 * 86400:
        return f"{sec / 3600:.1f} h"
    return f"{sec / 86400:,.0f} days"


def render(est: Estimate) -> str:
    """The estimate in words and a table (what `blockprune estimate` prints)."""
    from .words import count

    s, o, c = est.shapes, est.options, est.calibration
    size = f"{s.params / 1e9:,.2f}B" if s.params >= 1e9 else f"{s.params / 1e6:,.1f}M" if s.params >= 1e6 else f"{s.params:,}"
    rows = f"{o['nsamples']} rows" if not (o["calibration"] in ("wikitext2", "ptb") or o["calibration"].endswith(".txt")) \
        else "the whole text"
    lines = [f"model: {est.model} ({s.family}, {size} parameters, {s.layers} layers, hidden "
             f"{s.hidden}, vocabulary {s.vocab:,}); {o['method']} in {o['dtype']} on {est.device}, scorer {o['scorer']}"
             + (f" ({o['fast_dtype']} race)" if o["scorer"] == "fast" else ""),
             f"calibration: {o['calibration']}, {rows} -> {c.windows} windows x {o['seqlen']} tokens "
             f"({c.how})" + (f"; validation {c.validation_windows} windows" if c.validation_windows else ""),
             "memory (estimates):"]
    for it in est.memory.items:
        lines.append(f"  {it.name:<28} {gib(it.bytes):>11}  {_place(it.where, est.device):<11} {it.note}")
    for where in est.memory.peak:
        have = est.available.get(where)
        free = f"; {gib(have)} free" if have is not None else ""
        if where == "cpu" and have is not None:
            free += " (beside this process)"
        lines.append(f"  peak, {_place(where, est.device):<22} {gib(est.memory.peak[where]):>11}  "
                     f"(needed, without the leader copy and checkpoint pages: {gib(est.memory.needed[where])}{free})")
    lines.append("  fits" if est.fits else "  DOES NOT FIT: " + ", ".join(
        f"{gib(b)} short on {_place(w, est.device)}" for w, b in est.short.items()))
    w = est.search
    steps = "1 step" if w.steps == (1, 1) else f"{w.steps[0]} steps" if w.steps[0] == w.steps[1] \
        else f"{w.steps[0]}-{w.steps[1]} steps (--ratio: from the largest units first to the smallest)"
    if w.candidate_windows:
        line = f"search: {steps}, {w.candidate_windows:,} candidate-windows scored exhaustively"
        if w.racing:
            line += f"; racing expected {w.racing[0]:,}-{w.racing[1]:,}"
        lines.append(line + (f" ({w.note})" if w.note else ""))
    else:
        lines.append(f"search: {w.note}")
    if est.timing:
        t = est.timing
        lines.append(f"timing (one layer, random weights, one window of {o['seqlen']} tokens, {t.dtype} on {t.device}): "
                     f"attention {t.attn[0]:.3f}-{t.attn[1]:.3f} s, MLP {t.mlp[0]:.3f}-{t.mlp[1]:.3f} s, "
                     f"LM head {t.head[0]:.3f}-{t.head[1]:.3f} s"
                     + (f"; {count(t.threads, 'thread')}" if t.threads and t.device == "cpu" else "")
                     + (f", load average {t.load:.1f} on {os.cpu_count()} CPUs" if t.load is not None else ""))
        if t.norms:
            part = norm_seconds(w, t)
            lines.append(f"spectral norms (float64, the width score's): "
                         + ", ".join(f"{n:,} of {r}x{c}" for r, c, n in w.norms)
                         + f", {duration(part[0])} - {duration(part[1])} (in the time below)")
        lines.append(f"time (estimate): {duration(est.time[0])} - {duration(est.time[1])}"
                     + (" (at least)" if w.note and "not estimated" in w.note or "generations" in w.note else ""))
    elif est.timing_error:
        lines.append(f"time: not estimated (the one-layer copy did not run: {est.timing_error})")
    return "\n".join(lines)

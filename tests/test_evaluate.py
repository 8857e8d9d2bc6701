"""Evaluation: test perplexity by hand, the in-memory masked model, the offline lm-eval tasks against
the standard ones, cost figures, and eval.json from a run folder."""
import json
import math
from pathlib import Path

import pytest
import torch

from conftest import tiny_llama
from blockprune.evaluate import evaluate, load_subject, mask_in_memory
from blockprune.evaluate.cost import attention_layers, generation_latency, kv_bytes_per_token
from blockprune.evaluate.harness import STANDARD, offline_config, offline_task, standard_config, standard_yaml
from blockprune.evaluate.perplexity import test_perplexity as ppl_on_test_set
from blockprune.evaluate.table import ZERO_SHOT, average
from blockprune.view import BlockView

ROWS = ["The quick brown fox jumps over the lazy dog.", "", " = Heading = ", "Pack my box with five dozen liquor jugs.",
        "How vexingly quick daft zebras jump!"] * 3


def bpe_tokenizer():
    """A real Hugging Face fast tokenizer (byte-level BPE, 300 ids), trained in milliseconds."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(ROWS * 4, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<eos>")


def tiny_checkpoint(folder: Path, layers: int = 4) -> Path:
    tok = bpe_tokenizer()
    model = tiny_llama(layers=layers, vocab_size=len(tok), max_position_embeddings=256, pad_token_id=0)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def write_data(root: Path) -> Path:
    (root / "perplexity").mkdir(parents=True)
    (root / "perplexity" / "wikitext2_raw_test.jsonl").write_text("".join(json.dumps({"text": r}) + "\n" for r in ROWS))
    (root / "perplexity" / "ptb_test.txt").write_text("\n".join(r for r in ROWS if r) + "\n")
    return root


def hand_ppl(model, ids: torch.Tensor, seqlen: int) -> tuple[float, int]:
    n = ids.numel() // seqlen
    nlls = []
    for i in range(n):
        w = ids[i * seqlen:(i + 1) * seqlen][None]
        logits = model(w).logits[0, :-1]
        nlls.append(torch.nn.functional.cross_entropy(logits, w[0, 1:]).item())
    return math.exp(sum(nlls) / n), n


def test_perplexity_matches_hand_computation(tmp_path):
    """WikiText-2 test rows joined with blank lines, tokenized once, cut into non-overlapping windows."""
    tok = bpe_tokenizer()
    model = tiny_llama(vocab_size=len(tok))
    data = write_data(tmp_path)
    source = "wikitext2"
    ids = tok("\n\n".join(ROWS), return_tensors="pt").input_ids[0]
    seqlen = 24
    with torch.no_grad():
        expected, n = hand_ppl(model, ids, seqlen)
    got = ppl_on_test_set(model, tok, source, seqlen=seqlen, data_dir=data, progress=False)
    assert got["windows"] == n == ids.numel() // seqlen and n >= 3
    assert got["text_tokens"] == ids.numel()
    assert got["ppl"] == pytest.approx(expected, rel=1e-5)
    first = ppl_on_test_set(model, tok, source, seqlen=seqlen, data_dir=data, max_windows=2, progress=False)
    with torch.no_grad():
        assert first["ppl"] == pytest.approx(hand_ppl(model, ids[:2 * seqlen], seqlen)[0], rel=1e-5)


def test_masked_model_equals_view_and_generates():
    base = tiny_llama(layers=4)
    removed = frozenset({"attn.0", "mlp.2", "attn.3"})
    ids = torch.randint(1, 97, (2, 12))
    expected = BlockView(base).logits(ids, removed)
    masked = mask_in_memory(tiny_llama(layers=4), removed)  # same seed, same weights
    with torch.no_grad():
        assert torch.allclose(masked(ids).logits, expected, atol=1e-5)
        # generation with the KV cache matches step-by-step full recomputation, layer 0 without attention
        out = masked.generate(ids[:1], max_new_tokens=6, do_sample=False, use_cache=True, pad_token_id=0)
        seq = ids[:1]
        for _ in range(6):
            seq = torch.cat([seq, masked(seq).logits[:, -1:].argmax(-1)], 1)
    assert torch.equal(out, seq)
    assert sum(p.numel() for p in masked.parameters()) == BlockView(base).total_params - BlockView(base).removed_params(removed)


def test_kv_cache_bytes_per_token():
    model = tiny_llama(layers=4)  # 4 layers × (K, V) × 2 kv heads × head dim 8 × 4 bytes
    assert kv_bytes_per_token(model, torch.float32) == 4 * 2 * 2 * 8 * 4
    assert kv_bytes_per_token(model, torch.float16) == 4 * 2 * 2 * 8 * 2
    mask_in_memory(model, {"attn.1", "mlp.3"})  # one layer loses its attention, and with it its cache
    assert kv_bytes_per_token(model, torch.float32) == 3 * 2 * 2 * 8 * 4
    # the first layer's slot keeps the sequence length: one number each for K and V
    first = tiny_llama(layers=4)
    mask_in_memory(first, {"attn.0"})
    assert attention_layers(first) == 3
    assert kv_bytes_per_token(first, torch.float32) == (3 * 2 * 8 + 1) * 2 * 4
    ids = torch.randint(0, first.config.vocab_size, (2, 5))
    cache = first(ids, use_cache=True).past_key_values
    assert cache.get_seq_length() == 5 and cache.layers[0].keys.shape == (2, 1, 5, 1)


def _cache_bytes_per_token(model, tokens: int = 5) -> float:
    """What the KV cache actually holds per token after a forward pass (every layer's K and V tensors)."""
    ids = torch.randint(1, model.config.vocab_size, (1, tokens))
    with torch.no_grad():
        cache = model(ids, use_cache=True).past_key_values
    held = sum(t.numel() * t.element_size() for layer in cache.layers
               for t in (getattr(layer, "keys", None), getattr(layer, "values", None)) if t is not None)
    return held / tokens


def test_kv_cache_bytes_per_token_reads_each_layers_width(tmp_path):
    """Width pruning narrows k/v layer by layer and leaves the config's head counts dense: the figure is the
    layers' own widths (what the cache holds), in memory and from a reloaded remote-code checkpoint, with
    depth pruning on top (a removed first attention keeps its one-number slot)."""
    from blockprune.export import export_width, load
    from blockprune.width import Keep, narrow

    model = tiny_llama(layers=4)  # 2 KV groups of 2 query heads, head dim 8
    keep = {0: Keep([0, 1, 2, 3], [0, 1], list(range(48))), 1: Keep([2, 3], [1], list(range(40))),
            2: Keep([0, 1], [0], list(range(48))), 3: Keep([0, 1, 2, 3], [0, 1], list(range(30)))}
    narrowed = narrow(model, keep)
    assert narrowed.config.num_key_value_heads == 2  # the config still says dense
    want = (2 + 1 + 1 + 2) * 2 * 8 * 4  # layers' KV groups × (K, V) × head dim × fp32
    assert kv_bytes_per_token(narrowed, torch.float32) == want == _cache_bytes_per_token(narrowed)
    assert kv_bytes_per_token(narrowed, torch.float16) == want // 2
    export_width(narrowed, tmp_path / "w")
    again = load(tmp_path / "w")
    assert kv_bytes_per_token(again, torch.float32) == want == _cache_bytes_per_token(again)
    # depth pruning of the narrowed model: layer 1's cache goes, layer 0's keeps one number for K and V
    mask_in_memory(narrowed, {"attn.0", "attn.1"})
    assert kv_bytes_per_token(narrowed, torch.float32) == ((1 + 2) * 2 * 8 + 2) * 4 == _cache_bytes_per_token(narrowed)


def test_latency_runs_after_warmup():
    tok = bpe_tokenizer()
    r = generation_latency(tiny_llama(vocab_size=len(tok)), tok, new_tokens=5, repeats=2, warmup=1, progress=False)
    assert r["new_tokens"] == 5 and r["repeats"] == 2 and r["mean_s"] > 0
    assert len(r["load_average"]) == 3 and r["cpus"] >= 1 and "caveat" in r


def test_latency_on_a_busy_machine_carries_a_caveat():
    from blockprune.evaluate.cost import latency_caveat

    assert latency_caveat(1.0, 0.03, load=0.5, cpus=2) is None
    assert latency_caveat(28.0, 17.7, load=1.0, cpus=2) == "measured under load: spread 63% of the mean"
    assert latency_caveat(1.0, 0.01, load=5.2, cpus=2) == "measured under load: load average 5.2 on 2 CPUs"


def test_shared_prompt_scoring_uses_the_supported_cache_argument():
    import warnings

    from blockprune.evaluate.shared_prefix import SharedPrefixHFLM

    tok = bpe_tokenizer()
    model = tiny_llama(vocab_size=len(tok), max_position_embeddings=256)
    lm = SharedPrefixHFLM(pretrained=model, tokenizer=tok, batch_size=4, max_length=64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        shared = lm._score_continuations([5, 6, 7, 8], [[9, 10], [11]])
    assert not [w for w in caught if "past_key_values" in str(w.message)]
    # the same log-likelihoods as running prompt + continuation whole
    for cont, (ll, _) in zip([[9, 10], [11]], shared):
        ids = torch.tensor([[5, 6, 7, 8] + cont])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0, 3:-1], -1)
        assert ll == pytest.approx(float(logp.gather(-1, torch.tensor(cont)[:, None]).sum()), abs=1e-4)


class Records(__import__("logging").Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_lm_eval_warns_nothing_blockprune_causes_on_purpose(shared_data, tmp_path):
    import logging

    from blockprune.evaluate.harness import harness_model, run_tasks, task_specs

    records = Records()
    loggers = [logging.getLogger(n) for n in ("lm_eval.models.huggingface", "lm_eval.evaluator")]
    for logger in loggers:
        logger.addHandler(records)
    try:
        ckpt = tiny_checkpoint(tmp_path / "ckpt")
        subject = load_subject(str(ckpt))
        lm = harness_model(subject.model, subject.tokenizer, batch_size=4)
        specs, _ = task_specs(["winogrande"], shared_data)
        run_tasks(lm, specs, limit=2)
    finally:
        for logger in loggers:
            logger.removeHandler(records)
    assert not [m for m in records.messages if "is not of type `str`" in m or "Overwriting default num_fewshot" in m]


def _local_docs(data: Path, task: str, n: int) -> list[dict]:
    with open(data / STANDARD[task][1]) as f:
        return [json.loads(next(f)) for _ in range(n)]


@pytest.mark.parametrize("task", ZERO_SHOT)
def test_offline_tasks_make_the_standard_requests(shared_data, monkeypatch, task):
    """The offline task and lm-eval's standard task, fed the same documents, ask the model the same
    questions (contexts and continuations), expect the same answers and score with the same metrics."""
    import datasets
    from lm_eval.api.task import ConfigurableTask

    n = 12
    docs = _local_docs(shared_data, task, n)
    offline = offline_task(task, shared_data)

    def fake_download(self, dataset_kwargs=None, **kwargs):  # the hub's splits, holding the same documents
        self.dataset = datasets.DatasetDict({s: datasets.Dataset.from_list(docs) for s in ("train", "validation", "test")})
    monkeypatch.setattr(ConfigurableTask, "download", fake_download)
    standard = ConfigurableTask(config=standard_config(task))
    assert standard.config.dataset_path not in ("json", None)  # really the hub config
    for t in (offline, standard):
        t.build_all_requests(limit=n, rank=0, world_size=1)
    assert [i.arguments for i in offline.instances] == [i.arguments for i in standard.instances]
    assert len(offline.instances) >= 2 * n
    for a, b in zip(offline.eval_docs.select(range(n)), standard.eval_docs):
        assert offline.doc_to_target(a) == standard.doc_to_target(b)
        assert offline.doc_to_choice(a) == standard.doc_to_choice(b)
    assert offline._metric_fn_list.keys() == standard._metric_fn_list.keys()
    assert offline._aggregation_list == standard._aggregation_list
    assert offline.OUTPUT_TYPE == standard.OUTPUT_TYPE == "multiple_choice"
    cfg = offline_config(task, shared_data)
    assert cfg["dataset_path"] == "json" and Path(next(iter(cfg["dataset_kwargs"]["data_files"].values()))).exists()


def test_standard_configs_are_lm_evals_registered_tasks():
    from blockprune.errors import UserError
    from blockprune.evaluate.harness import task_manager
    from blockprune.evaluate.tasks import prepare

    tm = task_manager(True)
    for task in ZERO_SHOT:
        assert tm.task_index[task].yaml_path.resolve() == standard_yaml(task).resolve()
    with pytest.raises(UserError, match="unknown task .nosuchtask."):
        prepare(["wikitext2", "nosuchtask", "piqa"])
    with pytest.raises(UserError, match="'pica'.*close matches: .*piqa"):
        prepare(["pica"])


def test_average_uses_acc_norm_where_present():
    scores = {t: {"acc": 0.5, "acc_norm": 0.7} for t in ZERO_SHOT}
    scores["winogrande"] = {"acc": 0.6}
    avg = average(scores)
    assert avg["value"] == pytest.approx((0.7 * 4 + 0.6) / 5)
    assert avg["metrics"]["winogrande"] == "acc" and avg["metrics"]["piqa"] == "acc_norm"
    assert "acc_norm" in avg["rule"]
    assert average({"piqa": scores["piqa"]}) is None


def test_eval_run_folder_in_memory(tmp_path, shared_data):
    """A run folder is evaluated as its plan applied in memory; eval.json holds every figure."""
    from blockprune.api import prune

    ckpt = tiny_checkpoint(tmp_path / "ckpt")
    data = write_data(tmp_path / "data")
    (data / "eval").mkdir()
    (data / STANDARD["winogrande"][1]).write_text((shared_data / STANDARD["winogrande"][1]).read_text())
    calib = tmp_path / "calib.txt"
    calib.write_text("\n\n".join(ROWS))
    run = prune(str(ckpt), tmp_path / "run", num_blocks=2, calibration=str(calib), seqlen=16, nsamples=2,
                export=False, progress=False)
    subject = load_subject(str(tmp_path / "run"))
    assert subject.kind == "run" and subject.removed == run.plan.removed
    record = evaluate(subject, ["wikitext2", "winogrande"], out=tmp_path / "ev", seqlen=16, limit=4,
                      data_dir=data, latency_repeats=1, latency_tokens=4, progress=False)
    saved = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert saved == json.loads(json.dumps(record))
    assert saved["zero_shot"]["winogrande"]["docs"] == 4 and 0 <= saved["zero_shot"]["winogrande"]["acc"] <= 1
    # the harness saw the masked model: perplexity equals the view's with the plan's blocks removed
    base = load_subject(str(ckpt))
    from blockprune.data import load_windows
    from blockprune.window_nll import perplexity
    w = load_windows("wikitext2", base.tokenizer, 16, data_dir_=data)
    assert saved["perplexity"]["wikitext2"]["ppl"] == pytest.approx(
        perplexity(BlockView(base.model), w, run.plan.removed_blocks), rel=1e-5)
    c = saved["cost"]
    assert c["ratio"] == pytest.approx(run.plan.steps[-1]["ratio"], rel=1e-6)
    assert c["params"] == run.plan.model["params"] - BlockView(base.model).removed_params(run.plan.removed_blocks)

    # the exported checkpoint evaluates to the same figures as the plan applied in memory
    from blockprune.export import export
    export(base.model, run.plan.removed_blocks, tmp_path / "pruned", fmt="remote-code",
           meta={"method": "blockpruner", "base_model": str(ckpt)}, tokenizer=base.tokenizer)
    pruned = load_subject(str(tmp_path / "pruned"))
    assert pruned.kind == "checkpoint" and pruned.reference_params == run.plan.model["params"]
    again = evaluate(pruned, ["wikitext2"], seqlen=16, data_dir=data, latency_repeats=1, latency_tokens=4,
                     progress=False)
    assert again["perplexity"]["wikitext2"]["ppl"] == pytest.approx(saved["perplexity"]["wikitext2"]["ppl"], rel=1e-5)
    assert again["cost"]["params"] == c["params"]
    assert again["cost"]["kv_cache_bytes_per_token"] == c["kv_cache_bytes_per_token"]


def test_eval_cli_on_a_checkpoint(tmp_path, capsys):
    from blockprune.cli import main

    ckpt = tiny_checkpoint(tmp_path / "ckpt")
    data = write_data(tmp_path / "data")
    args = ["eval", str(ckpt), "--tasks", "wikitext2,ptb", "--seqlen", "16", "--max-windows", "3", "--no-cost",
            "--data-dir", str(data), "--out", str(tmp_path / "ev")]
    assert main(args) == 0
    saved = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert saved["subject"]["kind"] == "dense" and saved["cost"] is None
    assert {t: r["windows"] for t, r in saved["perplexity"].items()} == {"wikitext2": 3, "ptb": 3}
    assert "wikitext2: ppl" in capsys.readouterr().out
    assert main(args[:2] + ["--tasks", " ,", "--data-dir", str(data)]) == 2
    assert main(args + ["--limit", "-1"]) == 2  # 0 means every document, as in compare
    assert "--limit must be at least 0" in capsys.readouterr().err


def test_task_scores_keep_every_metric_of_any_task():
    from blockprune.evaluate import task_scores

    results = {"results": {"lambada_openai": {"alias": "lambada_openai", "perplexity,none": 18.5,
                                              "perplexity_stderr,none": 0.6, "acc,none": 0.41, "acc_stderr,none": 0.01},
                           "gsm8k": {"exact_match,strict-match": 0.02, "exact_match_stderr,strict-match": 0.004,
                                     "exact_match,flexible-extract": 0.05, "exact_match_stderr,flexible-extract": "N/A"}},
               "n-samples": {"lambada_openai": {"effective": 10, "original": 5153}}}
    lam = task_scores(results, "lambada_openai")
    assert lam == {"perplexity": 18.5, "perplexity_stderr": 0.6, "acc": 0.41, "acc_stderr": 0.01, "docs": 10,
                   "docs_total": 5153}
    gsm = task_scores(results, "gsm8k")
    assert gsm["exact_match,strict-match"] == 0.02 and gsm["exact_match,strict-match_stderr"] == 0.004
    assert gsm["exact_match,flexible-extract"] == 0.05 and gsm["exact_match,flexible-extract_stderr"] is None


def test_eval_json_names_its_machine_and_no_absolute_path(tmp_path, shared_data, monkeypatch):
    """Inputs given by absolute paths are recorded relative to the working directory (the data folder's
    offline copies, a ppl:FILE text, the checkpoint), and the record names the machine, what it measured
    there and in how many seconds: a committed eval.json says nothing of the folders it was written in."""
    from blockprune.cli import main

    ckpt = tiny_checkpoint(tmp_path / "ckpt")
    data = write_data(tmp_path / "work" / "data")
    (data / "eval").mkdir()
    copy = data / STANDARD["winogrande"][1]
    copy.write_text("".join((shared_data / STANDARD["winogrande"][1]).read_text().splitlines(True)[:4]))
    monkeypatch.chdir(tmp_path / "work")
    text = data / "perplexity" / "ptb_test.txt"
    assert main(["eval", str(ckpt), "--tasks", f"wikitext2,ppl:{text},winogrande", "--seqlen", "16",
                 "--max-windows", "2", "--limit", "2", "--no-cost", "--data-dir", str(data),
                 "--out", str(tmp_path / "ev")]) == 0
    raw = (tmp_path / "ev" / "eval.json").read_text()
    assert str(tmp_path) not in raw.replace(f"ppl:{text}", "")  # a task's name stays as the user gave it
    saved = json.loads(raw)
    assert saved["zero_shot"]["winogrande"]["data"] == "data/eval/winogrande_xl_validation.jsonl"
    assert saved["perplexity"][f"ppl:{text}"]["path"] == "data/perplexity/ptb_test.txt"
    assert saved["subject"]["source"] == saved["subject"]["base_model"] == "../ckpt"
    [ran] = saved["machines"]
    assert ran["measured"] == ["wikitext2", f"ppl:{text}", "winogrande"] and ran["seconds"] > 0
    assert ran["cpu"]["model"] and ran["torch_threads"] >= 1 and len(ran["load_average"]) == 3

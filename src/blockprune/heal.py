"""Recovery fine-tuning ("healing"): LoRA on a pruned model, merged back into a checkpoint of the same format.

Defaults follow the BlockPruner appendix (LoRA rank 32, alpha 10, learning rate 2e-4, batch 1, gradient
accumulation 4, linear schedule, every linear layer but the embeddings and the head, 8,000 Alpaca rows);
what the appendix leaves unsaid comes from LLM-Pruner's recovery recipe, which it follows (2 epochs,
LoRA dropout 0.05, 256-token examples, gradient clipping at 1.0 as the HF Trainer does).

Instruction data (Alpaca, or .json/.jsonl rows with instruction/input/output) is trained on the
response only: prompt tokens are labelled -100. Plain text (.txt, {"text"} rows, wikitext2, ptb) is cut
into `max_length` windows and every token carries loss.

`OUT/adapter` holds the latest adapter checkpoint (written whole, then renamed into place) with the
optimizer, scheduler and RNG state, so `resume=True` continues exactly where it stopped;
`OUT/model` is the merged, healed checkpoint; `OUT/heal.json` the record of the run."""
from __future__ import annotations

import json
import math
import random
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import atomic, models
from .data import BUILTIN, JOINER, alpaca_prompt, data_dir, load_rows, windows_from_rows
from .errors import UserError

PAPER_ROWS = 8000  # Alpaca rows in BlockPruner's healing; the offline copy has fewer
SCHEDULES = ("linear", "cosine", "constant")
WEIGHT_FILES = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json")
IGNORE = -100


@dataclass
class HealOptions:
    """Every setting of a healing run; all but the logging cadence bind a resume."""

    data: str = "alpaca"
    rows: int | None = None  # instruction rows sampled (seeded); None: all there are
    val_size: int = 100  # examples held out for validation loss (at most a fifth of the data)
    rank: int = 32
    alpha: float = 10.0
    dropout: float = 0.05
    target_modules: str = "all-linear"  # or a comma list of module names, e.g. "q_proj,v_proj"
    lr: float = 2e-4
    schedule: str = "linear"
    warmup_steps: int = 0
    epochs: float = 2.0
    steps: int | None = None  # optimizer steps; overrides epochs
    batch_size: int = 1
    accumulation: int = 4
    max_length: int = 256
    max_grad_norm: float | None = 1.0
    seed: int = 42
    dtype: str = "fp32"
    save_every: int = 50
    eval_every: int | None = None  # default: save_every

    def validate(self) -> None:
        for name in ("rank", "batch_size", "accumulation", "save_every"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1 (got {getattr(self, name)})")
        if self.steps is not None and self.steps < 1:
            raise UserError(f"--steps must be at least 1 (got {self.steps})")
        if self.eval_every is not None and self.eval_every < 1:
            raise UserError(f"--eval-every must be at least 1 (got {self.eval_every})")
        if self.rows is not None and self.rows < 2:
            raise UserError(f"--rows must be at least 2 (got {self.rows})")
        if self.epochs <= 0 or self.lr <= 0 or self.alpha <= 0:
            raise UserError("--epochs, --lr and --alpha must be positive")
        if not 0 <= self.dropout < 1:
            raise UserError(f"--dropout must be in [0, 1) (got {self.dropout})")
        if self.max_length < 2:
            raise UserError(f"--max-length must be at least 2 (got {self.max_length})")
        if self.val_size < 0 or self.warmup_steps < 0:
            raise UserError("--val-size and --warmup-steps cannot be negative")
        if self.schedule not in SCHEDULES:
            raise UserError(f"--schedule must be one of {', '.join(SCHEDULES)} (got {self.schedule!r})")
        if self.dtype not in models.DTYPES:
            raise UserError(f"--dtype must be one of {', '.join(models.DTYPES)} (got {self.dtype!r})")

    def recorded(self) -> dict[str, Any]:
        # how often we save and validate changes nothing that is learned
        return {k: v for k, v in asdict(self).items() if k not in ("save_every", "eval_every")}

    def targets(self) -> str | list[str]:
        if self.target_modules == "all-linear":
            return "all-linear"  # peft: every nn.Linear except the output head
        return [t.strip() for t in self.target_modules.split(",") if t.strip()]


# --------------------------------------------------------------------------------------------- data

@dataclass
class Example:
    ids: torch.Tensor  # (T,) int64
    labels: torch.Tensor  # (T,) int64, IGNORE where no loss


@dataclass
class TrainingData:
    train: list[Example]
    val: list[Example]
    mode: str  # "response" (instruction data, prompt masked) or "all" (plain text)
    source: str
    rows: int  # rows (or windows) before the split
    available: int  # rows the source has
    dropped: int  # instruction rows whose prompt filled the whole max_length

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "loss_on": "response tokens" if self.mode == "response" else "all tokens",
                "rows": self.rows, "available_rows": self.available, "dropped_rows": self.dropped,
                "train_examples": len(self.train), "val_examples": len(self.val)}


def instruction_records(source: str, data_dir_=None) -> list[dict] | None:
    """The source's rows as instruction records, or None when it is plain text."""
    if source == "alpaca":
        d = data_dir(data_dir_)
        path = d / BUILTIN["alpaca"][0] if d is not None else None
        if path is not None and path.exists():
            return json.loads(path.read_text(encoding="utf-8"))
        try:
            import datasets
            return list(datasets.load_dataset("tatsu-lab/alpaca", split="train"))
        except Exception as e:  # noqa: BLE001 - any hub failure means the same thing to the user
            raise UserError(f"could not fetch Alpaca from the hub ({type(e).__name__}); pass --data-dir with an "
                            f"offline copy or a local file") from e
    path = Path(source).expanduser()
    if source in BUILTIN or path.suffix not in (".json", ".jsonl") or not path.exists():
        return None
    text = path.read_text(encoding="utf-8")
    try:
        records = ([json.loads(line) for line in text.splitlines() if line.strip()] if path.suffix == ".jsonl"
                   else json.loads(text))
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid {path.suffix[1:]}: {e}") from e
    if isinstance(records, list) and records and all(
            isinstance(r, dict) and "instruction" in r and "output" in r for r in records):
        return records
    return None  # text rows: load_rows reads (and checks) them


def _ids(tokenizer, text: str) -> torch.Tensor:
    return tokenizer(text, return_tensors="pt").input_ids[0]


def instruction_example(tokenizer, row: dict, max_length: int) -> Example | None:
    """Prompt + response (+ eos), the prompt's tokens labelled IGNORE; None if no response token fits."""
    prompt = alpaca_prompt(row)
    n_prompt = len(_ids(tokenizer, prompt))
    ids = _ids(tokenizer, prompt + row["output"])
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is not None:
        ids = torch.cat([ids, torch.tensor([eos])])
    ids = ids[:max_length]
    labels = ids.clone()
    labels[:n_prompt] = IGNORE
    # the first label is never a target (logits at t predict t+1): a response must start at position >= 1
    if (labels[1:] != IGNORE).sum() == 0:
        return None
    return Example(ids, labels)


def load_examples(opts: HealOptions, tokenizer, data_dir_=None) -> TrainingData:
    records = instruction_records(opts.data, data_dir_)
    rng = random.Random(opts.seed)
    if records is not None:
        available = len(records)
        if opts.rows is not None and opts.rows < len(records):
            records = rng.sample(records, opts.rows)
        built = [instruction_example(tokenizer, r, opts.max_length) for r in records]
        examples = [e for e in built if e is not None]
        mode, rows, dropped = "response", len(records), len(built) - len(examples)
    else:
        texts = load_rows(opts.data, data_dir_)
        windows = windows_from_rows(texts, tokenizer, opts.max_length, opts.data,
                                    joiner=JOINER.get(opts.data, "\n\n"))
        examples = [Example(w.clone(), w.clone()) for w in windows.ids]
        mode, rows, available, dropped = "all", len(examples), len(texts), 0
    if len(examples) < 2:
        raise UserError(f"{opts.data}: {len(examples)} usable example(s); healing needs at least 2 "
                        f"(more rows, or a longer --max-length)")
    order = list(range(len(examples)))
    rng.shuffle(order)
    n_val = min(opts.val_size, len(examples) // 5)
    val = [examples[i] for i in order[:n_val]]
    train = [examples[i] for i in order[n_val:]]
    return TrainingData(train, val, mode, opts.data, rows, available, dropped)


def collate(examples: list[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch; padding carries no loss and no attention."""
    width = max(len(e.ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        ids[i, :len(e.ids)], labels[i, :len(e.ids)], mask[i, :len(e.ids)] = e.ids, e.labels, 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


class Stream:
    """Training examples in a seeded order, reshuffled every epoch: micro-batch m is a pure function of m,
    so a resumed run sees exactly the batches the uninterrupted one would."""

    def __init__(self, examples: list[Example], batch_size: int, seed: int):
        self.examples, self.batch_size, self.seed = examples, batch_size, seed
        self._orders: dict[int, list[int]] = {}

    def _order(self, epoch: int) -> list[int]:
        if epoch not in self._orders:
            order = list(range(len(self.examples)))
            random.Random(self.seed * 1000003 + epoch).shuffle(order)
            self._orders = {epoch: order}  # one epoch at a time is all a run needs
        return self._orders[epoch]

    def micro_batch(self, m: int) -> list[Example]:
        n = len(self.examples)
        start = m * self.batch_size
        return [self.examples[self._order(i // n)[i % n]] for i in range(start, start + self.batch_size)]


def token_nll(model: nn.Module, batch: dict[str, torch.Tensor], device) -> tuple[torch.Tensor, int]:
    """Summed next-token NLL over the labelled tokens of a batch, and how many there are."""
    out = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device))
    logits = out.logits[:, :-1].float()
    target = batch["labels"][:, 1:].to(device)
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=IGNORE,
                          reduction="sum")
    return nll, int((target != IGNORE).sum())


@torch.no_grad()
def validation_loss(model: nn.Module, examples: list[Example], pad_id: int, device, batch_size: int) -> float | None:
    if not examples:
        return None
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(examples), batch_size):
        nll, n = token_nll(model, collate(examples[i:i + batch_size], pad_id), device)
        total, count = total + float(nll), count + n
    model.train(was_training)
    return total / max(count, 1)


# ------------------------------------------------------------------------------------------- inputs

def export_run(run: Path, out: Path) -> Path:
    """A run folder's plan applied to its base model, written as a checkpoint (the format `auto` picks)."""
    from .plan import Plan

    plan = Plan.load(run)
    net, tok = plan.load_base()
    return plan.export(net, out, tokenizer=tok)


def input_checkpoint(target: str | Path, scratch: Path) -> Path:
    """The checkpoint folder to heal: the target itself, a run folder's exported `model`, or (when the
    run was not exported) its plan exported into `scratch`."""
    path = Path(target).expanduser()
    if (path / "plan.json").exists():
        if (path / "model" / "config.json").exists():
            return path / "model"
        return export_run(path, scratch / "model")
    if (path / "config.json").exists():
        return path
    resolved = models.resolve(str(target))
    if isinstance(resolved, Path):
        return resolved
    raise UserError(f"{target} is neither a run folder (plan.json) nor a checkpoint folder (config.json)")


def default_out(target: str | Path) -> Path:
    path = Path(target).expanduser()
    if (path / "plan.json").exists():
        return path / "healed"
    return path.with_name(path.name + "-healed")


# ------------------------------------------------------------------------------------------- output

def save_healed(model: nn.Module, source: Path, out: Path, healing: dict[str, Any]) -> Path:
    """Write the merged `model` as `source`'s format: its config (with the healing recorded), modeling code,
    tokenizer and generation config copied, the weights replaced."""
    config = json.loads((source / "config.json").read_text())
    remote = "auto_map" in config
    with atomic.staged_dir(out) as tmp:
        # remote-code checkpoints keep in-memory weight names: their model type has no conversion mapping
        model.save_pretrained(tmp, save_original_format=not remote)
        for f in source.iterdir():
            if f.is_file() and not any(f.match(p) for p in WEIGHT_FILES):
                shutil.copy2(f, tmp / f.name)
        meta = config.get("blockprune")
        config["blockprune"] = {**(meta if isinstance(meta, dict) else {}), "healing": healing}
        dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
        for key in ("dtype", "torch_dtype"):
            if key in config:
                config[key] = dtype
        atomic.write_json(tmp / "config.json", config)
    return out


# ------------------------------------------------------------------------------------------ training

@dataclass
class HealResult:
    out: Path
    checkpoint: Path
    record: dict[str, Any] = field(default_factory=dict)


def _scheduler(opts: HealOptions, optimizer, total: int):
    from transformers import get_scheduler

    name = "constant_with_warmup" if opts.schedule == "constant" else opts.schedule
    return get_scheduler(name, optimizer, num_warmup_steps=opts.warmup_steps, num_training_steps=total)


def _save_adapter(peft_model, optimizer, scheduler, state: dict[str, Any], where: Path) -> None:
    with atomic.staged_dir(where) as tmp:
        peft_model.save_pretrained(tmp)
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "rng": torch.get_rng_state()}, tmp / "trainer_state.pt")
        atomic.write_json(tmp / "state.json", state)


def _load_adapter(peft_model, optimizer, scheduler, where: Path) -> None:
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    result = set_peft_model_state_dict(peft_model, load_file(where / "adapter_model.safetensors"))
    if getattr(result, "unexpected_keys", None):
        raise UserError(f"{where}: the saved adapter does not fit this model ({result.unexpected_keys[:3]})")
    saved = torch.load(where / "trainer_state.pt", weights_only=False)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    torch.set_rng_state(saved["rng"])


def _say(progress: bool, line: str) -> None:
    if progress:
        print(line, file=sys.stderr)


def heal(target: str | Path, out: str | Path | None = None, *, options: HealOptions | None = None,
         data_dir: str | Path | None = None, device: str = "cpu", resume: bool = False, progress: bool = True,
         on_step: Callable[[int, nn.Module], None] | None = None, **option_overrides) -> HealResult:
    """LoRA-fine-tune the pruned model in `target` (a run folder or any exported checkpoint), merge the
    adapter and write `out/model` in the input's checkpoint format. Options are a `HealOptions` or its
    fields as keywords. `on_step(step, peft_model)` is called after every optimizer step (tests use it)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer

    opts = options or HealOptions(**option_overrides)
    opts.validate()
    out = Path(out) if out is not None else default_out(target)
    adapter_dir, state_path = out / "adapter", out / "adapter" / "state.json"
    if resume and not state_path.exists():
        raise UserError(f"nothing to resume in {out} (no adapter/state.json); drop --resume to start a new run")
    if not resume and (state_path.exists() or (out / "model").exists()):
        raise UserError(f"{out} already holds a healing run; pass --resume to continue it or choose another --out")

    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".heal-input.", dir=out))
    try:
        source = input_checkpoint(target, scratch)
        from .export import load as load_checkpoint
        model = load_checkpoint(source, models.DTYPES[opts.dtype], device)
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=True)
        except (OSError, ValueError) as e:
            raise UserError(f"{source} has no tokenizer to read the training data with") from e
        data = load_examples(opts, tokenizer, data_dir)
        pad_id = next(i for i in (getattr(tokenizer, "pad_token_id", None), getattr(tokenizer, "eos_token_id", None), 0)
                      if i is not None)
        loss_on = "response tokens only (prompt tokens masked)" if data.mode == "response" else "all tokens"
        _say(progress, f"heal: {target} on {data.source}: {len(data.train)} train / {len(data.val)} validation "
                       f"examples, loss on {loss_on}")
        if data.source == "alpaca" and opts.rows is None and data.available < PAPER_ROWS:
            _say(progress, f"heal: Alpaca has {data.available} rows here (the paper used {PAPER_ROWS}); using all")

        torch.manual_seed(opts.seed)  # LoRA's A matrices are initialized at random
        try:
            peft_model = get_peft_model(model, LoraConfig(r=opts.rank, lora_alpha=opts.alpha,
                                                          lora_dropout=opts.dropout, target_modules=opts.targets(),
                                                          bias="none", task_type="CAUSAL_LM"))
        except ValueError as e:
            raise UserError(f"--target-modules {opts.target_modules!r}: {e}") from e
        trainable = [p for p in peft_model.parameters() if p.requires_grad]
        steps_per_epoch = len(data.train) / (opts.batch_size * opts.accumulation)
        total = opts.steps or max(1, math.ceil(opts.epochs * steps_per_epoch))
        optimizer = torch.optim.AdamW(trainable, lr=opts.lr, weight_decay=0.0)
        scheduler = _scheduler(opts, optimizer, total)
        identity = {"input": str(Path(target).expanduser().resolve()) if Path(target).expanduser().exists()
                    else str(target), "options": opts.recorded(), "data": data.describe(),
                    "steps": total}

        if resume:
            state = json.loads(state_path.read_text())
            if state["identity"] != identity:
                diff = [k for k in identity if identity[k] != state["identity"].get(k)]
                raise UserError(f"{out} was healed with a different {', '.join(diff)}; it cannot be resumed with "
                                f"these inputs (start a new --out)")
            _load_adapter(peft_model, optimizer, scheduler, adapter_dir)
            _say(progress, f"heal: resuming at step {state['step']} of {total}")
        else:
            state = {"identity": identity, "step": 0, "tokens": 0, "label_tokens": 0, "seconds": 0.0,
                     "history": [], "val": []}
            state["val"].append({"step": 0, "loss": validation_loss(peft_model, data.val, pad_id, device,
                                                                    opts.batch_size)})

        stream = Stream(data.train, opts.batch_size, opts.seed)
        eval_every = opts.eval_every or opts.save_every
        state = train(peft_model, optimizer, scheduler, stream, data.val, state, total, opts, pad_id, device,
                      eval_every, adapter_dir, progress, on_step)

        record = finish(peft_model, source, out, state, data, opts, pad_id, device, trainable_params(peft_model),
                        identity["input"])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return HealResult(out, out / "model", record)


def trainable_params(peft_model) -> int:
    return sum(p.numel() for p in peft_model.parameters() if p.requires_grad)


def train(peft_model, optimizer, scheduler, stream: Stream, val: list[Example], state: dict[str, Any], total: int,
          opts: HealOptions, pad_id: int, device, eval_every: int, adapter_dir: Path, progress: bool,
          on_step: Callable[[int, nn.Module], None] | None) -> dict[str, Any]:
    """Optimizer steps from state["step"] to `total`; each averages the NLL over every labelled token of
    its `accumulation` micro-batches. Checkpoints the adapter every `save_every` steps and at the end."""
    from tqdm.auto import tqdm

    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    peft_model.train()
    bar = tqdm(total=total, initial=state["step"], desc="heal", unit="step", file=sys.stderr, disable=not progress)
    started, tokens_at_start = time.perf_counter(), state["tokens"]
    while state["step"] < total:
        step = state["step"]
        micro = [collate(stream.micro_batch(m), pad_id) for m in range(step * opts.accumulation,
                                                                       (step + 1) * opts.accumulation)]
        n_labels = sum(int((b["labels"][:, 1:] != IGNORE).sum()) for b in micro)
        loss_sum = 0.0
        for batch in micro:
            nll, _ = token_nll(peft_model, batch, device)
            (nll / max(n_labels, 1)).backward()
            loss_sum += float(nll.detach())
        if opts.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(trainable, opts.max_grad_norm)
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

        elapsed = time.perf_counter() - started
        state["step"] = step + 1
        state["tokens"] += sum(int(b["attention_mask"].sum()) for b in micro)
        state["label_tokens"] += n_labels
        state["history"].append({"step": step + 1, "loss": loss_sum / max(n_labels, 1), "lr": lr})
        rate = (state["tokens"] - tokens_at_start) / max(elapsed, 1e-9)
        bar.set_postfix(loss=f"{state['history'][-1]['loss']:.4f}", tok_s=f"{rate:.0f}", refresh=False)
        bar.update(1)
        if state["step"] % eval_every == 0 or state["step"] == total:
            state["val"].append({"step": state["step"], "loss": validation_loss(peft_model, val, pad_id, device,
                                                                                opts.batch_size)})
            bar.write(f"heal: step {state['step']}: validation loss {state['val'][-1]['loss']}", file=sys.stderr)
        if state["step"] % opts.save_every == 0 or state["step"] == total:
            state["seconds"] += time.perf_counter() - started
            started, tokens_at_start = time.perf_counter(), state["tokens"]
            _save_adapter(peft_model, optimizer, scheduler, state, adapter_dir)
        if on_step is not None:
            on_step(state["step"], peft_model)
    bar.close()
    return state


def finish(peft_model, source: Path, out: Path, state: dict[str, Any], data: TrainingData, opts: HealOptions,
           pad_id: int, device, lora_params: int, target: str) -> dict[str, Any]:
    """Merge the adapter, write the healed checkpoint, and check that it reproduces the adapter-wrapped model."""
    import peft

    from .export import load as load_checkpoint

    probe = collate([(data.val or data.train)[0]], pad_id)
    peft_model.eval()
    with torch.no_grad():
        want = peft_model(input_ids=probe["input_ids"].to(device)).logits
        merged = peft_model.merge_and_unload()
        merge_diff = float((merged(input_ids=probe["input_ids"].to(device)).logits - want).abs().max())
    last = state["history"][-min(len(state["history"]), 10):]
    healing = {"options": opts.recorded(), "data": data.describe(), "steps": state["step"],
               "tokens": state["tokens"], "label_tokens": state["label_tokens"], "seconds": round(state["seconds"], 1),
               "lora_params": lora_params, "final_train_loss": sum(h["loss"] for h in last) / max(len(last), 1),
               "val_loss_before": state["val"][0]["loss"], "val_loss_after": state["val"][-1]["loss"],
               "merge_max_abs_logit_diff": merge_diff, "input": target, "peft": peft.__version__}
    checkpoint = save_healed(merged, source, out / "model", healing)
    with torch.no_grad():
        healed = load_checkpoint(checkpoint, next(merged.parameters()).dtype, device)
        saved_diff = float((healed(input_ids=probe["input_ids"].to(device)).logits - want).abs().max())
    scale = float(want.abs().max())
    if saved_diff > 1e-4 * max(1.0, scale) and next(merged.parameters()).dtype == torch.float32:
        raise UserError(f"the healed checkpoint in {checkpoint} does not reproduce the fine-tuned model (logits "
                        f"differ by {saved_diff:.3g}); this is a bug, please report it")
    record = {**healing, "saved_max_abs_logit_diff": saved_diff, "checkpoint": str(checkpoint),
              "history": state["history"], "val": state["val"]}
    atomic.write_json(out / "heal.json", record)
    return record

"""Training examples: instruction rows (Alpaca, or .json/.jsonl rows with instruction/input/output) are
trained on the response only, their prompt tokens labelled IGNORE; plain text (.txt, {"text"} rows,
wikitext2, ptb) is cut into `max_length` windows and every token carries loss. The files are read by
`blockprune.data`, so a missing, malformed or non-UTF-8 file fails as it does for calibration."""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import torch

from ..data import JOINER, alpaca_prompt, instruction_rows, load_rows, windows_from_rows
from ..errors import UserError
from .options import HealOptions

IGNORE = -100  # the label of a token that carries no loss (torch's cross_entropy ignore_index)


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
    records = instruction_rows(opts.data, data_dir_)
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

"""Text sources (Alpaca, WikiText-2, PTB, local files) turned into fixed-length token windows.

Calibration as the BlockPruner paper builds it: a seeded sample of rows, joined with blank lines,
tokenized once, cut into non-overlapping windows (the remainder is dropped). Offline copies are read
from a data folder (`--data-dir` or $BLOCKPRUNE_DATA) laid out like this project's shared data:
`calibration/alpaca_5000.json`, `perplexity/wikitext2_raw_test.jsonl`, `perplexity/ptb_test.txt`."""
from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import UserError

# The Stanford Alpaca prompt format (tatsu-lab/stanford_alpaca, train.py), followed by the response.
ALPACA_WITH_INPUT = ("Below is an instruction that describes a task, paired with an input that provides further context. "
                     "Write a response that appropriately completes the request.\n\n"
                     "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n")
ALPACA_NO_INPUT = ("Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
                   "### Instruction:\n{instruction}\n\n### Response:\n")

# name -> (file inside the data folder, hub dataset, hub config, hub split, hub text field)
BUILTIN = {
    "alpaca": ("calibration/alpaca_5000.json", "tatsu-lab/alpaca", None, "train", None),
    "wikitext2": ("perplexity/wikitext2_raw_test.jsonl", "wikitext", "wikitext-2-raw-v1", "test", "text"),
    "ptb": ("perplexity/ptb_test.txt", "ptb_text_only", "penn_treebank", "test", "sentence"),
}
# How rows are joined before tokenizing: blank lines, except PTB's sentences, which SparseGPT,
# SliceGPT and BlockPruner join with single spaces.
JOINER = {"ptb": " "}


def alpaca_prompt(row: dict) -> str:
    template = ALPACA_WITH_INPUT if row.get("input") else ALPACA_NO_INPUT
    return template.format(instruction=row["instruction"], input=row.get("input", ""))


def alpaca_text(row: dict) -> str:
    return alpaca_prompt(row) + row["output"]


def data_dir(explicit: str | os.PathLike | None = None) -> Path | None:
    d = explicit or os.environ.get("BLOCKPRUNE_DATA")
    if d is None:
        return None
    d = Path(d).expanduser()
    if not d.is_dir():
        raise UserError(f"data folder {d} does not exist (from --data-dir or $BLOCKPRUNE_DATA)")
    return d


def recorded_path(path: str | os.PathLike) -> str:
    """A local path as a results record names it: a relative path as given, an absolute one relative to
    the working directory (where relative paths are read from). A record then names no folder of the
    machine it was written on, and still says where its input was, as `--data-dir ../shared/data` does."""
    return os.path.relpath(path, Path.cwd()) if Path(path).is_absolute() else str(path)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text (byte {e.start}: {e.reason}); convert it to UTF-8 "
                        f"(e.g. iconv -t UTF-8) or give another file") from e
    except OSError as e:  # a folder, or no permission
        raise UserError(f"cannot read {path}: {e.strerror or e}; give a readable .txt, .json or .jsonl file") from e


def _records_from_file(path: Path) -> list:
    """A .json file's list of rows, or a .jsonl file's rows (one a line), as parsed."""
    text = _read_text(path)
    try:
        if path.suffix == ".jsonl":
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            records = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid {path.suffix[1:]} text: {e}") from e
    if not isinstance(records, list):
        raise UserError(f"{path}: expected a list of rows")
    return records


def _is_instruction(row) -> bool:
    return isinstance(row, dict) and "instruction" in row and "output" in row


def _rows_from_file(path: Path) -> list[str]:
    """A local file as text rows: .txt lines, or .json/.jsonl rows (Alpaca fields or a "text" field)."""
    if path.suffix == ".txt":
        return [_read_text(path)]  # a text file is used whole, as written
    if path.suffix not in (".json", ".jsonl"):
        raise UserError(f"{path}: unsupported file type; give a .txt, .json or .jsonl file")
    rows = []
    for r in _records_from_file(path):
        if isinstance(r, str):
            rows.append(r)
        elif _is_instruction(r):
            rows.append(alpaca_text(r))
        elif isinstance(r, dict) and isinstance(r.get("text"), str):
            rows.append(r["text"])
        else:
            raise UserError(f"{path}: rows must be strings, {{instruction, input, output}} or {{text}} objects")
    return rows


def _hub_rows(name: str) -> list:
    _, hub, config, split, _ = BUILTIN[name]
    try:
        import datasets
        return list(datasets.load_dataset(hub, config, split=split))
    except Exception as e:  # noqa: BLE001 - any hub failure means the same thing to the user
        raise UserError(f"could not fetch '{name}' from the hub ({type(e).__name__}); "
                        f"pass --data-dir with an offline copy or a local file path") from e


def _rows_from_hub(name: str) -> list[str]:
    rows = _hub_rows(name)
    if name == "alpaca":
        return [alpaca_text(r) for r in rows]
    return [r[BUILTIN[name][4]] for r in rows]


def load_rows(source: str, data_dir_: str | os.PathLike | None = None) -> list[str]:
    """Rows of text for a source: a built-in name (alpaca, wikitext2, ptb) or a local file path."""
    if source in BUILTIN:
        d = data_dir(data_dir_)
        if d is not None and (d / BUILTIN[source][0]).exists():
            local = d / BUILTIN[source][0]
            # a built-in set's .txt copy holds one row a line (PTB), joined like the hub's rows
            return _read_text(local).splitlines() if local.suffix == ".txt" else _rows_from_file(local)
        return _rows_from_hub(source)
    path = Path(source).expanduser()
    if not path.exists():
        raise UserError(f"dataset {source!r} is neither a file nor one of: {', '.join(BUILTIN)}")
    return _rows_from_file(path)


def instruction_rows(source: str, data_dir_: str | os.PathLike | None = None) -> list[dict] | None:
    """The {instruction, input, output} records of Alpaca or of a local .json/.jsonl file made only of them
    (for training on the response alone), or None when the source is text (`load_rows` reads those)."""
    if source == "alpaca":
        d = data_dir(data_dir_)
        if d is not None and (d / BUILTIN[source][0]).exists():
            return _records_from_file(d / BUILTIN[source][0])
        return _hub_rows(source)
    path = Path(source).expanduser()
    if source in BUILTIN or path.suffix not in (".json", ".jsonl") or not path.exists():
        return None
    records = _records_from_file(path)
    return records if records and all(_is_instruction(r) for r in records) else None


@dataclass(frozen=True)
class Windows:
    """Token windows of one text, and where they came from."""

    ids: torch.Tensor  # (num_windows, seqlen) int64
    source: str
    rows: int  # rows of text used
    tokens: int  # tokens in the joined text, before cutting
    seed: int | None

    @property
    def seqlen(self) -> int:
        return self.ids.shape[1]

    def __len__(self) -> int:
        return self.ids.shape[0]

    def sha256(self) -> str:
        return hashlib.sha256(self.ids.numpy().tobytes()).hexdigest()

    def describe(self) -> dict:
        return {"source": self.source, "rows": self.rows, "seqlen": self.seqlen, "windows": len(self),
                "tokens": len(self) * self.seqlen, "text_tokens": self.tokens, "seed": self.seed,
                "sha256": self.sha256()}


def sample_indices(n: int, nsamples: int, seed: int | None) -> list[int]:
    """Which of `n` rows a seeded sample of `nsamples` takes, in sample order (all, in order, when
    `nsamples` >= n). `random.sample` picks the same positions from any sequence of length n, so this is
    the calibration sample whether rows or indices are sampled."""
    if nsamples >= n:
        return list(range(n))
    return random.Random(seed).sample(range(n), nsamples)


def heldout_rows(rows: list[str], calibration_nsamples: int, nsamples: int, seed: int | None) -> list[str]:
    """Up to `nsamples` of `rows` that a calibration sample of `calibration_nsamples` with `seed` leaves out."""
    taken = set(sample_indices(len(rows), calibration_nsamples, seed))
    texts = {rows[i] for i in taken}
    order = random.Random(f"heldout-{seed}").sample(range(len(rows)), len(rows))
    return [rows[i] for i in order if i not in taken and rows[i] not in texts][:nsamples]


def heldout_windows(source: str, tokenizer, seqlen: int, *, calibration_nsamples: int, nsamples: int,
                    seed: int | None = 42, data_dir_: str | os.PathLike | None = None) -> Windows:
    """Windows from `nsamples` rows of a row-sampled source (Alpaca, .json, .jsonl) that the calibration
    sample (`calibration_nsamples` rows with `seed`) did not take: neither a calibration row's index nor
    its text (Alpaca repeats a few texts). The rows are the first ones of a fixed seeded order of the whole
    source that are not calibration rows, so the validation set is the same for every calibration size
    but for the few rows a larger calibration sample takes."""
    if source in ("wikitext2", "ptb") or Path(source).suffix == ".txt":
        raise UserError(f"{source} is calibrated on whole, in order: it has no rows to hold out; give "
                        f"--validation another source or none")
    picked = heldout_rows(load_rows(source, data_dir_), calibration_nsamples, nsamples, seed)
    if len(picked) < nsamples:
        raise UserError(f"{source}: {len(picked)} rows are left after the {calibration_nsamples} calibration rows, "
                        f"fewer than --validation-nsamples {nsamples}; lower --validation-nsamples or --nsamples")
    try:
        return windows_from_rows(picked, tokenizer, seqlen, f"{source} (held out)", seed=seed,
                                 joiner=JOINER.get(source, "\n\n"))
    except UserError as e:
        raise UserError(f"validation: {e} (--validation-nsamples {nsamples})") from e


def windows_from_rows(rows: list[str], tokenizer, seqlen: int, source: str, *, nsamples: int | None = None,
                      seed: int | None = None, max_windows: int | None = None, joiner: str = "\n\n") -> Windows:
    """Sample rows (seeded), join with blank lines, tokenize once, cut into non-overlapping windows."""
    if seqlen < 2:
        raise UserError(f"--seqlen must be at least 2 (got {seqlen})")
    if nsamples is not None:
        if nsamples < 1:
            raise UserError(f"--nsamples must be at least 1 (got {nsamples})")
        rows = [rows[i] for i in sample_indices(len(rows), nsamples, seed)]
    text = joiner.join(rows)
    if not text.strip():
        raise UserError(f"{source}: the text is empty")
    ids = tokenizer(text, return_tensors="pt").input_ids[0]
    n = ids.numel() // seqlen
    if n == 0:
        raise UserError(f"{source}: {ids.numel()} tokens is fewer than one window of {seqlen}; "
                        f"use more rows (--nsamples) or a shorter --seqlen")
    if max_windows is not None:
        n = min(n, max_windows)
    return Windows(ids[: n * seqlen].reshape(n, seqlen).clone(), source, len(rows), ids.numel(), seed)


def load_windows(source: str, tokenizer, seqlen: int, *, nsamples: int | None = None, seed: int | None = 42,
                 data_dir_: str | os.PathLike | None = None, max_windows: int | None = None) -> Windows:
    rows = load_rows(source, data_dir_)
    if source in ("wikitext2", "ptb") or Path(source).suffix == ".txt":
        nsamples, seed = None, None  # whole-text sources are used in order, as the perplexity literature does
    return windows_from_rows(rows, tokenizer, seqlen, source, nsamples=nsamples, seed=seed,
                             max_windows=max_windows, joiner=JOINER.get(source, "\n\n"))

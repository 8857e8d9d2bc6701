"""Test-set perplexity as SparseGPT, SliceGPT and BlockPruner compute it.

The test rows joined as `blockprune.data` joins them (WikiText-2 with blank lines, PTB sentences with
spaces), tokenized once, cut into non-overlapping windows (2048 tokens by default, remainder dropped);
perplexity is exp of the mean over windows of each window's mean next-token NLL."""
from __future__ import annotations

import os
import sys
from typing import Any

from ..data import load_windows
from ..errors import UserError
from ..window_nll import perplexity
from ..view import BlockView

PPL_TASKS = ("wikitext2", "ptb")


def test_perplexity(model, tokenizer, source: str, *, seqlen: int = 2048, max_windows: int | None = None,
                    data_dir: str | os.PathLike | None = None, progress: bool = True) -> dict[str, Any]:
    max_len = getattr(model.config, "max_position_embeddings", None)
    if max_len is not None and seqlen > max_len:
        raise UserError(f"--seqlen {seqlen} is above the model's context of {max_len} tokens")
    windows = load_windows(source, tokenizer, seqlen, data_dir_=data_dir, max_windows=max_windows)
    view = BlockView(model)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(windows), desc=f"{source} perplexity", unit="win", file=sys.stderr)
    try:
        ppl = perplexity(view, windows, progress=bar.update if bar else None)
    finally:
        if bar:
            bar.close()
    d = windows.describe()
    return {"ppl": ppl, "seqlen": seqlen, "windows": len(windows), "text_tokens": d["text_tokens"],
            "sha256": d["sha256"]}

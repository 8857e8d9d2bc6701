"""Reading a checkpoint back, whichever format wrote it."""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import UserError


def load(path: str | Path, dtype: torch.dtype = torch.float32, device: str = "cpu"):
    """Load a pruned (or any) checkpoint, with its own modeling code where it ships one.

    Refuses a checkpoint whose weights do not all land in the model: transformers would otherwise
    leave the missing ones randomly initialized and only log it."""
    from transformers import AutoModelForCausalLM

    path = Path(path)
    if not (path / "config.json").exists():
        raise UserError(f"{path} is not a checkpoint folder (no config.json)")
    model, info = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, trust_remote_code=True,
                                                       output_loading_info=True)
    wrong = {k: sorted(info.get(k) or ())[:5] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    wrong = {k: v for k, v in wrong.items() if v}
    if wrong:
        raise UserError(f"{path}: the checkpoint's weights do not match its model ({wrong}); it is damaged or "
                        f"was written by an incompatible exporter")
    return model.to(device).eval()

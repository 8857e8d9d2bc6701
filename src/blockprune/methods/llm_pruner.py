"""LLM-Pruner (Ma et al., 2023), block-wise: heads (with their KV group) and MLP channels by first-order
Taylor importance from calibration gradients, summed over each coupled group; its vector-wise and
second-order variants; see blockprune/width/taylor.py and docs/width-baselines.md. Options as llm-bip's
(LLM-Pruner's own experiments leave the first 4 and last 2 of 32 layers dense: --layers 4:-2)."""
from __future__ import annotations

from .llm_bip import WidthMethod
from .registry import register

register(WidthMethod("llm-pruner", "llm-pruner", "LLM-Pruner width pruning: element-wise first-order Taylor "
                     "importance from calibration gradients, summed over coupled groups"))
register(WidthMethod("llm-pruner-vector", "llm-pruner-vector", "LLM-Pruner, vector-wise Taylor importance "
                     "(|sum of W*g| per channel of each projection)"))
register(WidthMethod("llm-pruner-element2", "llm-pruner-element2", "LLM-Pruner, element-wise Taylor importance "
                     "to second order (W*g - W*F*W/2, F the diagonal Fisher)"))

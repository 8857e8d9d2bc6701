"""FLAP (An et al., 2024): heads and MLP channels by the standardised fluctuation metric, the adaptive
global structure under --allocation global, and bias compensation; see blockprune/width/flap.py,
blockprune/width/bias.py and docs/width-baselines.md. Options as llm-bip's."""
from __future__ import annotations

from .llm_bip import WidthMethod
from .registry import register

register(WidthMethod("flap", "flap", "FLAP width pruning: fluctuation metric, standardised per layer, with bias "
                     "compensation (--allocation global: FLAP's adaptive structure; Llama only)"))

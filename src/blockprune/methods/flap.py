"""FLAP (An et al., 2024): heads and MLP channels by the standardised fluctuation metric, the adaptive
global structure under --allocation global, and bias compensation; see blockprune/width/flap.py,
blockprune/width/bias.py and docs/width-baselines.md. Options as llm-bip's. `flap-nobias`: the same
units without the compensation (the ablation FLAP's claim rests on)."""
from __future__ import annotations

from .llm_bip import WidthMethod
from .registry import register

register(WidthMethod("flap", "flap", "FLAP width pruning: fluctuation metric, standardised per layer, with bias "
                     "compensation (--allocation global: FLAP's adaptive structure; Llama only)"))
register(WidthMethod("flap-nobias", "flap-nobias", "FLAP without bias compensation: the units flap selects, "
                     "no biases added (its ablation; its removal exceeds the target by the biases flap adds)"))

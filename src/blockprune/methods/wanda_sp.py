"""Wanda-sp (structured Wanda, FLAP's repository): heads and MLP channels by mean |W| times the input
norm; see blockprune/width/wanda_sp.py and docs/width-baselines.md. Options as llm-bip's."""
from __future__ import annotations

from .llm_bip import WidthMethod
from .registry import register

register(WidthMethod("wanda-sp", "wanda-sp", "Wanda-sp width pruning: heads and MLP channels by mean |W| x input "
                     "activation norm (FLAP's repository; --allocation, --gqa, --layers)"))

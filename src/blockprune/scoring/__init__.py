"""Scoring: how a search rates candidate removals. One `Scorer` protocol (base.py), one registry and factory
(registry.py), one module per scorer, each registering itself:

- plain.py: a full forward pass per candidate (the reference every faster scorer must match)
- incremental.py: exact, from cached block-boundary hidden states
- racing.py: incremental, dropping clear losers before every window has run
- twoprecision.py: `--scorer fast`, two-precision racing: racing in bf16, near-ties decided in the search's
  precision
- local.py: Block Influence and Relative Magnitude; js.py: JS divergence from the dense model
- distributed.py: any scorer split across torchrun processes

A new scorer or metric is one module here that calls `register(ScorerEntry(...))`: every module of this package is
imported below, so the CLI offers it (`--scorer` or `--metric`) with no other edit."""
from __future__ import annotations

from ..registry import import_all
from .base import Progress, Scored, Scorer
from .registry import (PERPLEXITY, SCORERS, ScorerEntry, get, make_scorer, metrics, perplexity_scorers, register,
                       true_ppl_steps, unregister)

# the built-ins first, in the order --scorer and --metric list them; then any other module of this package
import_all(__name__, __path__, first=("plain", "incremental", "racing", "twoprecision", "local", "js"))

__all__ = ["PERPLEXITY", "SCORERS", "Progress", "Scored", "Scorer", "ScorerEntry", "get", "make_scorer", "metrics",
           "perplexity_scorers", "register", "true_ppl_steps", "unregister"]

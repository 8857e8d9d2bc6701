"""Relative Magnitude (the baseline of ShortGPT's paper): ||f(x)|| / ||x + f(x)|| of each layer's
non-residual part, averaged over calibration tokens on the dense model; the lowest layers go at once."""
from __future__ import annotations

from .registry import register
from .shortgpt import LayerMetricOneShot

register(LayerMetricOneShot("relative-magnitude", "rm",
                            "remove the layers of lowest Relative Magnitude ||f(x)||/||x+f(x)||, one shot"))

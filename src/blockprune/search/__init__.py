"""Searches: given a scorer, decide which units to remove. They change the mask, never the model."""
from .greedy import Unit, greedy, units

__all__ = ["Unit", "greedy", "units"]

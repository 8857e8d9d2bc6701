"""Searches: given a scorer, decide which units to remove. They change the mask, never the model."""
from .greedy import Unit, candidate_units, greedy

__all__ = ["Unit", "candidate_units", "greedy"]

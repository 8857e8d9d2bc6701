"""Counts in words, for what blockprune prints: "1 window", "8 windows"."""
from __future__ import annotations


def count(n: int, noun: str, plural: str | None = None) -> str:
    """`n` and `noun`, the noun in the plural unless n is 1 (`plural` for an irregular one)."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"

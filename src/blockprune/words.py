"""Things blockprune prints, in words: counts ("1 window", "8 windows"), what differs between a saved
state and the run that would resume it."""
from __future__ import annotations

from typing import Any


def count(n: int, noun: str, plural: str | None = None) -> str:
    """`n` and `noun`, the noun in the plural unless n is 1 (`plural` for an irregular one)."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


#: how a part of a saved state's identity that is not a dict of options is named when it differs
_OTHER = {"method": "another method", "model": "another model (its weights differ)",
          "calibration": "other calibration data", "validation": "other validation data",
          "input": "another input checkpoint", "data": "other training data", "steps": "another number of steps"}


def differences(saved: dict[str, Any], given: dict[str, Any]) -> str:
    """What differs between a saved state's identity and this run's: "different options: --nsamples 8
    (now 16), --block-type mix (now mlp)" for a dict of options, each named with both values, and the
    other parts by what they are ("another model (its weights differ)")."""
    parts, options = [], []
    for key in given:
        old, new = saved.get(key), given[key]
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            names = [k for k in dict.fromkeys([*old, *new]) if old.get(k) != new.get(k)]
            options += [f"--{k.replace('_', '-')} {_shown(old.get(k))} (now {_shown(new.get(k))})" for k in names]
        else:
            parts.append(_OTHER.get(key, f"another {key}"))
    if options:
        parts.append("different options: " + ", ".join(options))
    return " and ".join(parts) or "other inputs"


def _shown(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value)) or "none"
    return str(value)

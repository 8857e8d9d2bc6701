"""What machine a measurement was taken on, recorded beside every timing: the CPU model and the flags that
change speed (bf16 and vector units), cores and threads, accelerator, library versions, and the load.

Each session may get another CPU (AVX2-only, AVX512-BF16 and AMX machines have all been seen), and
figures taken on different machines must never be compared or overwrite each other: `tag()` is a short
name for a machine's results file, `describe()` the full record."""
from __future__ import annotations

import os
import platform
import re
from functools import lru_cache
from typing import Any

#: CPU flags that decide how fast the forward passes run
SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni", "fma")


@lru_cache(maxsize=1)
def cpu() -> dict[str, Any]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return {"model": model, "flags": [f for f in SPEED_FLAGS if f in flags], "cores": os.cpu_count()}


def describe() -> dict[str, Any]:
    """The machine now: CPU, threads torch uses, accelerator, versions, load average (1, 5, 15 min)."""
    import torch
    import transformers

    record = {"cpu": cpu(), "torch_threads": torch.get_num_threads(),
              "torch": torch.__version__, "transformers": transformers.__version__,
              "python": platform.python_version(), "load_average": [round(x, 2) for x in os.getloadavg()]}
    if torch.cuda.is_available():
        record["gpu"] = torch.cuda.get_device_name(0)
    return record


def tag() -> str:
    """A file-name-safe name of this kind of machine, e.g. `amd-epyc-avx2` or `intel-xeon-amx`."""
    c = cpu()
    words = re.sub(r"\(.*?\)|processor|cpu|@.*|\d+-core", " ", c["model"].lower())
    name = "-".join(w for w in re.split(r"[^a-z0-9]+", words) if w)[:40] or platform.machine()
    best = next((f for f in ("amx_bf16", "avx512_bf16", "avx512f", "avx2") if f in c["flags"]), "base")
    return f"{name}-{best.replace('_', '')}"

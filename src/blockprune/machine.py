"""What machine a measurement was taken on, recorded beside every timing: the CPU model and the flags that
change speed (bf16 and vector units), cores and threads, accelerator, library versions, and the load.

Each session may get another CPU (AVX2-only, AVX512-BF16 and AMX machines have all been seen), and
figures taken on different machines must never be compared or overwrite each other: `tag()` is a short
name for a machine's results file (`results_file()`), `describe()` the full record, `summary()` that record
in the one line a table of its figures prints, `table_lines()` which machines a table's rows came from;
`Phase`, the wall and CPU seconds and peak resident memory of what runs inside it (bench/scale,
bench/width/scoring_cost)."""
from __future__ import annotations

import gc
import json
import os
import platform
import re
import resource
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

from .words import count

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


def results_file(folder: str | os.PathLike, suffix: str = ".json") -> Path:
    """This kind of machine's own results file in `folder`, `folder/<tag><suffix>`: a run on another kind of
    machine writes beside it instead of over it."""
    return Path(folder) / f"{tag()}{suffix}"


def write_results(folder: str | os.PathLike, record: dict[str, Any]) -> Path:
    """Write `record` as this kind of machine's results file in `folder` (see `results_file`); its path."""
    path = results_file(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def summary(record: dict[str, Any] | str | None, load: bool = True) -> str:
    """A `describe()` record in one line, printed with the figures measured on that machine (`load=False`:
    the kind of machine alone, without the load it had then). Results files older than these records hold
    a free-text line or nothing: said as such, never guessed."""
    if not isinstance(record, dict):
        return f"{record} (a free-text record: no CPU model)" if record else "machine not recorded"
    c = record["cpu"]
    line = (f"{c['model']} ({', '.join(c['flags']) or 'no speed flags'}), {count(c['cores'], 'core')}, "
            f"{count(record['torch_threads'], 'torch thread')}, torch {record['torch']}, "
            f"transformers {record['transformers']}")
    line += f", load average {'/'.join(f'{x:g}' for x in record['load_average'])}" if load else ""
    return line + (f", GPU {record['gpu']}" if record.get("gpu") else "")


def folder_records(folder: str | os.PathLike) -> list[dict[str, Any] | None]:
    """The machine records behind a folder's figures: each search invocation's (compare.json), each run
    part's (timings.json) and each evaluation part's (eval.json). A part with none (steps before the first
    record, figures no record lists, a file written before these records) gives None: never guessed."""
    def read(name: str) -> dict[str, Any] | None:
        path = Path(folder) / name
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None

    records: list[dict[str, Any] | None] = []
    run, timings, ev = read("compare.json"), read("timings.json"), read("eval.json")
    if run is not None:
        records += run.get("machines") or [None]
    if timings is not None:
        parts = timings.get("machines", [])
        if timings.get("steps") and (not parts or parts[0]["from_step"] > 1):
            records.append(None)
        records += parts
    if ev is not None:
        parts = ev.get("machines", [])
        figures = {*ev.get("perplexity", {}), *ev.get("zero_shot", {}), *(["cost"] if ev.get("cost") else [])}
        if figures - {f for m in parts for f in m["measured"]}:
            records.append(None)
        records += parts
    return records


def table_lines(rows: Mapping[str, Sequence[dict[str, Any] | str | None]]) -> list[str]:
    """Which machines a table's rows were measured on: `rows` maps each row's label to the machine records
    behind its figures (None for a part with no record). One line per kind of machine, `Machine: <summary
    without load>: <rows>`, in the order first seen; a row measured in parts on several machines is named on
    each line, and a row with no record at all on `Machine: not recorded: <rows>`."""
    by_machine: dict[str, list[str]] = {}
    for label, records in rows.items():
        for line in dict.fromkeys("not recorded" if r is None else summary(r, load=False) for r in records or [None]):
            by_machine.setdefault(line, []).append(label)
    return [f"Machine: {line}: {', '.join(labels)}" for line, labels in by_machine.items()]


# -- memory and time of one phase of a process ----------------------------------------------------------

def rss() -> int:
    return _status("VmRSS")


def _status(key: str) -> int:
    with open("/proc/self/status", encoding="utf-8") as f:
        return int(re.search(rf"{key}:\s+(\d+)", f.read()).group(1)) * 1024


def reset_peak() -> bool:
    """Restart the peak RSS (VmHWM) from the current RSS; False where the kernel does not allow it (then
    each phase's peak is the process's so far)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="utf-8") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak() -> int:
    try:
        return _status("VmHWM")
    except (OSError, AttributeError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Phase:
    """Wall and CPU seconds and the peak RSS (bytes; `reset`: whether it is this phase's own, else the
    process's so far) of what runs inside it."""

    def __enter__(self) -> "Phase":
        gc.collect()
        self.reset = reset_peak()
        self.rss_before = rss()
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu
        self.peak = peak()

    def record(self, **more: Any) -> dict[str, Any]:
        return {"wall": round(self.wall, 2), "cpu": round(self.cpu, 2), "peak_rss": self.peak,
                "rss_before": self.rss_before, "peak_reset": self.reset, **more}

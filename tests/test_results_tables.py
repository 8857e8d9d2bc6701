"""Every table in bench/RESULTS.md is listed here with the committed command that prints it (issue 34: none is
made by hand); the cheap printers (they only read committed results files) are run and must print the table as
RESULTS holds it, and tables a command writes to a committed file must equal that file. A printer too slow
to run here (kind "run, slow": minutes of computation on committed files) is only checked to exist. Bold
marks (`**`) added in RESULTS to point at a figure are presentation and ignored; every other character must
match. A printer's `Machine: ...` lines (which machines the rows came from, `blockprune.machine.table_lines`)
must stand in the table's section as printed."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "RESULTS.md"

#: (section heading, the table's header row starts with, how it is made): ("run", command) prints it,
#: ("run, slow", command) prints it in minutes (not run here), ("file", path) is a committed file a
#: benchmark's command wrote
TABLES = [
    ("Dense SmolLM2 evaluation", "| figure | full set |",
     ("run", "bench/eval/results_md.py bench/eval/dense/results.json")),
    ("Inference", "| model | params | checkpoint |",
     ("run", "bench/inference/run.py --show bench/inference/results/2026-11-23-cpu-unrecorded.json")),
    ("llama.cpp (issue 32)", "| model | removed | ratio | outtype |",
     ("run", "bench/gguf/run.py --show bench/gguf/results/amd-epyc-avx2.json")),
    ("llama.cpp (issue 32)", "| model | transformers fp32 |",
     ("run", "bench/gguf/run.py --show bench/gguf/results/amd-epyc-avx2.json")),
    ("Width pruning", "| allocation / score |",
     ("run", "bench/width/summary_md.py")),
    ("Width pruning", "| model | piqa |", ("run", "bench/width/zero_shot_md.py")),
    ("Width against depth at 20% (issue 33): FLAP keeps the most; LLM-BIP does not beat it", "| Method | Kind |",
     ("run", "bench/width/table.py bench/width/smollm2-r20-paper")),
    ("Width against depth at 10%, quick subset (issue 33): every width method but magnitude ahead of every depth "
     "row", "| Method | Kind |",
     ("run", "bench/width/table.py bench/width/smollm2-r10-paper bench/compare/smollm2-r10-paper-quick")),
    ("Width methods under the width papers' protocol (issue 33): FLAP leads again, Wanda-sp recovers", "| Method | Kind |",
     ("run", "bench/width/table.py bench/width/smollm2-r20-width")),
    ("Scoring cost on an AVX2-only CPU (2026-12-07)", "| method | process s |",
     ("run", "bench/width/scoring_cost.py --show bench/width/scoring-cost/amd-epyc-avx2.json")),
    ("Scoring cost on a CPU with native bf16 (2026-12-07): every width method", "| method | process s |",
     ("run", "bench/width/scoring_cost.py --show bench/width/scoring-cost/amd-epyc-avx512bf16.json")),
    ("Method comparison", "| Method | Ratio | Calib. PPL | WikiText-2 PPL |",
     ("run", "bench/compare/results_md.py bench/compare/smollm2-r20")),
    ("Method comparison at the paper's calibration (issue 19, item 3)", "| Method | Ratio | Calib. PPL | Validation",
     ("run", "bench/compare/results_md.py bench/compare/smollm2-r20-paper "
             "shortgpt,relative-magnitude,layer-ppl,blockpruner-oneshot,blockpruner,blockpruner-refined")),
    ("Block searches against layer-ppl (issue 30): the joint search comes closest; none beats layer-ppl on both "
     "held-out texts", "| Method | Ratio | Calib. PPL | Validation",
     ("run", "bench/compare/results_md.py bench/compare/smollm2-r20-paper shortgpt,relative-magnitude,layer-ppl,blockpruner-oneshot,blockpruner,blockpruner-refined,blockpruner-joint,blockpruner-evo")),
    ("Block searches against layer-ppl (issue 30): the joint search comes closest; none beats layer-ppl on both "
     "held-out texts", "| Method | Status |",
     ("run", "bench/compare/paths.py bench/compare/smollm2-r20-paper shortgpt,relative-magnitude,layer-ppl,blockpruner-oneshot,blockpruner,blockpruner-refined,blockpruner-joint,blockpruner-evo --no-figure")),
    ("At `layer-ppl`'s size (18.42%)", "| Method | Ratio | Calib. PPL | Validation",
     ("run", "bench/compare/at_ratio.py --table bench/compare/smollm2-r20-paper bench/compare/smollm2-at-layer-ppl-size "
             "layer-ppl blockpruner-joint")),
    ("At 10%", "| Method | Ratio | Calib. PPL | Validation",
     ("run", "bench/compare/results_md.py bench/compare/smollm2-r10-paper layer-ppl,blockpruner-joint,blockpruner")),
    ("At 30%", "| Method | Ratio | Calib. PPL | Validation",
     ("run", "bench/compare/results_md.py bench/compare/smollm2-r30-paper layer-ppl,blockpruner-joint")),
    ("Healing", "| model | ratio | WikiText-2 ppl |", ("run", "bench/heal/results_md.py bench/heal/smollm2-bp20")),
    ("On a CPU with native bf16 (2026-12-05)", "| mode | CPU s |",
     ("run", "bench/search_speed/run.py --show bench/search_speed/results/amd-epyc-avx512bf16.json --condensed")),
    ("On an AVX2-only CPU (2026-12-03)", "| mode | CPU s |",
     ("run", "bench/search_speed/run.py --show bench/search_speed/results/amd-epyc-avx2.json --condensed")),
    ("On an AVX2-only CPU (2026-12-03)", "| schedule | z |",
     ("run, slow", "bench/search_speed/replay.py")),
    ("Paper protocol (issue 16)", "| Scorer |", ("run", "bench/paper_protocol/table.py")),
    ("Choosing by validation perplexity (issue 19, item 2): it does not help; not offered", "| Search |",
     ("run", "bench/monitor/tiebreak.py --show bench/monitor/tiebreak/n4-m0.01/result.json")),
    ("Calibration size (issue 19, item 4): 4 to 256 rows, BlockPruner and ShortGPT", "| Method | Rows |",
     ("file", "bench/calibration_size/smollm2-r20/table.md")),
    ("Context length (issue 19, \"find out why\")", "| Model | 128 tokens |",
     ("file", "bench/context_length/smollm2-r20/table.md")),
    ("Calibration domain (issue 19, \"find out why\")", "| Calibration text |",
     ("file", "bench/domain/smollm2-r20/table.md")),
    ("Scale (issue 31): 135M to 3B measured in fp32, 8B in bf16 on a CPU with native bf16",
     "| model | params | dtype | phase |", ("run", "bench/scale/run.py --show bench/scale/results/amd-epyc-avx2.json")),
    ("Scale (issue 31): 135M to 3B measured in fp32, 8B in bf16 on a CPU with native bf16",
     "| model | params | dtype | blockpruner", ("run", "bench/scale/run.py --summary bench/scale/results/amd-epyc-avx2.json")),
    ("On a CPU with native bf16: 135M, 360M and 3B in fp32, 8B in bf16 (2026-12-07)", "| model | params | dtype | phase |",
     ("run", "bench/scale/run.py --show bench/scale/results/amd-epyc-avx512bf16.json")),
    ("On a CPU with native bf16: 135M, 360M and 3B in fp32, 8B in bf16 (2026-12-07)", "| model | params | dtype | blockpruner",
     ("run", "bench/scale/run.py --summary bench/scale/results/amd-epyc-avx512bf16.json")),
]


#: (committed page, the command that prints it from a committed results file): equal, character for character
PAGES = [("bench/monitor/RESULTS.md", "bench/monitor/probe.py --show bench/monitor/results.json")]


def tables_in_results() -> list[tuple[str, list[str]]]:
    """(section heading, table lines) for every Markdown table outside code blocks."""
    out, section, fenced, current = [], "", False, None
    for line in RESULTS.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if fenced:
            continue
        if line.startswith("#"):
            section = line.lstrip("#").strip()
        if line.startswith("|"):
            if current is None:
                current = (section, [])
                out.append(current)
            current[1].append(line.strip())
        else:
            current = None
    return out


def section_lines(section: str) -> list[str]:
    """The lines under a heading of RESULTS, up to the next heading."""
    out, inside, fenced = [], False, False
    for line in RESULTS.read_text(encoding="utf-8").splitlines():
        fenced ^= line.startswith("```")
        if line.startswith("#") and not fenced:
            inside = line.lstrip("#").strip() == section
        elif inside:
            out.append(line.strip())
    return out


def which(section: str, lines: list[str]):
    found = [t for t in TABLES if t[0] == section and lines[0].startswith(t[1])]
    assert len(found) == 1, f"RESULTS table in {section!r} ({lines[0][:60]}) is listed {len(found)} times in TABLES"
    return found[0]


def test_every_results_table_is_listed_once_with_how_it_is_made():
    tables = tables_in_results()
    listed = [which(section, lines) for section, lines in tables]
    assert sorted(map(str, listed)) == sorted(map(str, TABLES)), "an entry of TABLES matches no table"
    for _, _, (kind, what) in TABLES:
        assert kind in ("run", "run, slow", "file") and what
        if kind == "run, slow":
            assert (ROOT / what.split()[0]).is_file(), what


@pytest.mark.parametrize("section,lines", [t for t in tables_in_results() if which(*t)[2][0] in ("run", "file")],
                         ids=lambda v: v[:40] if isinstance(v, str) else "")
def test_a_printed_table_is_what_results_holds(section, lines):
    kind, what = which(section, lines)[2]
    text = printed(what) if kind == "run" else (ROOT / what).read_text(encoding="utf-8")
    got = [line.strip().replace("**", "") for line in text.splitlines() if line.startswith("|")]
    missing = [line for line in lines if line.replace("**", "") not in got]
    assert not missing, f"{what} does not print these rows of RESULTS:\n" + "\n".join(missing)
    machines = [line for line in text.splitlines() if line.startswith("Machine: ")]
    unstated = [line for line in machines if line not in section_lines(section)]
    assert not unstated, f"{section!r} does not state the machines {what} prints:\n" + "\n".join(unstated)


def printed(command: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *command.split()], cwd=ROOT, env=env, capture_output=True, text=True,
                          check=True, timeout=300).stdout


@pytest.mark.parametrize("page,command", PAGES)
def test_a_committed_page_is_what_its_printer_prints(page, command):
    assert printed(command) == (ROOT / page).read_text(encoding="utf-8")


#: bench/portable_paths.py's rules name the old paths it rewrote
ABSOLUTE_PATHS_LEFT = {"bench/portable_paths.py"}


def test_no_committed_record_or_page_holds_an_absolute_path_of_this_machine():
    found = subprocess.run(["git", "grep", "-l", "-e", "/work/", "-e", "/tmp/", "-e", "/root/", "--", "bench", "docs",
                            "README.md"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    assert set(found) <= ABSOLUTE_PATHS_LEFT, sorted(set(found) - ABSOLUTE_PATHS_LEFT)

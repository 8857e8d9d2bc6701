"""scripts/demo.sh with stand-ins for pip and blockprune: what it deletes, and what it runs."""
import os
import subprocess
from pathlib import Path

DEMO = Path(__file__).resolve().parents[1] / "scripts" / "demo.sh"


def run_demo(tmp_path: Path, **env) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run the demo with `python3` and `blockprune` replaced by stubs that log their arguments."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir(exist_ok=True)
    for name in ("python3", "blockprune"):
        stub = bin_dir / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*" >> "{log}"\n')
        stub.chmod(0o755)
    full = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHON": str(bin_dir / "python3"), **env}
    proc = subprocess.run(["bash", str(DEMO)], env=full, capture_output=True, text=True)
    return proc, log.read_text().splitlines() if log.exists() else []


def test_demo_never_deletes_an_exported_out_folder(tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "keep.txt").write_text("mine")
    demo_out = tmp_path / "demo"
    proc, calls = run_demo(tmp_path, OUT=str(scratch), BLOCKPRUNE_DEMO_OUT=str(demo_out))
    assert proc.returncode == 0, proc.stderr
    assert (scratch / "keep.txt").read_text() == "mine"
    assert any(c.startswith("blockprune prune") and c.endswith(f"--out {demo_out}") for c in calls)


def test_demo_refuses_to_replace_a_folder_that_is_not_a_run(tmp_path):
    demo_out = tmp_path / "demo"
    demo_out.mkdir()
    (demo_out / "notes.txt").write_text("mine")
    proc, calls = run_demo(tmp_path, BLOCKPRUNE_DEMO_OUT=str(demo_out))
    assert proc.returncode == 2
    assert "is not a blockprune run" in proc.stderr
    assert (demo_out / "notes.txt").read_text() == "mine" and calls == []


def test_demo_replaces_its_previous_run(tmp_path):
    demo_out = tmp_path / "demo"
    demo_out.mkdir()
    (demo_out / "plan.json").write_text("{}")
    proc, calls = run_demo(tmp_path, BLOCKPRUNE_DEMO_OUT=str(demo_out))
    assert proc.returncode == 0, proc.stderr
    assert not demo_out.exists()  # the stub blockprune writes nothing back
    assert calls[0].startswith("python3 -m pip")

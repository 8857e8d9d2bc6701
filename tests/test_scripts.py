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


def test_bench_and_examples_import_only_the_public_api():
    """bench/ and examples/ use what `blockprune.__all__` names: its API and public modules, no `_name`."""
    import ast
    from pathlib import Path

    import blockprune

    root = Path(__file__).resolve().parents[1]
    bad = []
    for path in sorted([*(root / "bench").rglob("*.py"), *(root / "examples").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "blockprune":
                parts = node.module.split(".")[1:]
                names = [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                parts, names = [], []
                for a in node.names:
                    if a.name.split(".")[0] == "blockprune":
                        parts = a.name.split(".")[1:]
            else:
                continue
            where = f"{path.relative_to(root)}:{node.lineno}"
            if parts and parts[0] not in blockprune.__all__:
                bad.append(f"{where}: module blockprune.{parts[0]} is not public")
            bad += [f"{where}: private {p}" for p in parts + names if p.startswith("_")]
            if not parts:
                bad += [f"{where}: blockprune.{n} is not in __all__" for n in names if n not in blockprune.__all__]
    assert not bad, "\n".join(bad)

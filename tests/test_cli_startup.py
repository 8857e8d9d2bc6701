"""`blockprune --help`, a subcommand's help and an argument error import neither torch nor transformers
(issue 34: they took ~14 s under load); bench/cli_speed times them."""
import json
import os
import subprocess
import sys

import pytest

from blockprune import cli
from blockprune.commands import load_all, recorded

HEAVY = ("torch", "transformers")

# each command line a fresh interpreter runs through cli.main, then reports what it imported
PROBE = """
import json, sys
from blockprune import cli
seen = []
for argv in json.loads(sys.argv[1]):
    code = cli.main(argv)
    seen.append([argv, code, [m for m in {heavy!r} if m in sys.modules]])
print(json.dumps(seen))
""".format(heavy=HEAVY)

LINES = [["--help"], ["prune", "--help"], ["prune", "--num-blocks", "x"], ["prune"], ["eval", "--help"],
         ["compare", "--ratio", "half"], ["export", "--help"], ["heal", "--help"], ["report", "--help"],
         ["verify", "--help"], ["nosuchcommand"]]


def probe(lines, cache):
    env = {**os.environ, "BLOCKPRUNE_CACHE": str(cache)}
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(lines)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_help_and_argument_errors_import_no_torch(tmp_path):
    cold = probe([["--help"], ["report", "--help"], ["verify", "--help"]], tmp_path)
    assert all(not heavy for _, _, heavy in cold), cold  # these need nothing cached
    for attempt in range(3):
        key = recorded._cache_file()
        probe([["prune", "--help"]], tmp_path)  # its registries import torch; it records every command's arguments
        seen = probe(LINES, tmp_path)
        if recorded._cache_file() == key:
            break  # (else the package's sources were edited meanwhile, as beside other work: again)
    for argv, code, heavy in seen:
        assert code == (0 if argv[-1] == "--help" else 2), argv
        assert heavy == [], f"blockprune {' '.join(argv)} imported {heavy}"


def replayed(mod):
    """`mod`'s subcommand parser built live, and built again from its recorded calls."""
    live = cli._Parser(prog=f"blockprune {mod.NAME}", formatter_class=cli._Formatter)
    log = []
    mod.add_arguments(recorded._Recorder(live, log))
    calls = json.loads(json.dumps(recorded._encode(log)))  # through JSON, as the cache file holds them
    again = cli._Parser(prog=f"blockprune {mod.NAME}", formatter_class=cli._Formatter)
    recorded._replay(again, calls, mod)
    return live, again


@pytest.mark.parametrize("mod", load_all(), ids=lambda m: m.NAME)
def test_replayed_arguments_are_the_live_ones(mod, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    live, again = replayed(mod)
    assert again.format_help() == live.format_help()
    positional = {"export": ["RUN"], "verify": ["RUN"], "heal": ["RUN"], "report": ["RUN"], "eval": ["RUN"]}
    required = {"prune": ["--num-blocks", "3"], "compare": ["--ratio", "0.2"], "report": ["--out", "r"]}
    argv = positional.get(mod.NAME, []) + required.get(mod.NAME, [])
    try:
        parsed = vars(live.parse_args(argv))
    except SystemExit:  # a command this test does not know yet: the replay refuses the same line
        with pytest.raises(SystemExit):
            again.parse_args(argv)
        return
    assert vars(again.parse_args(argv)) == parsed


def test_an_unrecordable_type_is_built_when_its_option_is_given():
    import argparse

    from blockprune.commands import prune

    live, again = replayed(prune)
    args = ["--ratio", "0.2", "--seed-runs", "runs/a,runs/b", "--device", "cpu"]
    assert vars(again.parse_args(args)) == vars(live.parse_args(args))
    mod = type("Mod", (), {"NAME": "x", "add_arguments": staticmethod(
        lambda p: p.add_argument("--n", type=lambda v: int(v) * 2, default=3))})
    live, again = replayed(mod)
    assert again.parse_args(["--n", "4"]).n == 8 and again.parse_args([]).n == 3
    with pytest.raises(SystemExit):
        again.parse_args(["--n", "x"])
    assert isinstance(live, argparse.ArgumentParser)


def test_the_cache_key_follows_the_package_sources(tmp_path, monkeypatch):
    package = tmp_path / "pkg"
    (package / "methods").mkdir(parents=True)
    (package / "cli.py").write_text("x = 1\n")
    monkeypatch.setattr(recorded, "_PACKAGE", package)
    monkeypatch.setenv("BLOCKPRUNE_CACHE", str(tmp_path / "cache"))
    first = recorded._cache_file()
    assert first == recorded._cache_file() and first.parent == tmp_path / "cache" / "cli"
    (package / "cli.py").write_text("x = 22\n")  # an edit
    second = recorded._cache_file()
    (package / "methods" / "mine.py").write_text("")  # a new method file
    assert len({first, second, recorded._cache_file()}) == 3


def test_a_damaged_cache_is_rebuilt(tmp_path, monkeypatch):
    from blockprune.commands import report

    monkeypatch.setattr(recorded, "_torch_loaded", lambda: False)  # as in a fresh CLI process
    monkeypatch.setenv("BLOCKPRUNE_CACHE", str(tmp_path))
    path = recorded._cache_file()
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"report": [["argument", ["dirs"], {"nargs": "+"}], ["argument", [], {"bogus": 1}]]}))
    parser = cli._Parser(prog="blockprune report")
    recorded.add(report, parser)
    assert vars(parser.parse_args(["a", "--out", "o"])) == {"dirs": ["a"], "out": "o"}

"""A method's own option, declared once next to the method (`declared.Option`): the CLI offers it, validation
checks it, the plan records it, and `PruneOptions` takes it, with no other file edited (issue 34)."""
from dataclasses import dataclass, replace
from typing import ClassVar

import pytest

from blockprune import cli
from blockprune.declared import Option
from blockprune.errors import UserError
from blockprune.methods import METHODS, Job, MethodDefaults
from blockprune.methods.oneshot import remove_ranked
from blockprune.options import PruneOptions
from blockprune.plan import Plan
from blockprune.search import candidate_units

STRIDE = Option("stride", 2, type=int, extendable=True,
                check=lambda n: None if n >= 1 else f"--stride must be at least 1 (got {n})",
                help="every-nth: remove every n-th layer first (a test method's own option)")


@dataclass(frozen=True)
class EveryNth(MethodDefaults):
    """A test method with an option of its own: layers whose index is a multiple of --stride go first."""

    name: str = "every-nth"
    granularity: str = "layer"
    summary: str = "remove every --stride-th layer first (a test method)"
    options: ClassVar[tuple[Option, ...]] = (STRIDE,)

    def run(self, job: Job, plan):
        layers = candidate_units(job.view, "layer")
        scores = {u.name: float(u.index % job.options.stride) + u.index / 100 for u in layers}
        remove_ranked(job, plan, layers, scores, "stride", 0)
        return plan


@pytest.fixture
def every_nth():
    METHODS.register(EveryNth())
    yield METHODS["every-nth"]
    METHODS.unregister("every-nth")


def _help(command: str, capsys) -> str:
    assert cli.main([command, "--help"]) == 0
    return " ".join(capsys.readouterr().out.split())


def test_a_declared_option_is_offered_by_the_commands_that_take_it(every_nth, capsys):
    for command in ("prune", "estimate", "compare"):
        text = _help(command, capsys)
        assert "--stride STRIDE" in text and "a test method's own option" in text, command
    parser, _ = cli.build_parser()
    args = parser.parse_args(["prune", "--method", "every-nth", "--num-blocks", "1", "--stride", "3"])
    assert args.stride == 3 and isinstance(args.stride, int)
    assert parser.parse_args(["prune", "--num-blocks", "1"]).stride == 2  # its declared default


def test_a_declared_option_is_an_attribute_and_a_keyword_of_prune_options(every_nth):
    opts = PruneOptions(method="every-nth", num_blocks=1, stride=3)
    assert opts.stride == 3 and PruneOptions().stride == 2
    assert replace(opts, nsamples=8).stride == 3 and replace(opts, stride=2) == PruneOptions(method="every-nth",
                                                                                             num_blocks=1)
    assert every_nth.extendable == ("stride",)
    with pytest.raises(TypeError, match="unexpected keyword argument 'strid'"):
        PruneOptions(strid=3)


def test_a_declared_option_is_validated(every_nth):
    with pytest.raises(UserError, match=r"^--stride must be at least 1 \(got 0\)$"):
        PruneOptions(method="every-nth", num_blocks=1, stride=0).validate()
    other = PruneOptions(method="layer-ppl", num_blocks=1, stride=3)
    other.validate()
    with pytest.raises(UserError, match="--stride applies to layer methods only, not --method layer-ppl; drop "
                                        "--stride or use --method every-nth"):
        other.check_all_used()


def test_a_declared_option_is_recorded_where_its_method_reads_it(every_nth, tiny_checkpoint, calib_file, tmp_path,
                                                                  capsys):
    prune = ["prune", "--model", tiny_checkpoint, "--calibration", calib_file, "--seqlen", "32", "--nsamples", "4",
             "--num-blocks", "2", "--no-export", "--quiet"]
    assert cli.main([*prune, "--method", "every-nth", "--stride", "0", "--out", str(tmp_path / "bad")]) == 2
    assert "--stride must be at least 1 (got 0)" in capsys.readouterr().err
    assert not (tmp_path / "bad" / "plan.json").exists()
    assert cli.main([*prune, "--method", "layer-ppl", "--stride", "3", "--out", str(tmp_path / "other")]) == 2
    assert "--stride applies to layer methods only" in capsys.readouterr().err
    assert cli.main([*prune, "--method", "every-nth", "--stride", "3", "--out", str(tmp_path / "run")]) == 0
    plan = Plan.load(tmp_path / "run")
    assert plan.options["stride"] == 3
    assert plan.removed == ["layer.0", "layer.3"]  # multiples of 3 among 4 layers
    assert "stride" not in PruneOptions(method="layer-ppl", num_blocks=2).resolved("cpu").recorded()


def test_every_built_in_option_is_declared_once():
    from blockprune.options import declared_options, method_options, scorer_options

    assert set(method_options()) >= {"criterion", "seed_runs", "generations", "allocation", "gqa", "layers"}
    assert set(scorer_options()) == {"racing_z", "fast_dtype"}
    assert set(declared_options()) == set(method_options()) | set(scorer_options())

"""CLI subcommands, one module each. A module defines NAME, HELP, DESCRIPTION, `add_arguments(parser)`
and `run(args) -> int | None`; listing it in COMMANDS is all it takes to add a subcommand."""
from __future__ import annotations

import importlib

COMMANDS = ["prune", "export", "eval", "report", "compare", "verify", "heal"]


def load_all():
    return [importlib.import_module(f"{__name__}.{name.replace('-', '_')}") for name in COMMANDS]


def device_arg(value: str) -> str:
    """--device checked as it is parsed, for every command that loads a model."""
    import argparse

    from ..errors import UserError
    from ..models import check_device

    if value != "auto":
        try:
            check_device(value, named=False)  # argparse names the option itself
        except UserError as e:
            raise argparse.ArgumentTypeError(str(e)) from e
    return value


def add_model_arguments(p) -> None:
    """The options every command that loads a model shares."""
    p.add_argument("--model", default="smollm2-135m",
                   help="Hugging Face hub id, local checkpoint folder, or built-in alias 'smollm2-135m'")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"], help="precision of the forward passes")
    p.add_argument("--device", default="cpu", type=device_arg, help="torch device, e.g. cpu, cuda, cuda:1; auto shards the model over all GPUs (accelerate)")
    add_data_dir(p)


def add_data_dir(p) -> None:
    p.add_argument("--data-dir", default=None,
                   help="folder with offline dataset copies (calibration/alpaca_5000.json, perplexity/..., eval/...); "
                        "default: $BLOCKPRUNE_DATA, else the Hugging Face hub")

"""blockprune: training-free structured pruning of causal LMs (BlockPruner, LLM-BIP and baselines).

The API below is imported on first use (PEP 562), so `import blockprune.cli` and with it `blockprune --help`
and argument errors need neither torch nor transformers."""
import sys as _sys
import types as _types

__version__ = "0.1.0"

#: the API's names and the module each comes from
_API = {"PruneOptions": "api", "RunResult": "api", "load": "api", "prune": "api", "UserError": "errors",
        "evaluate_model": "evaluate", "HealOptions": "heal", "HealResult": "heal", "heal": "heal",
        "Block": "view", "BlockView": "view"}

__all__ = [
    # the API
    "Block", "BlockView", "HealOptions", "HealResult", "PruneOptions", "RunResult", "UserError", "evaluate_model",
    "heal", "load", "prune",
    # the public modules: users and bench/ import from these (their names without a leading underscore);
    # the rest (api, cli, commands, errors, progress, registry, verify) is reached through the API and the CLI
    "arch", "atomic", "compare", "data", "estimate", "evaluate", "export", "machine", "methods", "models", "monitor", "options",
    "plan", "report", "scoring", "search", "timings", "units", "view", "width", "window_nll",
]


def __getattr__(name: str):
    if name in _API:
        from importlib import import_module

        value = getattr(import_module(f"{__name__}.{_API[name]}"), name)
        object.__setattr__(_sys.modules[__name__], name, value)
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Package(_types.ModuleType):
    """`blockprune.heal` stays the `heal` function, as when this package imported its API eagerly: the
    import system sets a package's attribute to each subpackage it loads, which would make it the
    `blockprune.heal` subpackage (still reachable as `sys.modules["blockprune.heal"]`) instead."""

    def __setattr__(self, name: str, value) -> None:
        if name in _API and isinstance(value, _types.ModuleType):
            return
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Package

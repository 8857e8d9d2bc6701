"""blockprune: training-free structured pruning of causal LMs (BlockPruner, LLM-BIP and baselines)."""
__version__ = "0.1.0"

from .api import PruneOptions, RunResult, load, prune  # noqa: E402
from .errors import UserError  # noqa: E402
from .evaluate import evaluate_model  # noqa: E402
from .heal import HealOptions, HealResult, heal  # noqa: E402
from .view import Block, BlockView  # noqa: E402

__all__ = [
    # the API
    "Block", "BlockView", "HealOptions", "HealResult", "PruneOptions", "RunResult", "UserError", "evaluate_model",
    "heal", "load", "prune",
    # the public modules: users and bench/ import from these (their names without a leading underscore);
    # the rest (api, cli, commands, errors, progress, verify) is reached through the API and the CLI
    "arch", "atomic", "compare", "data", "evaluate", "export", "methods", "models", "monitor", "options",
    "perplexity", "plan", "report", "scoring", "search", "units", "view", "width",
]

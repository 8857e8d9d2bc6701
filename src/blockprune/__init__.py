"""blockprune: training-free structured pruning of causal LMs (BlockPruner, LLM-BIP and baselines)."""
__version__ = "0.1.0"

from .api import PruneOptions, RunResult, load, prune  # noqa: E402
from .errors import UserError  # noqa: E402
from .evaluate import evaluate_model  # noqa: E402
from .heal import HealOptions, HealResult, heal  # noqa: E402
from .view import Block, BlockView  # noqa: E402

__all__ = ["Block", "BlockView", "HealOptions", "HealResult", "PruneOptions", "RunResult", "UserError", "evaluate_model",
           "heal", "load", "prune"]

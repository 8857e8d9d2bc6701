"""blockprune: training-free structured pruning of causal LMs (BlockPruner, LLM-BIP and baselines)."""
__version__ = "0.1.0"

"""Model-family adapters for the pruning engine."""

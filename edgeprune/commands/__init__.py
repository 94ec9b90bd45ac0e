"""Subcommands of the edgeprune CLI; each module defines ``register(subparsers)``."""

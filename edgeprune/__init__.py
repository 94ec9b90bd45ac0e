"""edgeprune: Edge Pruning circuit discovery with a Tracr-centric verification suite.

The library API (``edgeprune.api``) is re-exported here and imported on first use,
so ``import edgeprune`` loads no torch until a call needs it::

    import edgeprune as ep
    model = ep.compile("reverse")
    result = ep.recover("reverse")
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = (
    "Circuit",
    "CompiledTransformer",
    "PruneConfig",
    "check",
    "compare",
    "compile",
    "faithfulness",
    "from_tracr",
    "ground_truth",
    "load_circuit",
    "load_model",
    "programs",
    "prune",
    "recover",
    "recover_program",
    "save_model",
)

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        from edgeprune import api

        return getattr(api, name)
    raise AttributeError(f"module 'edgeprune' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)

"""edgeprune: Edge Pruning circuit discovery with a Tracr-centric verification suite.

The library API (``edgeprune.api``) is re-exported here and imported on first use,
so ``import edgeprune`` loads no torch until a call needs it::

    import edgeprune as ep
    model = ep.compile("reverse")
    result = ep.recover("reverse")
"""

from __future__ import annotations

import os
from typing import Any

# Large CPU tensors on transparent huge pages (torch's allocator reads this once, at its first allocation):
# the engine's per-step buffers are hundreds of MB, and on 4 KB pages faulting them in cost more than the
# mixing products (GPT-2-small pruning step 10.7 s -> 8.3 s).  Set it to 0 before importing edgeprune to opt out.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

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

"""Keep freed host memory in the process during training steps, so each step reuses the last one's pages.

Why: a language-model step allocates tensors of tens to hundreds of MB (the reader inputs of a layer,
the writer buffer, the corrupted run's writer outputs).  glibc serves every allocation above 32 MB with
a fresh ``mmap`` and returns it to the kernel on free, so every step faults all of them in again: on
GPT-2-small at batch 8 that was 0.5-0.9 M page faults and 1.5-4 s of kernel time per step on a 6 s
step.  Inside :func:`steps_keep_memory` large blocks come from the heap instead (``mmap`` off) and the
heap is never trimmed, so the next step's same-sized tensors reuse them: no faults after the first step.
Only training steps run so: outside them (evaluation over the whole data set, whose many chunks would
fragment a heap that never shrinks, growing with the data) glibc's ``mmap`` is back on.  Linux/glibc only;
``EDGEPRUNE_RETAIN_FREED_MEMORY=0`` leaves the allocator alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import sys
from collections.abc import Callable, Iterator

# mallopt parameters and glibc's default for the mmap count (malloc.h, malloc/malloc.c)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_DEFAULT_MMAP_MAX = 65536

_depth = 0


@functools.cache
def _resolve() -> Callable[[int, int], int] | None:
    """glibc's ``mallopt``, with trimming switched off (once per process); None where it is unavailable."""
    if os.environ.get("EDGEPRUNE_RETAIN_FREED_MEMORY", "1") == "0" or not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt): nothing to change
        return None
    fn.argtypes, fn.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if not fn(_M_TRIM_THRESHOLD, -1):  # -1: never trim the heap (mallopt(3))
        return None
    return fn


def available() -> bool:
    """Whether training steps will keep freed memory (glibc on Linux, not switched off)."""
    return _resolve() is not None


@contextlib.contextmanager
def steps_keep_memory() -> Iterator[None]:
    """Within the block, large allocations come from the (never trimmed) heap; nested blocks are fine."""
    global _depth
    fn = _resolve()
    if fn is None:
        yield
        return
    if _depth == 0:
        fn(_M_MMAP_MAX, 0)
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            fn(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)

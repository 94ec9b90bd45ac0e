"""Keep freed host memory in the process, so each training step reuses the pages the last one touched.

Why: a language-model step allocates tensors of tens to hundreds of MB (the reader inputs of a layer,
the writer buffer, the corrupted run's writer outputs).  glibc serves every allocation above 32 MB with
a fresh ``mmap`` and returns it to the kernel on free, so every step faults all of them in again: on
GPT-2-small at batch 8 that was 0.5-0.9 M page faults and 1.5-4 s of kernel time per step on a 6 s
step.  With ``mmap`` off for the heap and trimming off, freed blocks stay in the heap and the next
step's same-sized tensors reuse them (no faults after the first step).  The cost: the process keeps
its peak resident size until it exits.  Linux/glibc only; set ``EDGEPRUNE_RETAIN_FREED_MEMORY=0`` to
leave the allocator alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# mallopt parameters (glibc malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4

_done: bool | None = None


def retain_freed_memory() -> bool:
    """Switch glibc's allocator to keep freed memory (once per process); whether it is now on."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if os.environ.get("EDGEPRUNE_RETAIN_FREED_MEMORY", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt): nothing to change
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # -1 as the trim threshold disables trimming (mallopt(3)); 0 mmaps: large blocks come from the heap
    _done = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, -1))
    return _done

"""Training steps keep freed host memory: a large tensor freed inside the block is reused without page faults;
outside it (evaluation passes) a large block never extends the heap (it is mapped and returned to the
kernel), so a heap that is never trimmed cannot grow with the data."""

from __future__ import annotations

import ctypes
import ctypes.util
import resource

import torch

from edgeprune.pruning import host_memory
from edgeprune.pruning.host_memory import steps_keep_memory

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
_libc.sbrk.restype, _libc.sbrk.argtypes = ctypes.c_void_p, [ctypes.c_long]


def _heap_end() -> int:
    return int(_libc.sbrk(0))


def _faults_of_repeated_allocation() -> int:
    """Minor page faults of allocating and filling 64 MB after the same was allocated and freed twice (the
    first reuse can miss by the alignment padding; a training loop reaches the steady state in two steps)."""
    for _ in range(2):
        torch.ones(16 << 20).sum()  # 16 M floats = 64 MB, freed at once
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(16 << 20).sum()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def test_steps_reuse_freed_pages():
    assert host_memory.available()  # Linux with glibc: every machine this project runs on
    with steps_keep_memory():
        with steps_keep_memory():  # nested: the outer block's setting stays
            pass
        assert _faults_of_repeated_allocation() < 500  # 64 MB on fresh 4 KB pages would be about 16 K


def test_outside_steps_large_blocks_do_not_extend_the_heap():
    with steps_keep_memory():
        pass
    end = _heap_end()
    big = torch.empty(256 << 20)  # 1 GB, untouched: only address space
    assert _heap_end() == end
    del big
    with steps_keep_memory():
        big = torch.empty(256 << 20)
        assert _heap_end() >= end + (1 << 29)  # inside a step it comes from the heap (its free top, then more)
        del big

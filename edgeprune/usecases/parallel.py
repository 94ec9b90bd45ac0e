"""Independent jobs in worker processes, for commands that run many programs (``compare-methods --all --jobs N``).

Why one helper: the rules are the same for every such command.  Workers start with "forkserver"
(or "spawn" where there is none) because torch does not survive ``fork`` after its thread pools
started; every worker runs one intra-op thread, since N workers on N cores would otherwise
oversubscribe them; and a worker that is killed (e.g. out of memory) breaks the whole pool, so
its unfinished jobs get one fresh pool before they are reported as lost.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from edgeprune.core.errors import EdgePruneError


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def run_jobs(
    fn: Callable[[Any], Any], jobs: Sequence[Any], workers: int = 1, lost: Callable[[Any], Any] | None = None
) -> Iterator[tuple[int, Any]]:
    """``fn(job)`` for every job, ``workers`` at a time; yields ``(index, result)`` in completion order.

    ``fn`` must be a module-level function and jobs and results plain data (they cross process
    boundaries).  With one worker (or one job) everything runs here, in order.  ``lost(job)`` is
    the result of a job whose worker died twice; without it the pool's error propagates.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    if workers < 1:
        raise EdgePruneError(f"--jobs must be at least 1, got {workers}")
    if workers == 1 or len(jobs) <= 1:
        for i, job in enumerate(jobs):
            yield i, fn(job)
        return
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    pending = list(range(len(jobs)))
    for attempt in range(2):
        broken: list[int] = []
        pool = ProcessPoolExecutor(max_workers=min(workers, len(pending)), mp_context=ctx, initializer=_init_worker)
        try:
            futures = {pool.submit(fn, jobs[i]): i for i in pending}
            for fut in as_completed(futures):
                i = futures[fut]
                try:
                    result = fut.result()
                except BrokenProcessPool:
                    if attempt == 0:
                        broken.append(i)
                        continue
                    if lost is None:
                        raise
                    result = lost(jobs[i])
                yield i, result
        finally:  # Ctrl-C or a consumer that stops early: drop queued jobs instead of finishing them
            pool.shutdown(wait=True, cancel_futures=True)
        if not broken:
            return
        pending = sorted(broken)

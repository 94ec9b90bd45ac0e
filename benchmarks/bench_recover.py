"""Wall time to an exact recovery and training steps per second, for reverse and xproportion.

Usage: python benchmarks/bench_recover.py [--threads 1] [--seeds 0 1 2] [--ablation zero]
Runs on the Tracr reference models in tests/data/tracr-reference (no compiler needed).

    python benchmarks/bench_recover.py --library reverse,xproportion,sort

runs each named library program in its own process (``OMP_NUM_THREADS=1``) and prints the whole
process's seconds (imports, compile, training, cut, checks), the steps taken (fewer than the
configured ones when training stopped early) and where the time went: training loop, the cut
(``Pruner.circuit``) and the rest of ``recover`` (compiling, the ground-truth and circuit checks).

    python benchmarks/bench_recover.py --profile reverse

profiles ``recover reverse`` in one process (cProfile) and prints the functions taking the most time;
``--all-jobs 2`` also times ``edgeprune recover --all --jobs 2`` (whole command, every library program).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

REF = Path(__file__).resolve().parents[1] / "tests" / "data" / "tracr-reference"


def _one(name: str, ablation: str) -> None:
    """In a child process: recover ``name`` with the cut timed; print one JSON row."""
    from edgeprune.pruning import train
    from edgeprune.usecases.recovery import recover

    cut = [0.0]
    original = train.Pruner.circuit

    def timed_circuit(self):
        t0 = time.perf_counter()
        try:
            return original(self)
        finally:
            cut[0] += time.perf_counter() - t0

    train.Pruner.circuit = timed_circuit
    t0 = time.perf_counter()
    res = recover(name, ablation, 0)
    total = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "program": name,
                "exact": res.comparison.exact,
                "steps": res.steps,
                "train_s": round(res.seconds, 2),
                "cut_s": round(cut[0], 2),
                "other_s": round(total - res.seconds - cut[0], 2),
            }
        )
    )


def profile(name: str, ablation: str, top: int = 15) -> None:
    """cProfile of ``recover(name)`` in this process (imports excluded): the functions with the most own time."""
    import cProfile
    import io
    import pstats

    from edgeprune.usecases.recovery import recover

    torch.set_num_threads(1)
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    res = recover(name, ablation, 0)
    prof.disable()
    wall = time.perf_counter() - t0
    print(f"profile of recover({name!r}, {ablation!r}): {wall:.1f} s, {res.steps} steps, verdict {res.verdict}")
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    stats.sort_stats("tottime").print_stats(top)
    lines = [ln for ln in buf.getvalue().splitlines() if ln.strip()]
    start = next(i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls"))
    for ln in lines[start : start + top + 1]:
        print("  " + ln.strip()[:150])


def all_jobs(jobs: int, ablation: str) -> None:
    """Wall time of the whole ``edgeprune recover --all --jobs N`` command and its summary line."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "edgeprune.cli", "recover", "--all", "--jobs", str(jobs), "--no-progress"]
    cmd += ["--ablation", ablation]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True).stdout
    wall = time.perf_counter() - t0
    tail = [ln for ln in out.splitlines() if ln.strip()][-2:]
    print(f"recover --all --jobs {jobs} ({ablation}): {wall:.0f} s whole command; " + " | ".join(tail))


def library(names: list[str], ablation: str) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    print(f"{'program':<16} exact  steps  process s  train s  cut s  compile+check s   ({ablation}, one thread, noisy)")
    for name in names:
        t0 = time.perf_counter()
        out = subprocess.run(
            [sys.executable, __file__, "--one", name, "--ablation", ablation],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        wall = time.perf_counter() - t0
        r = json.loads(out.strip().splitlines()[-1])
        print(
            f"{name:<16} {str(r['exact']):<5}  {r['steps']:>5}  {wall:>9.1f}  {r['train_s']:>7.1f}  {r['cut_s']:>5.1f}  "
            f"{r['other_s']:>15.1f}",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--ablation", choices=("zero", "interchange"), default="zero")
    ap.add_argument("--programs", nargs="+", default=["reverse", "xproportion"])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--library", default=None, help="comma-separated library programs, each in its own process")
    ap.add_argument("--profile", default=None, help="cProfile recover(PROGRAM) in one process; print the top functions")
    ap.add_argument("--all-jobs", type=int, default=None, help="also time `recover --all --jobs N`")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one is not None:
        torch.set_num_threads(1)
        return _one(args.one, args.ablation)
    if args.library is not None or args.profile is not None or args.all_jobs is not None:
        if args.library is not None:
            library(args.library.split(","), args.ablation)
        if args.profile is not None:
            profile(args.profile, args.ablation)
        if args.all_jobs is not None:
            all_jobs(args.all_jobs, args.ablation)
        return None
    torch.set_num_threads(args.threads)
    from edgeprune.usecases.recovery import recover

    rows = []
    for program in args.programs:
        for seed in args.seeds:
            t0 = time.perf_counter()
            res = recover(str(REF / program), args.ablation, seed)
            wall = time.perf_counter() - t0
            rows.append(
                {
                    "program": program,
                    "seed": seed,
                    "exact": res.comparison.exact,
                    "steps": res.steps,
                    "wall_seconds": round(wall, 2),
                    "train_seconds": round(res.seconds, 2),
                    "steps_per_second": round(res.steps / res.seconds, 1),
                }
            )
    if args.json:
        print(json.dumps(rows))
        return
    print(f"{'program':<12} seed  exact  steps  wall s  train s  steps/s   (threads={args.threads}, {args.ablation})")
    for r in rows:
        print(
            f"{r['program']:<12} {r['seed']:>4}  {str(r['exact']):<5}  {r['steps']:>5}  {r['wall_seconds']:>6.1f}  "
            f"{r['train_seconds']:>7.1f}  {r['steps_per_second']:>7.1f}"
        )


if __name__ == "__main__":
    main()

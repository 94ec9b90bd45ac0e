"""Wall time to an exact recovery and training steps per second, for reverse and xproportion.

Usage: python benchmarks/bench_recover.py [--threads 1] [--seeds 0 1 2] [--ablation zero]
Runs on the Tracr reference models in tests/data/tracr-reference (no compiler needed).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

REF = Path(__file__).resolve().parents[1] / "tests" / "data" / "tracr-reference"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--ablation", choices=("zero", "interchange"), default="zero")
    ap.add_argument("--programs", nargs="+", default=["reverse", "xproportion"])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from edgeprune.usecases.recovery import recover

    rows = []
    for program in args.programs:
        for seed in args.seeds:
            t0 = time.perf_counter()
            res = recover(str(REF / program), args.ablation, seed)
            wall = time.perf_counter() - t0
            rows.append({"program": program, "seed": seed, "exact": res.comparison.exact, "steps": res.steps,
                         "wall_seconds": round(wall, 2), "train_seconds": round(res.seconds, 2),
                         "steps_per_second": round(res.steps / res.seconds, 1)})
    if args.json:
        print(json.dumps(rows))
        return
    print(f"{'program':<12} seed  exact  steps  wall s  train s  steps/s   (threads={args.threads}, {args.ablation})")
    for r in rows:
        print(f"{r['program']:<12} {r['seed']:>4}  {str(r['exact']):<5}  {r['steps']:>5}  {r['wall_seconds']:>6.1f}  "
              f"{r['train_seconds']:>7.1f}  {r['steps_per_second']:>7.1f}")


if __name__ == "__main__":
    main()

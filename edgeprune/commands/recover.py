"""``edgeprune recover``: compile a program (or load a model), prune it, compare with its ground truth."""

from __future__ import annotations

import argparse
import json
import sys
import time

from edgeprune.errors import EdgePruneError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "recover",
        help="prune a compiled program and compare the circuit with its ground truth",
        description="Prune a compiled program (registry name, saved model dir or Tracr reference dir) with Edge "
                    "Pruning and compare the recovered circuit with the ground truth. Exit status 1 when not exact.",
    )
    p.add_argument("target", nargs="?", help="program name or model directory")
    p.add_argument("--all", action="store_true", help="recover every registered program; prints a table")
    p.add_argument("--ablation", choices=("zero", "interchange"), default="zero")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the program's setting)")
    p.add_argument("--run-dir", default=None, help="directory for checkpoints, metrics.jsonl and circuit.json")
    p.add_argument("--checkpoint-every", type=int, default=None, help="checkpoint every N steps (needs --run-dir)")
    p.add_argument("--resume", action="store_true", help="continue the run saved in --run-dir")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _one(args: argparse.Namespace) -> int:
    from pruning.recovery import recover

    extra = {}
    if args.checkpoint_every is not None:
        extra["checkpoint_every"] = args.checkpoint_every
    res = recover(args.target, args.ablation, args.seed, args.steps, run_dir=args.run_dir, resume=args.resume,
                  progress=not (args.no_progress or args.json) and sys.stderr.isatty(), **extra)
    if args.json:
        d = res.comparison.to_dict()
        d.update({"edges": len(res.comparison.recovered), "steps": res.steps, "seconds": round(res.total_seconds, 3),
                  "program": res.name, "ablation": res.ablation, "seed": res.seed, "truth_edges": len(res.comparison.truth)})
        print(json.dumps(d))
    else:
        print(f"{res.name} ({res.ablation} ablation, seed {res.seed}, {res.steps} steps, {res.total_seconds:.1f} s)")
        print(res.comparison.diff())
    return 0 if res.comparison.exact else 1


def _all(args: argparse.Namespace) -> int:
    from programs.registry import program_names
    from pruning.recovery import recover
    from tqdm import tqdm

    rows = []
    t0 = time.perf_counter()
    names = program_names()
    for name in tqdm(names, desc="recover --all", disable=args.json or args.no_progress or not sys.stderr.isatty(),
                     file=sys.stderr):
        try:
            r = recover(name, args.ablation, args.seed, args.steps)
            rows.append({"program": name, "exact": r.comparison.exact, "edges": len(r.comparison.recovered),
                         "truth_edges": len(r.comparison.truth), "missing": [list(e) for e in r.comparison.missing],
                         "extra": [list(e) for e in r.comparison.extra], "steps": r.steps,
                         "seconds": round(r.total_seconds, 3)})
        except EdgePruneError as exc:
            rows.append({"program": name, "exact": False, "error": str(exc)})
    total = time.perf_counter() - t0
    n_ok = sum(r["exact"] for r in rows)
    if args.json:
        print(json.dumps({"exact": n_ok == len(rows), "passed": n_ok, "total": len(rows), "seconds": round(total, 3),
                          "ablation": args.ablation, "seed": args.seed, "programs": rows}))
    else:
        w = max(len(r["program"]) for r in rows)
        print(f"{'program':<{w}}  result  edges  truth  missing  extra  seconds")
        for r in rows:
            if "error" in r:
                print(f"{r['program']:<{w}}  ERROR   {r['error']}")
                continue
            print(f"{r['program']:<{w}}  {'exact ' if r['exact'] else 'FAIL  '}  {r['edges']:>5}  {r['truth_edges']:>5}  "
                  f"{len(r['missing']):>7}  {len(r['extra']):>5}  {r['seconds']:>7.1f}")
        print(f"{n_ok}/{len(rows)} exact ({args.ablation} ablation, seed {args.seed}) in {total:.0f} s")
    return 0 if n_ok == len(rows) else 1


def run(args: argparse.Namespace) -> int:
    if args.all and args.target:
        raise EdgePruneError("give either a program/model or --all, not both")
    if args.all:
        if args.resume or args.run_dir:
            raise EdgePruneError("--run-dir/--resume apply to one program; drop --all")
        return _all(args)
    if not args.target:
        raise EdgePruneError("name a program (see `edgeprune programs`) or a model directory, or pass --all")
    if args.resume and not args.run_dir:
        raise EdgePruneError("--resume needs --run-dir pointing at the interrupted run")
    return _one(args)

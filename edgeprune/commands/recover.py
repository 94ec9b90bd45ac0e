"""``edgeprune recover``: compile a program (or load a model), prune it, compare with its ground truth."""

from __future__ import annotations

import argparse
import json
import sys
import time

from edgeprune.core.errors import EdgePruneError
from edgeprune.core.files import check_output
from edgeprune.core.options import ABLATION_HELP, ABLATIONS
from edgeprune.program_options import PROGRAM_HELP, add_program_arguments, program_options
from edgeprune.selection import add_selection_arguments, selected_programs


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "recover",
        help="prune a compiled program and compare the circuit with its ground truth",
        description="Prune a compiled program (registry name, saved model dir or Tracr reference dir) with Edge "
        "Pruning and compare the recovered circuit with the ground truth, and give a verdict: exact (the "
        "ground truth), alternative (differs, but sufficient with every edge necessary: another "
        "minimal circuit), not-minimal (sufficient, some edge unneeded) or unfaithful (not "
        "sufficient). Exit status: 0 exact (with --all: every program exact), 1 another verdict, "
        "3 an error (bad input, a crash; with --all: some program errored).",
    )
    p.add_argument("target", nargs="?", help=PROGRAM_HELP)
    add_selection_arguments(p, "recover every registered program; prints a table", "recover")
    p.add_argument(
        "--programs-dir",
        default=None,
        metavar="DIR",
        help="with --all: recover your own programs instead of the library's: every public function "
        "without arguments in DIR/*.py (the files are run: only directories you trust)",
    )
    add_program_arguments(p)
    p.add_argument(
        "--report",
        default=None,
        metavar="DIR",
        help="with --all: write DIR/README.md (Markdown table), a circuit picture per program, and DIR/results.json",
    )
    p.add_argument(
        "--ablation",
        choices=ABLATIONS,
        default="zero",
        help=ABLATION_HELP + "; the ground truth and the verdict follow it; default: zero",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the program's setting)")
    p.add_argument("--run-dir", default=None, help="directory for checkpoints, metrics.jsonl and circuit.json")
    p.add_argument("--checkpoint-every", type=int, default=None, help="checkpoint every N steps (needs --run-dir)")
    p.add_argument("--resume", action="store_true", help="continue the run saved in --run-dir")
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --report or --run-dir")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _one(args: argparse.Namespace) -> int:
    from edgeprune.usecases.recovery import recover

    extra = {}
    if args.checkpoint_every is not None:
        extra["checkpoint_every"] = args.checkpoint_every
    res = recover(
        args.target,
        args.ablation,
        args.seed,
        args.steps,
        run_dir=args.run_dir,
        resume=args.resume,
        progress=not (args.no_progress or args.json) and sys.stderr.isatty(),
        **program_options(args),
        **extra,
    )
    if args.json:
        d = res.comparison.to_dict()
        d.update(res.judgement.to_dict() if res.judgement is not None else {"verdict": res.verdict})
        d.update(
            {
                "edges": len(res.comparison.recovered),
                "steps": res.steps,
                "seconds": round(res.total_seconds, 3),
                "program": res.name,
                "ablation": res.ablation,
                "seed": res.seed,
                "truth_edges": len(res.comparison.truth),
            }
        )
        print(json.dumps(d))
    else:
        print(f"{res.name} ({res.ablation} ablation, seed {res.seed}, {res.steps} steps, {res.total_seconds:.1f} s)")
        print(res.comparison.diff())
        print(verdict_line(res))
    return 0 if res.verdict == "exact" else 1


def verdict_line(res) -> str:
    j = res.judgement
    v = res.verdict
    if j is None or v == "exact":
        return f"verdict: {v}"
    if v == "unfaithful":
        return f"verdict: unfaithful (not sufficient, e.g. {j.counterexamples[:2]})"
    if v == "not-minimal":
        return "verdict: not-minimal (sufficient; unneeded: " + ", ".join(f"{a} -> {b}" for a, b in j.unnecessary) + ")"
    return "verdict: alternative (sufficient, every edge necessary: another minimal circuit" + (
        ", listed in the program's spec)" if j.known_alternative else ")"
    )


def _row_line(r: dict, w: int) -> str:
    if "error" in r:
        return f"{r['program']:<{w}}  ERROR   {r['error']}"
    return (
        f"{r['program']:<{w}}  {r.get('verdict', 'exact' if r['exact'] else 'FAIL'):<11}  {r['edges']:>5}  {r['truth_edges']:>5}  "
        f"{len(r['missing']):>7}  {len(r['extra']):>5}  {r['total_seconds']:>7.1f}"
    )


def _all(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from edgeprune.usecases.recovery import recover_many

    if args.jobs < 1:
        raise EdgePruneError(f"--jobs must be at least 1, got {args.jobs}")
    opts = program_options(args)
    if args.programs_dir:
        if args.programs is not None:
            raise EdgePruneError("give either --programs (library names) or --programs-dir DIR, not both")
        targets, names = _dir_programs(args.programs_dir)
    else:
        names = selected_programs(args)
        targets = names
    jobs = [
        {
            "kind": "program",
            "target": t,
            "label": n,
            "ablation": args.ablation,
            "seed": args.seed,
            "steps": args.steps,
            "program": opts,
        }
        for t, n in zip(targets, names)
    ]
    rows: list[dict | None] = [None] * len(names)
    w = max(len("program"), *(len(n) for n in names))
    t0 = time.perf_counter()
    if not args.json:
        print(f"{'program':<{w}}  verdict      edges  truth  missing  extra  seconds", flush=True)
    shown = 0
    bar = tqdm(
        total=len(names),
        desc="recover --all",
        file=sys.stderr,
        disable=args.json or args.no_progress or not sys.stderr.isatty(),
    )
    with bar:
        for i, row in recover_many(jobs, args.jobs):
            rows[i] = row
            bar.update(1)
            while not args.json and shown < len(rows) and rows[shown] is not None:  # registry order, as they finish
                bar.write(_row_line(rows[shown] or {}, w), file=sys.stdout)
                shown += 1
    total = time.perf_counter() - t0
    done = [r for r in rows if r is not None]
    n_ok = sum(bool(r["exact"]) for r in done)
    counts = verdict_counts(done)
    if args.report:
        from edgeprune.usecases.report import write_report

        command = "edgeprune recover --all" + (f" --programs {','.join(names)}" if args.programs else "")
        command += f" --programs-dir {args.programs_dir}" if args.programs_dir else ""
        command += f" --vocab {args.vocab}" if args.vocab else ""
        command += f" --max-seq-len {args.max_seq_len}" if args.max_seq_len else ""
        command += " --causal" if args.causal else ""
        command += f" --compiler {args.compiler}" if args.compiler != "own" else ""
        command += f" --ablation {args.ablation} --seed {args.seed} --jobs {args.jobs}"
        command += (f" --steps {args.steps}" if args.steps else "") + f" --report {args.report}"
        path = write_report(
            done,
            args.report,
            {
                "command": command,
                "ablation": args.ablation,
                "seed": args.seed,
                "jobs": args.jobs,
                "wall_seconds": round(total, 1),
            },
        )
        if not args.json:
            print(f"report: {path}")
    if args.json:
        for r in done:  # the table's JSON keeps to the comparison; circuits go to the report's results.json
            r.pop("circuit", None)
            r.pop("truth", None)
        print(
            json.dumps(
                {
                    "exact": n_ok == len(done),
                    "passed": n_ok,
                    "total": len(done),
                    "seconds": round(total, 3),
                    "verdicts": counts,
                    "ablation": args.ablation,
                    "seed": args.seed,
                    "jobs": args.jobs,
                    "programs": done,
                }
            )
        )
    else:
        print("verdicts: " + ", ".join(f"{k} {n}" for k, n in counts.items()))
        print(
            f"{n_ok}/{len(done)} exact ({args.ablation} ablation, seed {args.seed}, {args.jobs} job(s)) "
            f"in {total:.0f} s"
        )
    if counts.get("error"):
        return 3
    return 0 if n_ok == len(done) else 1


def _dir_programs(directory: str) -> tuple[list[str], list[str]]:
    """(references, table names) of a programs directory; a function name used in two files gets its file's stem."""
    from collections import Counter
    from pathlib import Path

    from edgeprune.programs.user import programs_in_dir

    refs = programs_in_dir(directory)
    funcs = [r.rpartition(":")[2] for r in refs]
    seen = Counter(funcs)
    names = [f if seen[f] == 1 else f"{Path(r.rpartition(':')[0]).stem}.{f}" for r, f in zip(refs, funcs)]
    return refs, names


def verdict_counts(rows) -> dict:
    from edgeprune.usecases.report import verdict_counts as counts

    return counts(rows)


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except EdgePruneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3


def _run(args: argparse.Namespace) -> int:
    if args.programs_dir and not args.all:
        raise EdgePruneError("--programs-dir DIR runs a directory of programs: add --all")
    if args.target and (args.all or args.programs is not None):
        raise EdgePruneError("give either a program/model or --all/--programs, not both")
    if args.all or args.programs is not None:
        if args.resume or args.run_dir:
            raise EdgePruneError("--run-dir/--resume apply to one program; drop --all")
        if args.report:
            check_output(args.report, overwrite=args.overwrite, flag="--report")
        return _all(args)
    if args.report or args.jobs != 1:
        raise EdgePruneError("--report and --jobs apply to several programs; add --all (or --programs a,b,c)")
    if args.checkpoint_every is not None and args.checkpoint_every < 0:
        raise EdgePruneError(f"--checkpoint-every must be >= 0 (0: only at the end), got {args.checkpoint_every}")
    if args.steps is not None and args.steps < 1:
        raise EdgePruneError(f"--steps must be >= 1, got {args.steps}")
    if args.run_dir and not args.resume:
        check_output(args.run_dir, overwrite=args.overwrite, flag="--run-dir")
    if not args.target:
        raise EdgePruneError("name a program (see `edgeprune programs`) or a model directory, or pass --all")
    if args.resume and not args.run_dir:
        raise EdgePruneError("--resume needs --run-dir pointing at the interrupted run")
    return _one(args)

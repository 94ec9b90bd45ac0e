"""Which registered programs a command that runs many of them (``recover``, ``compare-methods``) works on.

Why one module: ``--all``/``--programs``/``--jobs`` mean the same in every such command, and
so must the parsing of ``--programs`` (registry order, no repeats, unknown names refused).
"""

from __future__ import annotations

import argparse

from edgeprune.core.errors import EdgePruneError


def add_selection_arguments(p: argparse.ArgumentParser, all_help: str, what: str) -> None:
    """``--all``, ``--programs A,B,C`` and ``--jobs N``; ``what`` names the per-program work in ``--jobs``' help."""
    p.add_argument("--all", action="store_true", help=all_help)
    p.add_argument(
        "--programs",
        default=None,
        metavar="A,B,C",
        help="as --all, but only these registered programs (comma-separated)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help=f"with --all/--programs: {what} N programs at a time in worker processes (one torch thread each)",
    )


def selected_programs(args: argparse.Namespace) -> list[str]:
    """Every registered program, or those of ``--programs`` in registry order without repeats."""
    from edgeprune.programs.registry import get_program, program_names

    if args.programs is None:
        return program_names()
    names = [n.strip() for n in args.programs.split(",") if n.strip()]
    if not names:
        raise EdgePruneError("--programs is empty; give registered names separated by commas, e.g. reverse,sort")
    for n in names:
        get_program(n)  # unknown name: an error listing the known ones
    order = {n: i for i, n in enumerate(program_names())}
    return sorted(dict.fromkeys(names), key=order.__getitem__)

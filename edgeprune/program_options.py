"""The program options every command that compiles a program shares: ``--vocab``, ``--max-seq-len``,
``--causal``, ``--compiler``, and what a program argument may be.

Why one module: ``compile``, ``info``, ``run``, ``recover`` and ``compare-methods`` all take a
program, and a program reference (``file.py:function``) or an override must mean the same in each.
"""

from __future__ import annotations

import argparse
from typing import Any

from edgeprune.core.errors import EdgePruneError

PROGRAM_HELP = (
    "a library program name (see `edgeprune programs`), a saved model or Tracr reference directory, "
    "or your own program as path/to/file.py:function or package.module:function "
    "(a function returning a RASP SOp, (program, vocab, max_seq_len) or a ProgramSpec). "
    "Loading a program file RUNS ITS CODE: only name files you trust. Model directories are read "
    "as data, never as code"
)

USER_CODE_NOTE = (
    "A program given as file.py:function or module:function is imported, so its code runs with your "
    "permissions; model directories and data files are never run."
)


def add_program_arguments(p: argparse.ArgumentParser) -> None:
    """``--vocab``, ``--max-seq-len``, ``--causal`` and ``--compiler`` for a command that compiles a program."""
    g = p.add_argument_group("program options", USER_CODE_NOTE)
    g.add_argument(
        "--vocab",
        default=None,
        metavar="A,B,C",
        help="the program's vocab: comma-separated (1,2,3 are numbers, a,b strings) or a JSON list for "
        "mixed types ('[1, \"a\"]'); overrides a library program's or a program file's own",
    )
    g.add_argument(
        "--max-seq-len", type=int, default=None, metavar="N", help="longest input; overrides the program's own"
    )
    g.add_argument("--causal", action="store_true", help="compile a causal (decoder-only) model")
    g.add_argument(
        "--compiler",
        choices=("own", "tracr"),
        default="own",
        help="own: the project's compiler (no jax needed); tracr: compile with real Tracr "
        "(the tracr extra) and convert (default: own)",
    )


def program_options(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments (vocab, max_seq_len, causal, compiler) for ``resolve_model`` / ``recover``."""
    from edgeprune.programs.user import parse_vocab

    vocab = getattr(args, "vocab", None)
    max_seq_len = getattr(args, "max_seq_len", None)
    if max_seq_len is not None and max_seq_len < 1:
        raise EdgePruneError(f"--max-seq-len must be at least 1, got {max_seq_len}")
    return {
        "vocab": parse_vocab(vocab) if vocab is not None else None,
        "max_seq_len": max_seq_len,
        "causal": bool(getattr(args, "causal", False)),
        "compiler": getattr(args, "compiler", "own") or "own",
    }


def overrides_given(opts: dict[str, Any]) -> bool:
    return opts["vocab"] is not None or opts["max_seq_len"] is not None or opts["causal"] or opts["compiler"] != "own"

"""``edgeprune programs``: list the registered RASP programs (name, vocab, length, encoding, description)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "programs",
        help="list the registered RASP programs",
        description="List the RASP programs of the suite with their vocab, max_seq_len and output encoding.",
    )
    p.add_argument("--json", action="store_true", help="print a JSON list (one object per program) instead of a table")
    p.set_defaults(func=run)


def _fmt_vocab(vocab: list[Any]) -> str:
    return "{" + ",".join(str(v) for v in vocab) + "}"


def run(args: argparse.Namespace) -> int:
    from edgeprune.programs.registry import list_programs

    rows = [spec.to_dict() for spec in list_programs()]
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    header = ("name", "vocab", "max_len", "encoding", "inputs", "description")
    table = [
        (
            r["name"],
            _fmt_vocab(r["vocab"]),
            str(r["max_seq_len"]),
            r["output_encoding"],
            str(r["num_inputs"]),
            r["description"] + (f" [inputs: {r['input_constraint']}]" if r["input_constraint"] else ""),
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(header[:-1])]
    for row in [header, *table]:
        print("  ".join(c.ljust(w) for c, w in zip(row[:-1], widths)) + "  " + row[-1])
    return 0

"""The ``edgeprune`` command line: every module in ``edgeprune.commands`` adds its subcommands."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from edgeprune import __version__
from edgeprune.core.errors import EdgePruneError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeprune", description="Edge Pruning circuit discovery, verified on compiled RASP programs."
    )
    parser.add_argument("--version", action="version", version=f"edgeprune {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from edgeprune import commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"edgeprune.commands.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command. Exit status: 0 success, 2 bad input or usage (a message, never a traceback),
    130 interrupted (Ctrl-C); ``recover`` also returns 1 when a circuit misses and 3 on an error."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except EdgePruneError as exc:
        print(f"edgeprune {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"edgeprune {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `edgeprune programs | head`: the reader left, nothing to report
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except OSError as exc:  # unwritable output, full disk, missing file: the path and the reason, no traceback
        where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        print(
            f"edgeprune {args.command}: error:{where} {exc.strerror or exc}; check the path and its permissions "
            "(or free disk space)",
            file=sys.stderr,
        )
        return 2
    except UnicodeDecodeError as exc:
        print(
            f"edgeprune {args.command}: error: an input file is not UTF-8 text ({exc}); pass a UTF-8 file",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())

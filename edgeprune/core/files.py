"""Output targets: nothing is overwritten without consent, and no command writes into its own input."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from edgeprune.core.errors import EdgePruneError


class OutputExistsError(EdgePruneError):
    """An output file or directory already holds data and the user did not say it may be replaced."""


def _inside(path: Path, other: Path) -> bool:
    try:
        path.relative_to(other)
        return True
    except ValueError:
        return False


def check_output(
    target: str | os.PathLike,
    *,
    overwrite: bool = False,
    resume: bool = False,
    inputs: Iterable[str | os.PathLike | None] = (),
    flag: str = "--out",
) -> Path:
    """Refuse ``target`` when it is an existing non-empty directory or file, unless ``overwrite`` or ``resume``.

    ``inputs`` are paths the command reads: the target may never be one of them, contain one, or lie inside
    one of them (``import-tracr REF -o REF`` would destroy the reference), whatever the flags say.
    """
    path = Path(target)
    resolved = path.resolve()
    for src in inputs:
        if src is None:
            continue
        s = Path(src).resolve()
        if resolved == s or _inside(s, resolved) or (s.is_dir() and _inside(resolved, s)):
            raise OutputExistsError(
                f"{flag} {path} is (or holds, or lies inside) the input {src}; write to another path"
            )
    if resume or overwrite:
        if resume and path.exists() and not path.is_dir():
            raise OutputExistsError(f"{flag} {path} is a file, not a run directory")
        return path
    if path.is_dir():
        if any(path.iterdir()):
            has_run = any((path / n).exists() for n in ("checkpoint.json", "checkpoint.safetensors"))
            hint = ", or --resume to continue the run saved there" if has_run else ""
            raise OutputExistsError(
                f"{flag} {path} already exists and is not empty; pass --overwrite to replace "
                f"its contents{hint}, or choose another path"
            )
    elif path.exists():
        if path.stat().st_size > 0:
            raise OutputExistsError(
                f"{flag} {path} already exists; pass --overwrite to replace it, or choose another path"
            )
    return path

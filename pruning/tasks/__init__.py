"""Circuit-finding tasks as clean/corrupted datasets: IOI, IOI-t1, Greater-Than, Gendered Pronoun,
Boolean Expressions (instruction / few-shot) and the paper's custom JSONL format."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeprune.core.errors import EdgePruneError
from edgeprune.pruning.tasks.base import SPLITS, TaskBatch, TaskDataset, TaskExample, encode_examples

TASK_NAMES: tuple[str, ...] = ("ioi", "ioi-t1", "gt", "gp", "boolean-ip", "boolean-fs")

# Per-split sizes used when n is not given (paper §4.1 / §5 train and validation sizes; tests kept small).
DEFAULT_SIZES: dict[str, tuple[int, int, int]] = {
    "ioi": (200, 200, 1000),
    "ioi-t1": (50, 50, 50),
    "gt": (150, 150, 1000),
    "gp": (150, 150, 60),
    "boolean-ip": (3840, 767, 3070),
    "boolean-fs": (3840, 767, 3070),
}


def build_task(
    name: str | Path, tokenizer: Any = None, n: int | Sequence[int] | None = None, seed: int = 0
) -> TaskDataset:
    """A task by name, or a path to a JSONL file in the paper's custom format.

    ``n`` is the number of examples per split, or (train, validation, test); generation is
    seeded so the same (name, n, seed, tokenizer) gives the same splits.
    """
    key = str(name)
    if key in TASK_NAMES:
        sizes = n if n is not None else DEFAULT_SIZES[key]
        if key in ("ioi", "ioi-t1"):
            from edgeprune.pruning.tasks import ioi

            return ioi.build(tokenizer, sizes, seed, single_template=key == "ioi-t1")
        if key == "gt":
            from edgeprune.pruning.tasks import greater_than

            return greater_than.build(tokenizer, sizes, seed)
        if key == "gp":
            from edgeprune.pruning.tasks import gendered_pronoun

            return gendered_pronoun.build(tokenizer, sizes, seed)
        from edgeprune.pruning.tasks import boolean_expressions

        return boolean_expressions.build(tokenizer, sizes, seed, fmt=key.split("-")[1])
    path = Path(key)
    if path.suffix in (".jsonl", ".json") or path.exists():
        from edgeprune.pruning.tasks import custom

        return custom.build(path, tokenizer)
    raise EdgePruneError(f"unknown task {key!r}; choose one of {', '.join(TASK_NAMES)} or give a .jsonl file")


__all__ = ["SPLITS", "TASK_NAMES", "TaskBatch", "TaskDataset", "TaskExample", "build_task", "encode_examples"]

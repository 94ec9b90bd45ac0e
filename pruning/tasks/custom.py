"""The paper's custom task format: JSONL lines ``{"clean": "1 + 2 = <predict>3</predict>", "corrupted": ...}``.

The ``<predict>`` span marks the answer; every position predicting a token of it is a loss
position (as the reference's ``fpt2_custom.py``).  An optional ``"split"`` field
(train/validation/test) assigns the line; lines without one go to train, and when a file names
no validation (or test) lines the train lines are reused for them, as the reference trains and
validates on the same custom file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from edgeprune.core.errors import EdgePruneError
from edgeprune.pruning.tasks.base import SPLITS, TaskDataset, TaskExample

_SPAN = re.compile(r"<predict>(.*?)</predict>", re.DOTALL)
_ALIASES = {"val": "validation", "valid": "validation", "dev": "validation", "eval": "validation"}


def parse_text(text: str, where: str, field: str, required: bool) -> tuple[str, str]:
    """(prompt, answer) of a text with one <predict>...</predict> span at its end."""
    spans = list(_SPAN.finditer(text))
    if not spans:
        if "<predict>" in text or "</predict>" in text:
            raise EdgePruneError(f"{where}: {field!r} has an unclosed <predict> tag; write <predict>answer</predict>")
        if required:
            raise EdgePruneError(
                f"{where}: {field!r} has no <predict>...</predict> span; mark the answer the model should "
                f'predict, e.g. "1 + 2 = <predict>3</predict>"'
            )
        return text, ""
    if len(spans) > 1:
        raise EdgePruneError(f"{where}: {field!r} has {len(spans)} <predict> spans; use exactly one")
    span = spans[0]
    if text[span.end() :].strip():
        raise EdgePruneError(
            f"{where}: {field!r} has text after </predict> ({text[span.end() :]!r}); the answer must end the text"
        )
    if not span.group(1):
        raise EdgePruneError(f"{where}: {field!r} has an empty <predict></predict> span; put the answer inside")
    return text[: span.start()], span.group(1)


def _lines(path: Path) -> list[str]:
    """The file's lines; a byte that is not UTF-8 is reported with its line, not as a decode traceback."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise EdgePruneError(
            f"{path}:{line}: byte 0x{data[err.start]:02x} at column {column} is not UTF-8 text; "
            "save the task file as UTF-8"
        ) from None
    return text.lstrip("\ufeff").splitlines()


def load_jsonl(path: str | Path) -> list[TaskExample]:
    """Parse a custom task file, naming the line of any problem."""
    path = Path(path)
    if not path.is_file():
        raise EdgePruneError(f"task file {path} does not exist; give a JSONL file or a task name")
    out: list[TaskExample] = []
    for lineno, line in enumerate(_lines(path), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise EdgePruneError(
                f"{where}: not valid JSON ({err.msg} at column {err.colno}); each line must be one JSON object "
                '{"clean": ..., "corrupted": ...}'
            ) from None
        except RecursionError:
            raise EdgePruneError(f"{where}: JSON nested too deeply; each line must be one flat JSON object") from None
        if not isinstance(row, dict):
            raise EdgePruneError(
                f'{where}: a line must be a JSON object with string fields "clean" and "corrupted", '
                f"not a {type(row).__name__}"
            )
        for key in ("clean", "corrupted"):
            if key not in row:
                raise EdgePruneError(f'{where}: the field "{key}" is missing; each line needs "clean" and "corrupted"')
            if not isinstance(row[key], str):
                raise EdgePruneError(
                    f'{where}: the field "{key}" must be a string, not {type(row[key]).__name__}; '
                    'each line needs string fields "clean" and "corrupted"'
                )
        clean_p, clean_a = parse_text(row["clean"], where, "clean", required=True)
        corr_p, corr_a = parse_text(row["corrupted"], where, "corrupted", required=False)
        raw_split = row.get("split", "train")
        if not isinstance(raw_split, str):
            raise EdgePruneError(f'{where}: "split" must be a string (train, validation or test), not {raw_split!r}')
        split = _ALIASES.get(raw_split.lower(), raw_split.lower())
        if split not in SPLITS:
            raise EdgePruneError(f"{where}: unknown split {raw_split!r}; use train, validation or test")
        out.append(TaskExample(clean_p, clean_a, corr_p, corr_a, split=split, source=where))
    if not out:
        raise EdgePruneError(
            f'task file {path} has no examples; write one JSON object per line, e.g. {{"clean": '
            '"1 + 2 = <predict>3</predict>", "corrupted": "1 + 5 = <predict>6</predict>"}'
        )
    return out


def build(path: str | Path, tokenizer: Any = None) -> TaskDataset:
    examples = load_jsonl(path)
    splits = {s: [e for e in examples if e.split == s] for s in SPLITS}
    notes: list[str] = []
    if not splits["train"]:
        raise EdgePruneError(f'task file {path} has no train examples; add lines without "split" or with "train"')
    if not splits["validation"]:
        splits["validation"] = list(splits["train"])
        notes.append("no validation lines: validating on the train lines")
    if not splits["test"]:
        splits["test"] = list(splits["validation"])
        notes.append("no test lines: testing on the validation lines")
    return TaskDataset(name=Path(path).stem, splits=splits, tokenizer=tokenizer, notes=notes)

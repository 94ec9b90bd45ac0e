"""A user's own RASP program, named by a reference ``path/to/file.py:function`` or ``package.module:function``.

Why here: a researcher should not edit the registry to study a program of their
own. The function may return a RASP ``SOp`` (from ``edgeprune.programs.rasp``),
a tuple ``(program, vocab, max_seq_len)``, or a ``ProgramSpec`` (for samplers,
constraints or pruning settings of its own). Whatever it returns becomes a
``ProgramSpec`` with the defaults of the registry: every input when there are
few, a seeded sample otherwise; interchange corruptions of the same length from
the same sampler; the output encoding read from the program's annotation.

Loading a reference runs the user's code. Only an explicit reference does that:
model directories and data files are never a source of code.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeprune.core.errors import EdgePruneError
from edgeprune.programs import rasp
from edgeprune.programs.registry import ProgramSpec, sorted_vocab, with_settings


class ProgramReferenceError(EdgePruneError):
    """A program reference that cannot be loaded or does not give a program."""


def is_program_reference(text: str) -> bool:
    """``file.py:function`` or ``package.module:function`` (not a directory, not a bare name)."""
    if ":" not in text or Path(text).is_dir():
        return False
    source, _, func = text.rpartition(":")
    return bool(source) and func.isidentifier()


def split_reference(ref: str) -> tuple[str, str]:
    source, _, func = ref.rpartition(":")
    if not source or not func.isidentifier():
        raise ProgramReferenceError(
            f"program reference {ref!r} is not of the form path/to/file.py:function or package.module:function"
        )
    return source, func


def _is_file_source(source: str) -> bool:
    return source.endswith(".py") or "/" in source or "\\" in source


def _load_module(source: str, ref: str) -> Any:
    if _is_file_source(source):
        path = Path(source).expanduser()
        if path.suffix != ".py":
            raise ProgramReferenceError(f"{ref}: {path} is not a Python file (.py); code is only loaded from .py files")
        if not path.is_file():
            raise ProgramReferenceError(f"{ref}: program file {path} does not exist")
        mod_name = f"edgeprune_user_program_{abs(hash(str(path.resolve())))}"
        spec = importlib.util.spec_from_file_location(mod_name, path)
        if spec is None or spec.loader is None:
            raise ProgramReferenceError(f"{ref}: cannot load {path} as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - the user's code: report, naming the file
            sys.modules.pop(mod_name, None)
            raise ProgramReferenceError(f"{ref}: running {path} failed: {type(exc).__name__}: {exc}") from exc
        return module
    try:
        return importlib.import_module(source)
    except ModuleNotFoundError as exc:
        raise ProgramReferenceError(f"{ref}: module {source!r} cannot be imported ({exc})") from exc
    except Exception as exc:  # noqa: BLE001
        raise ProgramReferenceError(f"{ref}: importing {source} failed: {type(exc).__name__}: {exc}") from exc


def _is_sop(obj: Any) -> bool:
    if isinstance(obj, rasp.SOp):
        return True
    mod = type(obj).__module__ or ""
    return mod.startswith("tracr.") and any(c.__name__ == "SOp" for c in type(obj).__mro__)


def output_encoding_of(program: Any) -> str:
    """``categorical`` or ``numerical`` from the program's annotation (ours or Tracr's rasp)."""
    if isinstance(program, rasp.SOp):
        return rasp.get_encoding(program).name.lower()
    from tracr.rasp import rasp as trasp  # a Tracr program: tracr is installed

    return trasp.get_encoding(program).name.lower()


def parse_vocab(text: str) -> tuple[Any, ...]:
    """``--vocab``: a comma list (``1,2,3`` are ints, ``0.5`` a float, others strings) or a JSON list."""
    import json

    text = text.strip()
    if text.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise EdgePruneError(f"--vocab {text!r} is not a JSON list ({exc})") from exc
        if not isinstance(items, list):
            raise EdgePruneError(f"--vocab {text!r}: expected a JSON list")
        bad = [t for t in items if not isinstance(t, (str, int, float, bool))]
        if bad:
            raise EdgePruneError(f"--vocab: tokens must be strings, numbers or booleans, got {bad!r}")
    else:
        items = [_token(t.strip()) for t in text.split(",") if t.strip()]
    if not items:
        raise EdgePruneError("--vocab is empty; give tokens separated by commas (1,2,3 or a,b,c) or a JSON list")
    return sorted_vocab(items)


def _token(t: str) -> Any:
    for cast in (int, float):
        try:
            return cast(t)
        except ValueError:
            pass
    return t


def spec_from_value(
    value: Any,
    ref: str,
    name: str,
    description: str = "",
    vocab: Sequence[Any] | None = None,
    max_seq_len: int | None = None,
) -> ProgramSpec:
    """Turn what a program function returned (SOp, (SOp, vocab, len) or ProgramSpec) into a ProgramSpec."""
    if isinstance(value, ProgramSpec):
        return with_settings(value, vocab, max_seq_len)
    program, own_vocab, own_len = value, None, None
    if isinstance(value, tuple):
        if len(value) != 3 or not _is_sop(value[0]):
            raise ProgramReferenceError(
                f"{ref}: returned a tuple of {len(value)} items; return (program, vocab, max_seq_len), "
                "a RASP SOp, or a ProgramSpec"
            )
        program, own_vocab, own_len = value
    if not _is_sop(program):
        raise ProgramReferenceError(
            f"{ref}: returned {type(value).__name__}, not a RASP program; return a RASP SOp "
            "(from edgeprune.programs.rasp), (program, vocab, max_seq_len), or a ProgramSpec"
        )
    vocab = vocab if vocab is not None else own_vocab
    max_seq_len = max_seq_len if max_seq_len is not None else own_len
    if vocab is None or max_seq_len is None:
        raise ProgramReferenceError(
            f"{ref}: returns a program without vocab and length; give --vocab and --max-seq-len "
            "(or return (program, vocab, max_seq_len))"
        )
    if not isinstance(max_seq_len, int) or max_seq_len < 1:
        raise ProgramReferenceError(f"{ref}: max_seq_len must be a positive integer, got {max_seq_len!r}")
    func = _rebuild_from(ref)
    try:
        return ProgramSpec(
            name=name,
            description=description or f"user program {ref}",
            build=func if func is not None else (lambda: program),
            vocab=sorted_vocab(vocab),
            max_seq_len=max_seq_len,
            output_encoding=output_encoding_of(program),
            construction=ref,
        )
    except EdgePruneError as exc:
        raise ProgramReferenceError(f"{ref}: {exc}") from exc


_FUNCS: dict[str, Any] = {}


def _rebuild_from(ref: str) -> Any:
    """A builder that calls the user's function again (a fresh graph per build, as registry builders give)."""
    fn = _FUNCS.get(ref)
    if fn is None:
        return None

    def build() -> Any:
        out = fn()
        return out[0] if isinstance(out, tuple) else out

    return build


def load_program(ref: str, vocab: Sequence[Any] | None = None, max_seq_len: int | None = None) -> ProgramSpec:
    """Load ``file.py:function`` / ``module:function`` and return its ProgramSpec (runs the user's code)."""
    source, func_name = split_reference(ref)
    module = _load_module(source, ref)
    fn = getattr(module, func_name, None)
    if fn is None:
        found = sorted(
            n
            for n, v in vars(module).items()
            if callable(v) and not n.startswith("_") and getattr(v, "__module__", None) == module.__name__
        )
        raise ProgramReferenceError(
            f"{ref}: {source} has no function {func_name!r}" + (f"; it defines {', '.join(found)}" if found else "")
        )
    if not callable(fn):
        raise ProgramReferenceError(f"{ref}: {func_name} in {source} is a {type(fn).__name__}, not a function")
    try:
        value = fn()
    except Exception as exc:  # noqa: BLE001 - the user's code
        raise ProgramReferenceError(f"{ref}: calling {func_name}() failed: {type(exc).__name__}: {exc}") from exc
    _FUNCS[ref] = fn
    doc = (getattr(fn, "__doc__", None) or "").strip().splitlines()
    if isinstance(value, ProgramSpec):
        return with_settings(value, vocab, max_seq_len)
    return spec_from_value(value, ref, func_name, doc[0] if doc else "", vocab, max_seq_len)


def program_spec(program: Any, vocab: Sequence[Any], max_seq_len: int, name: str = "program") -> ProgramSpec:
    """A ProgramSpec for a program object (library API), with the defaults above."""
    spec = spec_from_value(program, name, name, "", vocab, max_seq_len)
    return spec


def programs_in_dir(directory: str | Path) -> list[str]:
    """References ``file.py:function`` for every public program function of every ``*.py`` file in ``directory``.

    A program function is a module-level function, defined in that file, whose
    name does not start with ``_`` and that takes no arguments; the file is run
    to find them (the user's code).
    """
    import inspect

    d = Path(directory)
    if not d.is_dir():
        raise EdgePruneError(f"--programs-dir {d} is not a directory")
    refs: list[str] = []
    for path in sorted(d.glob("*.py")):
        if path.name.startswith("_"):
            continue
        module = _load_module(str(path), str(path))
        for n, v in vars(module).items():
            if n.startswith("_") or not inspect.isfunction(v) or v.__module__ != module.__name__:
                continue
            try:
                required = [
                    p
                    for p in inspect.signature(v).parameters.values()
                    if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                ]
            except (TypeError, ValueError):
                continue
            if not required:
                refs.append(f"{path}:{n}")
    if not refs:
        raise EdgePruneError(f"--programs-dir {d}: no program functions (public, no arguments) in its *.py files")
    return refs


__all__ = [
    "ProgramReferenceError",
    "is_program_reference",
    "load_program",
    "parse_vocab",
    "program_spec",
    "programs_in_dir",
    "spec_from_value",
    "output_encoding_of",
]

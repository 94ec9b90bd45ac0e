"""Turn a command-line model argument into a compiled model: a saved model, a Tracr reference, a program name,
or a user's program reference (``file.py:function``, ``package.module:function``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeprune.compiled.io import is_model_dir, load_model
from edgeprune.compiled.model import CompiledTransformer
from edgeprune.core.errors import CompileError, EdgePruneError, ModelFileError

COMPILERS = ("own", "tracr")


def compile_spec(spec: Any, *, compiler: str = "own", causal: bool = False) -> CompiledTransformer:
    """Compile a ``ProgramSpec`` with the project's compiler (``own``) or real Tracr (``tracr``, then converted).

    Errors name the program (for a user program: its ``file.py:function``) and
    the vocab, since a vocab that does not cover what the program compares or
    maps is the usual cause.
    """
    if compiler not in COMPILERS:
        raise EdgePruneError(f"unknown compiler {compiler!r}; use one of {', '.join(COMPILERS)}")
    where = spec.construction if spec.construction and ":" in spec.construction else spec.name
    program = spec.build()
    if compiler == "own" and (type(program).__module__ or "").startswith("tracr."):
        raise EdgePruneError(
            f"{where}: a program built with Tracr's rasp needs --compiler tracr (compiler='tracr'); "
            "or build it with edgeprune.programs.rasp for the own compiler"
        )
    try:
        if compiler == "tracr":
            try:
                from edgeprune.compiled.tracr_live import compile_with_tracr
            except ImportError as exc:
                import importlib.util

                hint = (
                    "this version's Tracr conversion lacks compile_with_tracr"
                    if importlib.util.find_spec("tracr")
                    else "install the tracr extra: pip install -e '.[tracr]'"
                )
                raise EdgePruneError(f"--compiler tracr: {hint} ({exc})") from exc
            model = compile_with_tracr(program, set(spec.vocab), spec.max_seq_len, causal=causal, name=spec.name)
        else:
            from edgeprune.compiled.compiler import compile_program

            model = compile_program(program, set(spec.vocab), spec.max_seq_len, name=spec.name, causal=causal)
    except CompileError as exc:
        raise CompileError(
            f"{where}: cannot compile at vocab {list(spec.vocab)}, max_seq_len {spec.max_seq_len} "
            f"({compiler} compiler): {exc}"
        ) from exc
    except EdgePruneError:
        raise
    except Exception as exc:  # noqa: BLE001 - user programs: a map or comparison failing on a vocab value
        raise CompileError(
            f"{where}: cannot compile at vocab {list(spec.vocab)}, max_seq_len {spec.max_seq_len} ({compiler} "
            f"compiler): {type(exc).__name__}: {exc}. Check that --vocab covers the values the program compares "
            "and maps, with the types it expects"
        ) from exc
    model.metadata.extra.setdefault("input_constraint", spec.input_constraint)
    model.metadata.extra.setdefault("program", spec.name)
    return model


def compile_registered(
    name: str,
    vocab: Sequence[Any] | None = None,
    max_seq_len: int | None = None,
    *,
    compiler: str = "own",
    causal: bool = False,
) -> CompiledTransformer:
    """Compile a program of the library by name (at its own vocab and length unless overridden)."""
    from edgeprune.programs.registry import get_program, with_settings

    return compile_spec(with_settings(get_program(name), vocab, max_seq_len), compiler=compiler, causal=causal)


def program_spec_for(target: str, vocab: Sequence[Any] | None = None, max_seq_len: int | None = None) -> Any:
    """The ProgramSpec of a library name or a user reference (``file.py:function``: runs the user's code)."""
    from edgeprune.programs.registry import get_program, with_settings
    from edgeprune.programs.user import is_program_reference, load_program

    if is_program_reference(target):
        return load_program(target, vocab, max_seq_len)
    return with_settings(get_program(target), vocab, max_seq_len)


def resolve_model(
    spec: str,
    vocab: Sequence[Any] | None = None,
    max_seq_len: int | None = None,
    *,
    causal: bool = False,
    compiler: str = "own",
) -> CompiledTransformer:
    """A saved model directory, a Tracr reference directory, a library program name, or a program reference.

    Directories are read as data only (weights and JSON); code is loaded only
    from an explicit ``file.py:function`` / ``module:function`` reference.
    """
    p = Path(spec)
    if p.is_dir():
        if vocab is not None or max_seq_len is not None or causal or compiler != "own":
            raise EdgePruneError(
                f"{p} is a model directory: it has its own vocab, length and weights; "
                "--vocab/--max-seq-len/--causal/--compiler apply to programs"
            )
        if is_model_dir(p):
            return load_model(p)
        if (p / "params.npz").exists() or (p / "model.json").exists() or (p / "FAILED.txt").exists():
            from edgeprune.compiled.tracr_import import load_reference_dir

            return load_reference_dir(p)[0]
        raise ModelFileError(
            f"{p} is neither a saved model (model.json + weights.safetensors) nor a Tracr reference directory "
            "(model.json + params.npz)"
        )
    from edgeprune.programs.user import is_program_reference

    if not is_program_reference(spec) and ("/" in spec or spec.startswith(".")):
        raise ModelFileError(f"model directory {spec} does not exist")
    try:
        return compile_spec(program_spec_for(spec, vocab, max_seq_len), compiler=compiler, causal=causal)
    except ImportError as exc:
        raise EdgePruneError(
            f"cannot compile {spec!r}: the compiler or program registry is unavailable ({exc})"
        ) from exc

"""Turn a command-line model argument into a compiled model: a saved model, a Tracr reference, or a program name."""

from __future__ import annotations

from pathlib import Path

from edgeprune.compiled.io import is_model_dir, load_model
from edgeprune.compiled.model import CompiledTransformer
from edgeprune.core.errors import EdgePruneError, ModelFileError


def compile_registered(name: str) -> CompiledTransformer:
    """Compile a program of the library by name."""
    from edgeprune.compiled.compiler import compile_program
    from edgeprune.programs.registry import get_program

    spec = get_program(name)
    model = compile_program(spec.build(), spec.vocab, spec.max_seq_len, name=spec.name)
    model.metadata.extra.setdefault("input_constraint", spec.input_constraint)
    model.metadata.extra.setdefault("program", spec.name)
    return model


def resolve_model(spec: str) -> CompiledTransformer:
    """A saved model directory, a Tracr reference directory, or the name of a library program."""
    p = Path(spec)
    if p.is_dir():
        if is_model_dir(p):
            return load_model(p)
        if (p / "params.npz").exists() or (p / "model.json").exists() or (p / "FAILED.txt").exists():
            from edgeprune.compiled.tracr_import import load_reference_dir

            return load_reference_dir(p)[0]
        raise ModelFileError(
            f"{p} is neither a saved model (model.json + weights.safetensors) nor a Tracr reference directory "
            "(model.json + params.npz)"
        )
    if "/" in spec or spec.startswith("."):
        raise ModelFileError(f"model directory {spec} does not exist")
    try:
        return compile_registered(spec)
    except ImportError as exc:
        raise EdgePruneError(f"cannot compile {spec!r}: the compiler or program registry is unavailable ({exc})") from exc

"""The library API: the few calls a researcher needs, each a thin door onto one layer.

Why a module of its own: ``edgeprune/__init__.py`` re-exports these names lazily,
so ``import edgeprune`` stays cheap and the lower layers never import the top.

    >>> import edgeprune as ep
    >>> model = ep.compile("length")
    >>> truth = ep.ground_truth(model)
    >>> result = ep.recover("length")
    >>> result.verdict
    'exact'
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from edgeprune import _API
from edgeprune.compiled.model import CompiledTransformer
from edgeprune.core.circuit import Circuit
from edgeprune.core.errors import EdgePruneError
from edgeprune.pruning.train import PruneConfig, PruneResult
from edgeprune.verify.compare import Comparison

# The names are listed once, in ``edgeprune/__init__.py``, which re-exports them without importing this module.
__all__ = list(_API)


def programs() -> list[str]:
    """Names of the library's programs (``edgeprune programs`` lists them with their settings)."""
    from edgeprune.programs.registry import program_names

    return list(program_names())


def compile(  # noqa: A001 - the name the design card promises
    program: Any,
    vocab: Iterable[Any] | None = None,
    max_seq_len: int | None = None,
    *,
    causal: bool = False,
    name: str | None = None,
) -> CompiledTransformer:
    """Compile a library program (by name) or a RASP program object into a ``CompiledTransformer``.

    A library name takes its own vocab and length unless ``vocab`` / ``max_seq_len``
    override them; a program object needs both.
    """
    from edgeprune.compiled.compiler import compile_program

    if isinstance(program, str):
        from edgeprune.compiled.resolve import compile_spec, program_spec_for

        # a library name, or a "file.py:function" reference (runs that file); overrides rebuild what depends on them
        model = compile_spec(program_spec_for(program, vocab, max_seq_len), causal=causal)
        if name:
            model.metadata.name = name
        return model
    if vocab is None or max_seq_len is None:
        raise EdgePruneError("compile(program, vocab, max_seq_len): a program object needs its vocab and max_seq_len")
    return compile_program(program, set(vocab), max_seq_len, name=name, causal=causal)


def ground_truth(model: CompiledTransformer, ablation: str = "zero") -> Circuit:
    """The compiled model's ground-truth circuit under ``ablation`` (DESIGN.md section 3)."""
    from edgeprune.compiled.ground_truth import ground_truth as _ground_truth

    return _ground_truth(model, ablation)


def check(model: CompiledTransformer, circuit: Circuit | None = None, ablation: str = "zero"):
    """Sufficiency and necessity of ``circuit`` (default: the ground truth) on the model's inputs."""
    from edgeprune.verify.checker import check_ground_truth

    circuit = circuit if circuit is not None else ground_truth(model, ablation)
    return check_ground_truth(model, circuit, ablation)


def prune(
    model: CompiledTransformer,
    inputs: Sequence[Sequence[Any]],
    config: PruneConfig | None = None,
    *,
    run_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = False,
) -> PruneResult:
    """Learn edge masks on ``inputs`` of a compiled model; ``result.circuit`` is the binary circuit.

    Interchange ablation pairs each input with another of the same length. For
    language models use ``edgeprune.pruning.train.prune`` with an adapter from
    ``edgeprune.pruning.adapters.hf_loading``.
    """
    from edgeprune.pruning.adapters.compiled import CompiledAdapter
    from edgeprune.pruning.data import build_data, shuffle_corruption
    from edgeprune.pruning.train import prune as _prune

    config = config or PruneConfig()
    corrupt = shuffle_corruption(inputs) if config.ablation == "interchange" else None
    data = build_data(model, inputs, corrupt, config.seed)
    return _prune(CompiledAdapter(model), data, config, run_dir=run_dir, resume=resume, progress=progress)


def compare(circuit: Circuit, truth: Circuit) -> Comparison:
    """Graph-exact comparison of two circuits, with a readable ``diff()``."""
    from edgeprune.verify.compare import compare as _compare

    return _compare(circuit, truth)


def recover(target: Any, ablation: str = "zero", seed: int = 0, **options: Any):
    """Compile (or load), prune and compare in one call: the project's main job.

    ``target`` is a library program name or a saved model directory. Returns a
    ``RecoveryResult`` (circuit, truth, comparison, timings).
    """
    from edgeprune.usecases.recovery import recover as _recover

    return _recover(str(target), ablation=ablation, seed=seed, **options)


def recover_program(
    program: Any,
    vocab: Iterable[Any] | None = None,
    max_seq_len: int | None = None,
    ablation: str = "zero",
    seed: int = 0,
    **options: Any,
):
    """Recover a program object (``edgeprune.programs.rasp``; Tracr's ``rasp`` with ``compiler="tracr"``).

    Returns a ``ProgramRecovery``: ``model``, ``truth_check`` (the ground truth's sufficiency and
    necessity), ``circuit``, ``truth`` and ``verdict``. Inputs and corruptions follow the defaults of
    ``edgeprune.programs.user``; options: ``steps``, ``name``, ``causal``, ``compiler`` and pruning settings.
    """
    from edgeprune.usecases.recovery import recover_program as _recover_program

    return _recover_program(program, list(vocab) if vocab is not None else None, max_seq_len, ablation, seed, **options)


def from_tracr(assembled: Any, program: Any, vocab: Iterable[Any], max_seq_len: int, name: str = "tracr-model"):
    """Convert a model compiled by real Tracr (``tracr.compiler.compiling.compile_rasp_to_model``)."""
    from edgeprune.compiled.tracr_import import from_tracr_model

    return from_tracr_model(assembled, program, set(vocab), max_seq_len, name=name)


def load_model(path: str | Path) -> CompiledTransformer:
    """A model saved by ``save_model`` or ``edgeprune compile -o``, or a Tracr reference directory."""
    from edgeprune.compiled.resolve import resolve_model

    return resolve_model(str(path))


def save_model(model: CompiledTransformer, directory: str | Path) -> Path:
    """Write ``model.json`` + ``weights.safetensors`` (and its ground truth) to ``directory``."""
    from edgeprune.compiled.io import save_model as _save_model

    return _save_model(model, directory)


def load_circuit(path: str | Path) -> Circuit:
    """A circuit JSON file (``Circuit.save`` writes one)."""
    return Circuit.load(path)


def faithfulness(
    target: str | None = None,
    *,
    model: str | None = None,
    task: str | None = None,
    method: str = "eap",
    ablation: str | None = None,
    seed: int = 0,
    steps: int | None = None,
    examples: Any = None,
    batch_size: int | None = None,
):
    """MIB's faithfulness curves of one method's edge ranking: ``{"complement": curve, "circuit": curve}``.

    ``target`` is a compiled program (name or model directory), or give ``model`` and ``task`` for a
    language model (``examples``: N or (train, validation, test)).  Each curve
    (``edgeprune.usecases.faithfulness.FaithfulnessCurve``) has the budgets, the normalized faithfulness
    ``f`` at each, and its ``cpr`` and ``cmd``; the definitions are in that module.
    """
    from edgeprune.usecases import compare_methods as cm
    from edgeprune.usecases.faithfulness import FaithfulnessCurve
    from edgeprune.usecases.methods import method as method_entry

    method_entry(method)  # an unknown name fails here, naming the methods
    lm = model is not None or task is not None
    if lm == (target is not None) or (lm and (model is None or task is None)):
        raise EdgePruneError("give a compiled program (target), or model and task for a language model")
    opts = cm.Options(
        methods=(method,),
        ablation=ablation or ("interchange" if lm else "zero"),
        seed=seed,
        steps=steps,
        batch_size=batch_size,
        faithfulness=True,
    )
    if lm:
        from edgeprune.pruning.language_models import parse_sizes

        sizes = examples if not isinstance(examples, str) else parse_sizes(examples)
        bench: Any = cm.LMBench(str(model), str(task), opts, sizes)
    else:
        bench = cm.CompiledBench(str(target), opts)
    rows = bench.run_all()
    row = rows[0]
    if row.error:
        raise EdgePruneError(f"{method} on {bench.name}: {row.error}")
    return {mode: FaithfulnessCurve(**c) for mode, c in row.extra["faithfulness"].items()}

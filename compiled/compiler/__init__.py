"""Our RASP -> transformer compiler, pass by pass as in Tracr (google-deepmind/tracr, commit 9ce2b8c).

graph.extract_graph -> validate.validate_graph -> basis_inference.infer_bases
-> expr_to_blocks.add_blocks -> allocation.allocate -> assemble.assemble.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from edgeprune.compiled.compiler.allocation import allocate
from edgeprune.compiled.compiler.assemble import assemble
from edgeprune.compiled.compiler.basis_inference import infer_bases
from edgeprune.compiled.compiler.craft import Direction
from edgeprune.compiled.compiler.expr_to_blocks import add_blocks
from edgeprune.compiled.compiler.graph import ProgramGraph, extract_graph
from edgeprune.compiled.compiler.validate import validate_graph
from edgeprune.compiled.model import CompiledTransformer
from edgeprune.core.errors import CompileError
from edgeprune.programs import rasp

__all__ = ["compile_program", "ProgramGraph"]


def compile_program(
    program: rasp.SOp,
    vocab: Iterable[Any],
    max_seq_len: int,
    *,
    name: str | None = None,
    compiler_bos: Any = "BOS",
    compiler_pad: Any = "compiler_pad",
    causal: bool = False,
    mlp_exactness: float = 100,
    max_layers: int | None = None,
) -> CompiledTransformer:
    """Compile ``program`` for inputs over ``vocab`` of length up to ``max_seq_len``.

    The model carries ``metadata`` (residual labels, nodes, blocks) and, as
    attributes, the ``program`` and its ``rasp_graph`` (not serialised).
    Raises CompileError for programs Tracr cannot compile either.
    """
    vocab_set = set(vocab)
    if not isinstance(max_seq_len, int) or isinstance(max_seq_len, bool) or max_seq_len < 1:
        raise CompileError(f"max_seq_len must be a positive integer, got {max_seq_len!r}")
    if not vocab_set:
        raise CompileError("the vocab is empty, so tokens has an empty value set; pass the program's input tokens")
    for special, what in ((compiler_bos, "compiler_bos"), (compiler_pad, "compiler_pad")):
        if special in vocab_set:
            raise CompileError(
                f"{what} token {special!r} is also in the vocab; choose a {what} that is not a vocab token"
            )
    if compiler_bos == compiler_pad:
        raise CompileError("compiler_bos and compiler_pad must differ")
    graph = extract_graph(program)
    validate_graph(graph)
    infer_bases(graph, vocab_set, max_seq_len)
    add_blocks(graph, Direction("tokens", compiler_bos), Direction("one"), causal, mlp_exactness)
    layout = allocate(graph, max_layers)
    model = assemble(
        graph,
        layout,
        vocab_set,
        max_seq_len,
        name=name or graph.sink,
        bos=compiler_bos,
        pad=compiler_pad,
        causal=causal,
    )
    model.program = program
    model.rasp_graph = graph
    return model

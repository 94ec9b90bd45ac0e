"""Pass 3: choose the block construction for every SOp (Tracr's ``expr_to_craft_graph``)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from edgeprune.compiled.compiler import blocks
from edgeprune.compiled.compiler.basis_inference import call_ignoring_arithmetic_errors
from edgeprune.compiled.compiler.craft import Direction
from edgeprune.compiled.compiler.graph import ProgramGraph
from edgeprune.core.errors import CompileError
from edgeprune.programs import rasp


def _total(f: Callable[..., Any], label: str) -> Callable[..., Any]:
    """f with arithmetic errors mapped to None (no output direction), other errors as CompileError."""
    return lambda *args: call_ignoring_arithmetic_errors(f, label, *args)


def _attn_fn(sel: rasp.Select, label: str) -> Callable[[Direction, Direction], bool]:
    """The selector as a function of (query direction, key direction); RASP's predicate takes (key, query)."""
    pred = sel.predicate

    def fn(q: Direction, k: Direction) -> bool:
        try:
            r = pred(k.value, q.value)
        except Exception as exc:
            raise CompileError(
                f"the predicate of Select {sel.label!r} (used by {label!r}) raises {type(exc).__name__}: {exc} on "
                f"key={k.value!r}, query={q.value!r}; a predicate must accept every pair of key and query values "
                "(check the value sets of its keys and queries)"
            ) from exc
        if not isinstance(r, (bool, int)) and not hasattr(r, "__bool__"):
            raise CompileError(f"the predicate of Select {sel.label!r} returns {r!r}, not a boolean")
        return bool(r)

    return fn


def _call_for(label: str, f, *args):
    return call_ignoring_arithmetic_errors(f, label, *args)


def _or_zero(f, x):
    return f(x) or 0


def _diagonal(f, x):
    return f(x, x)


def add_blocks(graph: ProgramGraph, bos: Direction, one: Direction, causal: bool, mlp_exactness: float) -> None:
    for label, node in graph.nodes.items():
        expr = node.expr
        if not node.is_sop or isinstance(expr, (rasp.TokensType, rasp.IndicesType)):
            continue
        basis = lambda e: graph.nodes[e.label].output_basis  # noqa: E731
        call = functools.partial(_call_for, label)  # bound to this node's label, not the loop's last
        if isinstance(expr, rasp.Map):
            inner = expr.inner
            inner_vs = graph.nodes[inner.label].value_set
            f = _total(expr.f, label)
            hidden_name = f"_hidden_{label}_"
            if rasp.is_categorical(inner) and rasp.is_categorical(expr):
                node.block = blocks.map_categorical_mlp(basis(inner), node.output_basis, f, label, label)
            elif rasp.is_categorical(inner) and rasp.is_numerical(expr):
                g = functools.partial(_or_zero, f)  # None -> 0: no contribution
                node.block = blocks.map_categorical_to_numerical_mlp(basis(inner), node.output_basis[0], g, label)
            elif rasp.is_numerical(inner) and rasp.is_categorical(expr):
                node.block = blocks.map_numerical_to_categorical_mlp(
                    expr.f, basis(inner)[0], node.output_basis, inner_vs, one, mlp_exactness, hidden_name, label, call
                )
            else:
                node.block = blocks.map_numerical_mlp(
                    expr.f,
                    basis(inner)[0],
                    node.output_basis[0],
                    inner_vs,
                    one,
                    mlp_exactness,
                    hidden_name,
                    label,
                    call,
                )
        elif isinstance(expr, rasp.LinearSequenceMap):
            node.block = blocks.linear_sequence_map_mlp(
                basis(expr.fst)[0],
                basis(expr.snd)[0],
                node.output_basis[0],
                expr.fst_fac,
                expr.snd_fac,
                f"_hidden_{label}_",
                label,
            )
        elif isinstance(expr, rasp.SequenceMap):
            f = _total(expr.f, label)
            if basis(expr.fst) == basis(expr.snd):
                node.block = blocks.map_categorical_mlp(
                    basis(expr.fst), node.output_basis, functools.partial(_diagonal, f), label, label
                )
            else:
                node.block = blocks.sequence_map_categorical_mlp(
                    basis(expr.fst), basis(expr.snd), node.output_basis, f, label, one, f"_hidden_{label}_", label
                )
        elif isinstance(expr, rasp.Aggregate):
            sel = expr.selector
            node.block = blocks.categorical_attn(
                basis(sel.queries),
                basis(sel.keys),
                basis(expr.sop),
                node.output_basis,
                bos,
                one,
                _attn_fn(sel, label),
                label,
                always_attend_to_bos=False,
                use_bos_for_default_output=True,
                softmax_coldness=100.0,
                causal=causal,
            )
        elif isinstance(expr, rasp.SelectorWidth):
            sel = expr.selector
            node.block = blocks.selector_width(
                basis(sel.queries),
                basis(sel.keys),
                node.output_basis,
                bos,
                one,
                _attn_fn(sel, label),
                node.value_set,
                rasp.is_categorical(expr),
                mlp_exactness,
                label,
                call,
                softmax_coldness=100.0,
                causal=False,
            )
        else:  # validate_graph has already rejected everything else
            raise CompileError(f"{type(expr).__name__} {label!r} cannot be translated to a model block")

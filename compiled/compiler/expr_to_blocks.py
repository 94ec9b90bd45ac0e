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


def _lookup(f: Callable[..., Any], label: str, construct: str, *, none_ok: bool = True) -> Callable[..., Any]:
    """f for an MLP lookup table over categorical operands: Tracr evaluates f on every operand value while it
    builds the table and does not catch arithmetic errors there (value-set inference does), so neither do we."""

    def table(*args: Any) -> Any:
        shown = repr(args[0]) if len(args) == 1 else "(" + ", ".join(repr(a) for a in args) + ")"
        try:
            r = f(*args)
        except ArithmeticError as exc:
            raise CompileError(
                f"{construct} {label!r} raises {type(exc).__name__}: {exc} on {shown}, a value its categorical "
                "operands can take (value sets over-approximate: a SelectorWidth such as make_length() can be 0); "
                "its MLP is a lookup table over every such value, which Tracr refuses to build: make the function "
                "total there (e.g. `(i + 1) % n if n else 0`, or a comparison instead of the division)"
            ) from exc
        except Exception:  # noqa: BLE001 - any other failure: re-raised as the value-set pass's CompileError
            return call_ignoring_arithmetic_errors(f, label, *args)
        if r is None and not none_ok:
            raise CompileError(
                f"{construct} {label!r} returns None on {shown}; a numerical Map of a categorical SOp stores f(x) "
                "as a weight for every value x (Tracr refuses None there): return a number (e.g. 0) instead"
            )
        return r

    return table


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
            hidden_name = f"_hidden_{label}_"
            if rasp.is_categorical(inner) and rasp.is_categorical(expr):
                f = _lookup(expr.f, label, "categorical Map")
                node.block = blocks.map_categorical_mlp(basis(inner), node.output_basis, f, label, label)
            elif rasp.is_categorical(inner) and rasp.is_numerical(expr):
                f = _lookup(expr.f, label, "numerical Map", none_ok=False)
                node.block = blocks.map_categorical_to_numerical_mlp(basis(inner), node.output_basis[0], f, label)
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
            f = _lookup(expr.f, label, "SequenceMap")
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

"""Pass 2: the set of values every SOp can take, and its residual subspace (Tracr's ``basis_inference``).

Value sets are computed from the operands' value sets by brute force, as in
Tracr: a Map applies ``f`` to every input value, a SequenceMap to every pair,
a SelectorWidth takes 0..max_seq_len, a numerical mean Aggregate of a 0/1 SOp
takes ``v / n`` for n in 1..max_seq_len (a SOp whose values truncate to
0 or 1, so {0} or {1} alone too, as in Tracr).  Arithmetic errors drop the value
(Tracr's ``ignoring_arithmetic_errors``).
"""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Callable
from typing import Any

from edgeprune.compiled.compiler.craft import Direction, from_values
from edgeprune.compiled.compiler.graph import GraphNode, ProgramGraph
from edgeprune.core.errors import CompileError
from edgeprune.programs import rasp


def call_ignoring_arithmetic_errors(f: Callable[..., Any], label: str, *args: Any) -> Any:
    """``f(*args)``, or None on an arithmetic error (Tracr's rule); any other error is a compile error."""
    try:
        return f(*args)
    except ArithmeticError:
        return None
    except Exception as exc:  # a user function that fails on a value it can receive
        shown = ", ".join(repr(a) for a in args)
        raise CompileError(
            f"the function of {label!r} raises {type(exc).__name__}: {exc} on the input ({shown}), a value its "
            "operand can take; make the function total over its operands' value sets (or return None there)"
        ) from exc


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Number) and not isinstance(v, complex)


def _compute_value_set(node: GraphNode, graph: ProgramGraph, vocab: set, max_seq_len: int) -> set:
    expr = node.expr
    vs = lambda e: graph.nodes[e.label].value_set  # noqa: E731
    if isinstance(expr, rasp.TokensType):
        return set(vocab)
    if isinstance(expr, rasp.IndicesType):
        return set(range(max_seq_len))
    if isinstance(expr, rasp.SelectorWidth):
        return set(range(0, max_seq_len + 1))
    if isinstance(expr, rasp.Map):
        out = set()
        for x in vs(expr.inner):
            r = call_ignoring_arithmetic_errors(expr.f, node.label, x)
            if r is not None:
                out.add(r)
        return out
    if isinstance(expr, rasp.SequenceMap):
        out = set()
        for x, y in itertools.product(vs(expr.fst), vs(expr.snd)):
            r = call_ignoring_arithmetic_errors(expr.f, node.label, x, y)
            if r is not None:
                out.add(r)
        return out
    if isinstance(expr, rasp.Aggregate):
        inner = vs(expr.sop)
        if rasp.is_categorical(expr):
            return set(inner)
        try:
            as_ints = {int(x) for x in inner}
        except (TypeError, ValueError):
            as_ints = None
        if as_ints is None or not as_ints <= {0, 1}:  # Tracr's test: int(x) in {0, 1}, so {0} or {1} alone compile
            raise CompileError(
                f"numerical Aggregate {node.label!r} averages {expr.sop.label!r} whose values are {sorted(map(str, inner))}; "
                "a numerical mean can only average a 0/1 (boolean) SOp: aggregate a numerical Map to {0, 1} instead"
            )
        return {v / n for v in inner for n in range(1, max_seq_len + 1)}
    raise CompileError(f"cannot infer the values of {type(expr).__name__} {node.label!r}")


def infer_bases(graph: ProgramGraph, vocab: set, max_seq_len: int) -> None:
    """Fill ``value_set`` and ``output_basis`` of every SOp node, operands first."""
    order: list[str] = []
    seen: set[str] = set()

    def visit(label: str) -> None:  # post-order: operands before users
        if label in seen:
            return
        seen.add(label)
        for child in graph.nodes[label].expr.children:
            visit(child.label)
        order.append(label)

    visit(graph.sink)
    for label in order:
        node = graph.nodes[label]
        if not node.is_sop:
            continue
        values = _compute_value_set(node, graph, vocab, max_seq_len)
        if not values:
            raise CompileError(
                f"{type(node.expr).__name__} {label!r} has an empty value set (its function gives None or an "
                "arithmetic error on every input, or the vocab is empty); make sure it returns a value for some input"
            )
        node.value_set = values
        if rasp.is_numerical(node.expr):
            bad = [v for v in values if not _is_number(v)]
            if bad:
                raise CompileError(
                    f"numerical SOp {label!r} takes non-numeric values {sorted(map(repr, bad))[:5]}; a numerical "
                    "encoding stores one number per position: make it categorical (rasp.categorical) or map to numbers"
                )
            node.output_basis = [Direction(label)]
        else:
            node.output_basis = from_values(label, values)


def value_set_for_metadata(node: GraphNode) -> list:
    """Categorical: values in basis order; numerical: sorted values (the reference's convention)."""
    if node.value_set is None:
        return []
    if rasp.is_numerical(node.expr):
        return sorted(node.value_set)
    return [d.value for d in node.output_basis]

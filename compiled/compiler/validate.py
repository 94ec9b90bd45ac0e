"""Pass 0: reject programs Tracr cannot compile, before any work, with a message that says how to fix them.

The checks are Tracr's ``validating.static_validate`` plus the
``NotImplementedError``s its later passes raise, gathered in one place.
"""

from __future__ import annotations

from edgeprune.compiled.compiler.graph import ProgramGraph
from edgeprune.core.errors import CompileError
from edgeprune.programs import rasp

_UNSUPPORTED_SOPS = (rasp.Full, rasp.ConstantSOp, rasp.LengthType)


def _describe(expr: rasp.RASPExpr) -> str:
    return f"{type(expr).__name__} {expr.label!r}"


def validate_graph(graph: ProgramGraph) -> None:
    """Raise CompileError on the first unsupported expression (graph order = BFS from the output)."""
    if "tokens" not in graph.nodes:
        raise CompileError(
            "the program does not read rasp.tokens, so the compiled model would have no input; "
            "build the program from rasp.tokens (and rasp.indices)"
        )
    for node in graph.nodes.values():
        expr = node.expr
        if isinstance(expr, (rasp.TokensType, rasp.IndicesType)):
            if rasp.is_numerical(expr):
                raise CompileError(
                    f"{expr.label} is numerically encoded; tokens and indices must stay categorical: "
                    f"drop rasp.numerical(...) around {expr.label} and convert with a numerical Map instead"
                )
            continue
        if isinstance(expr, _UNSUPPORTED_SOPS):
            raise CompileError(
                f"{_describe(expr)} cannot be compiled (Tracr has no construction for it); "
                "use lib.make_length() instead of rasp.length, and a Map of tokens instead of Full / ConstantSOp"
            )
        if isinstance(expr, rasp.ConstantSelector):
            raise CompileError(f"{_describe(expr)} is for evaluator tests only and cannot be compiled; use a Select")
        if isinstance(expr, (rasp.SelectorAnd, rasp.SelectorOr, rasp.SelectorNot)):
            raise CompileError(
                f"composite selector {_describe(expr)} cannot be compiled; combine Selects with the same keys and "
                "queries (then &, |, ~ fold into one Select with a compound predicate)"
            )
        if isinstance(expr, rasp.Select):
            for role, sop in (("keys", expr.keys), ("queries", expr.queries)):
                if not rasp.is_categorical(sop):
                    raise CompileError(
                        f"Select {expr.label!r} has numerical {role} {sop.label!r}; Select keys and queries must be "
                        f"categorical: wrap them with rasp.categorical(...) or convert with a categorical Map"
                    )
        if isinstance(expr, (rasp.Aggregate, rasp.SelectorWidth)) and not isinstance(expr.selector, rasp.Select):
            raise CompileError(
                f"{_describe(expr)} uses the composite selector {expr.selector.label!r}; only a plain Select can be "
                "compiled: combine Selects that share keys and queries so that &, |, ~ fold into one Select"
            )
        if isinstance(expr, rasp.Aggregate):
            out_enc, in_enc = rasp.get_encoding(expr), rasp.get_encoding(expr.sop)
            if out_enc != in_enc:
                if rasp.is_numerical(expr):
                    fix = (
                        f"mark the aggregated SOp numerical (rasp.numerical({expr.sop.label})) or make the "
                        "Aggregate categorical"
                    )
                else:
                    fix = (
                        f"mark the Aggregate numerical (rasp.numerical(Aggregate(...))) or aggregate a categorical "
                        f"version of {expr.sop.label!r}"
                    )
                raise CompileError(
                    f"{out_enc.value} Aggregate {expr.label!r} of the {in_enc.value} SOp {expr.sop.label!r} is not "
                    f"supported: an Aggregate's encoding must match its input's; {fix}"
                )
            if rasp.is_categorical(expr) and expr.default is not None:
                raise CompileError(
                    f"categorical Aggregate {expr.label!r} has default {expr.default!r}; only default=None compiles"
                )
            if rasp.is_numerical(expr) and expr.default != 0:
                raise CompileError(
                    f"numerical Aggregate {expr.label!r} has default {expr.default!r}; only default=0 compiles"
                )
        if isinstance(expr, rasp.LinearSequenceMap):
            if not all(rasp.is_numerical(x) for x in (expr.fst, expr.snd, expr)):
                raise CompileError(
                    f"LinearSequenceMap {expr.label!r} needs numerical inputs and output; wrap {expr.fst.label!r}, "
                    f"{expr.snd.label!r} and the LinearSequenceMap itself in rasp.numerical(...)"
                )
        elif isinstance(expr, rasp.SequenceMap):
            if not all(rasp.is_categorical(x) for x in (expr.fst, expr.snd, expr)):
                raise CompileError(
                    f"SequenceMap {expr.label!r} needs categorical inputs and output (only LinearSequenceMap is "
                    "numerical); convert the numerical operand with a categorical Map first, or use LinearSequenceMap"
                )
        if isinstance(expr, rasp.SOp) and not isinstance(
            expr, (rasp.Map, rasp.SequenceMap, rasp.Aggregate, rasp.SelectorWidth)
        ):
            raise CompileError(f"{_describe(expr)} is not an SOp type the compiler knows")

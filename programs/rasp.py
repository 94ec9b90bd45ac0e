"""RASP: the language of sequence operations (SOps) and selectors, with its reference evaluator.

The API mirrors Tracr's ``tracr.rasp.rasp`` module (commit 9ce2b8c) so that a
program written for Tracr ports by changing the import.  Behaviour that the
compiler and the reference data depend on is kept on purpose:

* labels are ``{name}_{unique_id}`` where the id comes from one global counter
  and is drawn lazily, the first time an expression's id is needed (so ids
  follow the compiler's graph traversal, exactly as in Tracr);
* ``Map(f, Map(g, x))`` collapses into ``Map(f . g, x)`` unless
  ``simplify=False``;
* ``&``, ``|``, ``~`` on two Selects with the same keys and queries fold into
  one Select with a compound predicate;
* ``evaluate`` averages numbers, returns the lone selected value when exactly
  one is selected, and gives ``default`` when nothing is selected.
"""

from __future__ import annotations

import copy as _copy
import enum
import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, Union

Value = Union[None, int, float, str, bool]
SelectorValue = list[list[bool]]
NumericValue = Union[int, float]
ExprT = TypeVar("ExprT", bound="RASPExpr")
SOpT = TypeVar("SOpT", bound="SOp")

_NAME = "name"
_ENCODING = "encoding"

# Annotation key -> function of the expression giving its default, read lazily (Tracr's DEFAULT_ANNOTATORS);
# "name" and "encoding" are registered below, once their functions exist.
DEFAULT_ANNOTATORS: dict[str, Callable[[RASPExpr], Any]] = {}


class RASPExpr:
    """Base of every RASP expression; holds annotations (name, encoding) and a lazily drawn id."""

    _ids = itertools.count(1)

    def __init__(self) -> None:
        self._annotations: dict[str, Any] = {}
        self._unique_id: int | None = None

    # Expressions are graph nodes, compared by identity (SOp overrides == to build Maps).
    __hash__ = object.__hash__

    def __call__(self, xs: Sequence[Value]) -> Any:
        return evaluate(self, xs)

    @property
    def annotations(self) -> Mapping[str, Any]:
        """Annotations given so far plus the defaults of ``DEFAULT_ANNOTATORS``, filled in on first read."""
        for key, annotator in DEFAULT_ANNOTATORS.items():
            if key not in self._annotations and (key != _ENCODING or isinstance(self, SOp)):
                self._annotations[key] = annotator(self)
        return dict(self._annotations)

    @annotations.setter
    def annotations(self, value: Mapping[str, Any]) -> None:
        self._annotations = dict(value)

    @property
    def name(self) -> str:
        return self.annotations[_NAME]

    @property
    def children(self) -> Sequence[RASPExpr]:
        raise NotImplementedError

    @property
    def unique_id(self) -> int:
        """Drawn from the global counter the first time it is needed, as Tracr does."""
        if self._unique_id is None:
            self._unique_id = next(RASPExpr._ids)
        return self._unique_id

    @property
    def label(self) -> str:
        return f"{self.name}_{self.unique_id}"

    def copy(self: ExprT) -> ExprT:
        """A shallow copy with its own annotations and a new id (drawn when first needed), as in Tracr."""
        new = _copy.copy(self)
        new._annotations = dict(self._annotations)
        new._unique_id = None
        return new

    def named(self: ExprT, name: str) -> ExprT:
        return annotate(self, name=name)

    def annotated(self: ExprT, **annotations: Any) -> ExprT:
        return annotate(self, **annotations)


def annotate(expr: ExprT, **annotations: Any) -> ExprT:
    """A copy of ``expr`` with ``annotations`` added (new keys win); ``expr`` itself is unchanged, as in Tracr."""
    new = expr.copy()
    new._annotations = {**expr.annotations, **annotations}
    return new


# ----------------------------------------------------------------------------- SOps


class SOp(RASPExpr):
    """A sequence operation: list of values -> list of values (one per position)."""

    # Comparison and arithmetic operators build Maps (with a constant) or SequenceMaps (two SOps).
    def __lt__(self, other: Value) -> SOp:
        return Map(lambda x: x < other, self)

    def __le__(self, other: Value) -> SOp:
        return Map(lambda x: x <= other, self)

    def __eq__(self, other: Value) -> SOp:  # type: ignore[override]
        return Map(lambda x: x == other, self)

    def __ne__(self, other: Value) -> SOp:  # type: ignore[override]
        return Map(lambda x: x != other, self)

    def __gt__(self, other: Value) -> SOp:
        return Map(lambda x: x > other, self)

    def __ge__(self, other: Value) -> SOp:
        return Map(lambda x: x >= other, self)

    __hash__ = RASPExpr.__hash__

    def _binary(self, other: Any, op: Callable[[Any, Any], Any], reflected: bool) -> SOp:
        if isinstance(other, SOp):
            return SequenceMap(op, other, self) if reflected else SequenceMap(op, self, other)
        if reflected:
            return Map(lambda x: op(other, x), self)
        return Map(lambda x: op(x, other), self)

    def __add__(self, other: Any) -> SOp:
        return self._binary(other, lambda x, y: x + y, False)

    def __radd__(self, other: Any) -> SOp:
        return self._binary(other, lambda x, y: x + y, True)

    def __sub__(self, other: Any) -> SOp:
        return self._binary(other, lambda x, y: x - y, False)

    def __rsub__(self, other: Any) -> SOp:
        return self._binary(other, lambda x, y: x - y, True)

    def __mul__(self, other: Any) -> SOp:
        return self._binary(other, lambda x, y: x * y, False)

    def __rmul__(self, other: Any) -> SOp:
        return self._binary(other, lambda x, y: x * y, True)

    def __truediv__(self, other: Any) -> SOp:
        return self._binary(other, lambda x, y: x / y, False)

    def __rtruediv__(self, other: Any) -> SOp:
        return self._binary(other, lambda x, y: x / y, True)

    def __invert__(self) -> SOp:
        return Map(lambda x: not x, self)

    def __and__(self, other: Any) -> SOp:
        return self._binary(other, lambda x, y: x and y, False)

    def __rand__(self, other: Any) -> SOp:
        return self._binary(other, lambda x, y: x and y, True)

    def __or__(self, other: Any) -> SOp:
        return self._binary(other, lambda x, y: x or y, False)

    def __ror__(self, other: Any) -> SOp:
        return self._binary(other, lambda x, y: x or y, True)


class TokensType(SOp):
    """The input tokens."""

    @property
    def children(self) -> Sequence[RASPExpr]:
        return []

    @property
    def label(self) -> str:
        return "tokens"

    def __repr__(self) -> str:
        return "tokens"


class IndicesType(SOp):
    """The position of each token (0-based)."""

    @property
    def children(self) -> Sequence[RASPExpr]:
        return []

    @property
    def label(self) -> str:
        return "indices"

    def __repr__(self) -> str:
        return "indices"


class LengthType(SOp):
    """The input length at every position (evaluator only; the compiler uses make_length instead)."""

    @property
    def children(self) -> Sequence[RASPExpr]:
        return []

    @property
    def label(self) -> str:
        return "length"

    def __repr__(self) -> str:
        return "length"


tokens = TokensType()
indices = IndicesType()
length = LengthType()


def _check(cond: bool, message: str) -> None:
    """Reject a malformed expression at construction time (a TypeError, like a wrong argument)."""
    if not cond:
        raise TypeError(message)


class Map(SOp):
    """Apply ``f`` to every element of ``inner``; nested Maps collapse when ``simplify``."""

    def __init__(self, f: Callable[[Value], Value], inner: SOp, simplify: bool = True):
        super().__init__()
        _check(isinstance(inner, SOp), f"Map expects an SOp as inner, got {inner!r}")
        _check(callable(f) and not isinstance(f, RASPExpr), f"Map expects a function, got {f!r}")
        self.f = f
        self.inner = inner
        if simplify and isinstance(inner, Map):
            g = inner.f
            self.f = lambda x: f(g(x))
            self.inner = inner.inner

    @property
    def children(self) -> Sequence[RASPExpr]:
        return [self.inner]


class SequenceMap(SOp):
    """Apply ``f`` to the pair of elements of ``fst`` and ``snd`` at every position."""

    def __init__(self, f: Callable[[Value, Value], Value], fst: SOp, snd: SOp):
        super().__init__()
        _check(isinstance(fst, SOp) and isinstance(snd, SOp), "SequenceMap expects two SOps")
        _check(callable(f) and not isinstance(f, RASPExpr), f"SequenceMap expects a function, got {f!r}")
        self.f = f
        self.fst = fst
        self.snd = snd

    @property
    def children(self) -> Sequence[RASPExpr]:
        return [self.fst, self.snd]


class LinearSequenceMap(SequenceMap):
    """``fst_fac * fst + snd_fac * snd`` on numerical SOps; Tracr compiles it to a four-neuron MLP."""

    def __init__(self, fst: SOp, snd: SOp, fst_fac: float, snd_fac: float):
        super().__init__(lambda x, y: fst_fac * x + snd_fac * y, fst, snd)
        self.fst_fac = fst_fac
        self.snd_fac = snd_fac


class Full(SOp):
    """The constant ``fill`` at every position."""

    def __init__(self, fill: Value):
        super().__init__()
        self.fill = fill

    @property
    def children(self) -> Sequence[RASPExpr]:
        return []


class ConstantSOp(SOp):
    """A fixed sequence, for tests of the evaluator."""

    def __init__(self, value: Sequence[Value], check_length: bool = True):
        super().__init__()
        self.value = value
        self.check_length = check_length

    @property
    def children(self) -> Sequence[RASPExpr]:
        return []


def sop_not(sop: SOp) -> SOp:
    return Map(lambda x: not x, sop)


# ----------------------------------------------------------------------------- selectors


class Comparison(enum.Enum):
    """The predicates the compiler knows; called as ``predicate(key, query)``."""

    EQ = "=="
    LT = "<"
    LEQ = "<="
    GT = ">"
    GEQ = ">="
    NEQ = "!="
    TRUE = "True"
    FALSE = "False"

    def __call__(self, key: Value, query: Value) -> bool:
        if key is None:
            raise ValueError("key is None!")
        if query is None:
            raise ValueError("query is None!")
        return _COMPARISONS[self](key, query)


_COMPARISONS: dict[Comparison, Callable[[Any, Any], bool]] = {
    Comparison.EQ: lambda k, q: k == q,
    Comparison.LT: lambda k, q: k < q,
    Comparison.LEQ: lambda k, q: k <= q,
    Comparison.GT: lambda k, q: k > q,
    Comparison.GEQ: lambda k, q: k >= q,
    Comparison.NEQ: lambda k, q: k != q,
    Comparison.TRUE: lambda k, q: True,
    Comparison.FALSE: lambda k, q: False,
}

Predicate = Callable[[Value, Value], bool]


class Selector(RASPExpr):
    """A boolean query x key matrix; ``&``, ``|``, ``~`` combine selectors."""

    def __and__(self, other: Selector) -> Selector:
        return selector_and(self, other)

    def __rand__(self, other: Selector) -> Selector:
        return selector_and(other, self)

    def __or__(self, other: Selector) -> Selector:
        return selector_or(self, other)

    def __ror__(self, other: Selector) -> Selector:
        return selector_or(other, self)

    def __invert__(self) -> Selector:
        return selector_not(self)


class Select(Selector):
    """``selected[q][k] = predicate(keys[k], queries[q])``."""

    def __init__(self, keys: SOp, queries: SOp, predicate: Predicate):
        super().__init__()
        _check(isinstance(keys, SOp) and isinstance(queries, SOp), "Select expects SOps as keys and queries")
        self.keys = keys
        self.queries = queries
        self.predicate = predicate

    @property
    def children(self) -> Sequence[RASPExpr]:
        return [self.keys, self.queries]


class ConstantSelector(Selector):
    """A fixed selection matrix, for tests of the evaluator."""

    def __init__(self, value: SelectorValue, check_length: bool = True):
        super().__init__()
        self.value = value
        self.check_length = check_length

    @property
    def children(self) -> Sequence[RASPExpr]:
        return []


class SelectorWidth(SOp):
    """How many keys each query selects."""

    def __init__(self, selector: Selector):
        super().__init__()
        _check(isinstance(selector, Selector), f"SelectorWidth expects a Selector, got {selector!r}")
        self.selector = selector

    @property
    def children(self) -> Sequence[RASPExpr]:
        return [self.selector]


class SelectorAnd(Selector):
    def __init__(self, fst: Selector, snd: Selector):
        super().__init__()
        _check(isinstance(fst, Selector) and isinstance(snd, Selector), "SelectorAnd expects two Selectors")
        self.fst = fst
        self.snd = snd

    @property
    def children(self) -> Sequence[RASPExpr]:
        return [self.fst, self.snd]


class SelectorOr(Selector):
    def __init__(self, fst: Selector, snd: Selector):
        super().__init__()
        _check(isinstance(fst, Selector) and isinstance(snd, Selector), "SelectorOr expects two Selectors")
        self.fst = fst
        self.snd = snd

    @property
    def children(self) -> Sequence[RASPExpr]:
        return [self.fst, self.snd]


class SelectorNot(Selector):
    def __init__(self, inner: Selector):
        super().__init__()
        _check(isinstance(inner, Selector), "SelectorNot expects a Selector")
        self.inner = inner

    @property
    def children(self) -> Sequence[RASPExpr]:
        return [self.inner]


def selector_not(inner: Selector, simplify: bool = True) -> Selector:
    """``~sel``; a Select becomes a Select with the negated predicate."""
    if simplify and isinstance(inner, Select):
        pred = inner.predicate
        return Select(inner.keys, inner.queries, lambda k, q: not pred(k, q))
    return SelectorNot(inner)


def selector_and(fst: Selector, snd: Selector, simplify: bool = True) -> Selector:
    if simplify and isinstance(fst, Select) and isinstance(snd, Select):
        merged = _merge_selects(fst, snd, lambda a, b: a and b)
        if merged is not None:
            return merged
    return SelectorAnd(fst, snd)


def selector_or(fst: Selector, snd: Selector, simplify: bool = True) -> Selector:
    if simplify and isinstance(fst, Select) and isinstance(snd, Select):
        merged = _merge_selects(fst, snd, lambda a, b: a or b)
        if merged is not None:
            return merged
    return SelectorOr(fst, snd)


def _merge_selects(fst: Select, snd: Select, combine: Callable[[bool, bool], bool]) -> Select | None:
    """One Select for two with shared keys/queries (a Full side matches anything, its fill baked in)."""
    p1, p2 = fst.predicate, snd.predicate
    keys: SOp | None = None
    queries: SOp | None = None
    if isinstance(fst.keys, Full):
        keys = snd.keys
        p1 = (lambda p, fill: lambda k, q: p(fill, q))(p1, fst.keys.fill)
    if isinstance(snd.keys, Full):
        keys = fst.keys
        p2 = (lambda p, fill: lambda k, q: p(fill, q))(p2, snd.keys.fill)
    if isinstance(fst.queries, Full):
        queries = snd.queries
        p1 = (lambda p, fill: lambda k, q: p(k, fill))(p1, fst.queries.fill)
    if isinstance(snd.queries, Full):
        queries = fst.queries
        p2 = (lambda p, fill: lambda k, q: p(k, fill))(p2, snd.queries.fill)
    if fst.keys is snd.keys:
        keys = fst.keys
    if fst.queries is snd.queries:
        queries = fst.queries
    if keys is None or queries is None:
        return None
    return Select(keys, queries, lambda k, q: combine(p1(k, q), p2(k, q)))


class Aggregate(SOp):
    """Mean of ``sop`` over the selected keys (``default`` where nothing is selected)."""

    def __init__(self, selector: Selector, sop: SOp, default: Value | None = None):
        super().__init__()
        _check(isinstance(selector, Selector), f"Aggregate expects a Selector, got {selector!r}")
        _check(isinstance(sop, SOp), f"Aggregate expects an SOp to aggregate, got {sop!r}")
        _check(
            default is None or isinstance(default, (str, float, bool, int)),
            f"Aggregate default must be None or a str/float/bool/int, got {default!r}",
        )
        self.selector = selector
        self.sop = sop
        self.default = default

    @property
    def children(self) -> Sequence[RASPExpr]:
        return [self.selector, self.sop]


# ----------------------------------------------------------------------------- encodings


class Encoding(enum.Enum):
    """How an SOp lives in the residual stream: one-hot per value, or one direction holding the number."""

    CATEGORICAL = "categorical"
    NUMERICAL = "numerical"


def numerical(sop: SOpT) -> SOpT:
    return annotate(sop, encoding=Encoding.NUMERICAL)


def categorical(sop: SOpT) -> SOpT:
    return annotate(sop, encoding=Encoding.CATEGORICAL)


def get_encoding(sop: SOp) -> Encoding:
    if not isinstance(sop, SOp):
        raise TypeError(f"{sop!r} is not an SOp and has no encoding")
    return sop.annotations[_ENCODING]


def is_numerical(sop: SOp) -> bool:
    return get_encoding(sop) == Encoding.NUMERICAL


def is_categorical(sop: SOp) -> bool:
    return get_encoding(sop) == Encoding.CATEGORICAL


# Most specific class first: the first isinstance match names the expression.
_DEFAULT_NAMES: list[tuple[type, str]] = [
    (TokensType, "tokens"),
    (IndicesType, "indices"),
    (LengthType, "length"),
    (LinearSequenceMap, "linear_sequence_map"),
    (SequenceMap, "sequence_map"),
    (Map, "map"),
    (Full, "full"),
    (ConstantSOp, "constant_sop"),
    (SelectorWidth, "selector_width"),
    (Aggregate, "aggregate"),
    (SOp, "sop"),
    (Select, "select"),
    (SelectorAnd, "selector_and"),
    (SelectorOr, "selector_or"),
    (SelectorNot, "selector_not"),
    (ConstantSelector, "constant_selector"),
    (Selector, "selector"),
]


def default_name(expr: RASPExpr) -> str:
    for cls, name in _DEFAULT_NAMES:
        if isinstance(expr, cls):
            return name
    raise NotImplementedError(f"{expr!r} has no default name")


# ----------------------------------------------------------------------------- evaluation


def _selected(row: Sequence[bool], values: Sequence[Value]) -> list[Value]:
    return [v for s, v in zip(row, values) if s]


def _mean(xs: Sequence[Value], default: Value) -> Value:
    """Tracr's aggregation: default if empty, the value itself if alone, else the numeric mean."""
    if not xs:
        return default
    if len(xs) == 1:
        return xs[0]
    if isinstance(xs[0], (int, bool, float)) and not isinstance(xs[0], str):
        return sum(xs) / len(xs)  # type: ignore[arg-type]
    raise ValueError(f"Unsupported type for aggregation: {xs}")


def evaluate(expr: RASPExpr, xs: Sequence[Value]) -> Any:
    """Evaluate ``expr`` on the token list ``xs``: a list of values (SOp) or a boolean matrix (Selector)."""
    cache: dict[int, Any] = {}
    return _eval(expr, list(xs), cache)


def _eval(expr: RASPExpr, xs: list[Value], cache: dict[int, Any]) -> Any:
    key = id(expr)
    if key in cache:
        return cache[key]
    out = _eval_uncached(expr, xs, cache)
    cache[key] = out
    return out


def _eval_uncached(expr: RASPExpr, xs: list[Value], cache: dict[int, Any]) -> Any:
    n = len(xs)
    if isinstance(expr, TokensType):
        return list(xs)
    if isinstance(expr, IndicesType):
        return list(range(n))
    if isinstance(expr, LengthType):
        return [n] * n
    if isinstance(expr, SequenceMap):  # LinearSequenceMap included
        a = _eval(expr.fst, xs, cache)
        b = _eval(expr.snd, xs, cache)
        return [expr.f(x, y) if x is not None and y is not None else None for x, y in zip(a, b)]
    if isinstance(expr, Map):
        return [expr.f(x) if x is not None else None for x in _eval(expr.inner, xs, cache)]
    if isinstance(expr, Full):
        return [expr.fill] * n
    if isinstance(expr, ConstantSOp):
        if expr.check_length and len(expr.value) != n:
            raise ValueError(f"Constant len {len(expr.value)} doesn't match input len {n}.")
        return list(expr.value)
    if isinstance(expr, SelectorWidth):
        return [sum(row) for row in _eval(expr.selector, xs, cache)]
    if isinstance(expr, Aggregate):
        sel = _eval(expr.selector, xs, cache)
        vals = _eval(expr.sop, xs, cache)
        return [_mean(_selected(row, vals), expr.default) for row in sel]
    if isinstance(expr, Select):
        ks = _eval(expr.keys, xs, cache)
        qs = _eval(expr.queries, xs, cache)
        return [[bool(expr.predicate(k, q)) for k in ks] for q in qs]
    if isinstance(expr, ConstantSelector):
        if expr.check_length and len(expr.value) != n:
            raise ValueError(f"Constant len {len(expr.value)} doesn't match input len {n}.")
        return [list(r) for r in expr.value]
    if isinstance(expr, SelectorAnd):
        a, b = _eval(expr.fst, xs, cache), _eval(expr.snd, xs, cache)
        return [[bool(x and y) for x, y in zip(ra, rb)] for ra, rb in zip(a, b)]
    if isinstance(expr, SelectorOr):
        a, b = _eval(expr.fst, xs, cache), _eval(expr.snd, xs, cache)
        return [[bool(x or y) for x, y in zip(ra, rb)] for ra, rb in zip(a, b)]
    if isinstance(expr, SelectorNot):
        a = _eval(expr.inner, xs, cache)
        return [[not x for x in r] for r in a]
    raise NotImplementedError(f"Evaluation of {expr!r} is not defined.")


__all__ = [
    "Aggregate",
    "Comparison",
    "ConstantSOp",
    "ConstantSelector",
    "Encoding",
    "Full",
    "IndicesType",
    "LengthType",
    "LinearSequenceMap",
    "Map",
    "RASPExpr",
    "SOp",
    "Select",
    "Selector",
    "SelectorAnd",
    "SelectorNot",
    "SelectorOr",
    "SelectorValue",
    "SelectorWidth",
    "SequenceMap",
    "TokensType",
    "Value",
    "annotate",
    "categorical",
    "default_name",
    "evaluate",
    "get_encoding",
    "indices",
    "is_categorical",
    "is_numerical",
    "length",
    "numerical",
    "selector_and",
    "selector_not",
    "selector_or",
    "sop_not",
    "tokens",
]


def default_encoding(expr: RASPExpr) -> Encoding:
    """Every SOp is categorical unless annotated otherwise."""
    if not isinstance(expr, SOp):
        raise TypeError(f"{expr!r} is not an SOp and has no encoding")
    return Encoding.CATEGORICAL


DEFAULT_ANNOTATORS[_NAME] = default_name
DEFAULT_ANNOTATORS[_ENCODING] = default_encoding

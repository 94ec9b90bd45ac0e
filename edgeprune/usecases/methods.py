"""The circuit-discovery methods, one entry each: what it is called, how it scores or trains, how it cuts.

Every use case that runs methods (``compare-methods`` on compiled programs and on
language models alike) looks a method up here instead of testing its name.  A
method runs on a *bench*: anything with the :class:`Bench` interface (a model
adapter, training data, the graph, the ablation, one circuit scorer, and a
``row`` that scores a circuit the bench's way).  The compiled-program bench and
the language-model bench differ in how a circuit is scored and where ranked
methods cut; the entries below are the same for both.

Adding a method: write ``run(bench)`` giving its rows (the method's main row first,
then any ``--sparsities`` rows) and add a :class:`MethodEntry` to ``METHODS``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from edgeprune.core.errors import EdgePruneError
from edgeprune.core.options import METHODS as METHOD_NAMES
from edgeprune.core.options import RANKED_METHODS, check_method


@dataclass
class Row:
    """One circuit of one method; ``asdict`` of it is a line of rows.jsonl (new fields need defaults)."""

    program: str
    method: str
    setting: str
    edges: int | None = None
    sparsity: float | None = None
    kl: float | None = None
    agreement: float | None = None
    exact: bool | None = None
    truth_edges: int | None = None
    seconds: float | None = None
    cpu_seconds: float | None = None
    error: str = ""
    extra: dict = field(default_factory=dict)
    metric: float | None = None  # language models: the task's metric (named by metric_name)
    metric_name: str = ""
    auc: float | None = None  # compiled programs: ROC AUC of the method's edge ranking against the ground truth
    cpr: float | None = None  # --faithfulness: MIB's CPR and CMD of the ranking (circuit kept, rest ablated)
    cmd: float | None = None
    verdict: str = ""  # compiled programs: exact / alternative / not-minimal / unfaithful (verify.verdict)


class Bench(Protocol):
    """What a method needs: one model, its data and graph, the ablation, and one way to score circuits.

    ``score(mask)`` is the bench's circuit scorer (``edgeprune.pruning.scoring.CircuitScorer``:
    KL to the full model on fixed data); ``sparsities`` the extra cut points asked for.
    The ``run_*`` hooks are the bench's side of each kind of method (training a mask,
    ranking edges, thresholding): the entries below call them, never by method name.
    """

    name: str
    adapter: Any
    data: Any
    graph: Any

    @property
    def ablation(self) -> str: ...

    @property
    def sparsities(self) -> tuple[float, ...]: ...

    def score(self, mask: Any) -> float: ...

    def row(self, method: str, setting: str, circuit: Any, clock: Any, key: str | None = None, **extra: Any) -> Row:
        """The circuit scored the bench's way (ground truth and agreement, or the task's metrics) as a row."""
        ...

    def run_ep(self, sparsity: float | None = None) -> Row: ...

    def run_hap(self, sparsity: float | None = None) -> Row: ...

    def run_ranked(self, method: str) -> list[Row]: ...

    def run_acdc(self) -> Row: ...


@dataclass(frozen=True)
class Style:
    """How the method is drawn in the KL-against-sparsity plot."""

    color: str
    marker: str
    size: int
    hollow: bool = False


@dataclass(frozen=True)
class MethodEntry:
    """One circuit-discovery method.

    ``scores``/``cuts``: how it finds edges and where it stops, in words (for help and docs).
    ``trained``: it trains a mask (its wall/CPU time is reported per program).
    ``curve``: it ranks edges, so its main row carries the whole top-k curve (``extra["curve"]``).
    """

    name: str
    scores: str
    cuts: str
    run: Callable[[Bench], Iterable[Row]]
    style: Style
    trained: bool = False
    curve: bool = False


def _trained(hook: str) -> Callable[[Bench], Iterator[Row]]:
    """A trained method: its own row, then one training per requested sparsity (each kept if a later one fails)."""

    def run(bench: Bench) -> Iterator[Row]:
        train = getattr(bench, hook)
        yield train()
        for s in bench.sparsities:
            yield train(s)

    return run


def _ranked(method: str) -> Callable[[Bench], list[Row]]:
    def run(bench: Bench) -> list[Row]:
        return bench.run_ranked(method)

    return run


def _acdc(bench: Bench) -> list[Row]:
    return [bench.run_acdc()]


METHODS: dict[str, MethodEntry] = {
    e.name: e
    for e in (
        MethodEntry(
            "ep",
            "trains hard-concrete edge masks against KL to the full model (Edge Pruning)",
            "the trained masks' cut (recovery settings on programs; the target sparsity on language models)",
            _trained("run_ep"),
            Style("tab:blue", "o", 11, hollow=True),
            trained=True,
        ),
        MethodEntry(
            "hap",
            "attribution keeps a fraction of the edges, then Edge Pruning trains inside them",
            "the trained masks' cut within the kept subgraph",
            _trained("run_hap"),
            Style("tab:orange", "s", 8, hollow=True),
            trained=True,
        ),
        MethodEntry(
            "eap",
            "edge attribution patching: one gradient of the metric per edge",
            "top-k: the smallest k within --kl-tol of the full model (programs), the target sparsity (LMs)",
            _ranked("eap"),
            Style("tab:green", "^", 7),
            curve=True,
        ),
        MethodEntry(
            "eap-ig",
            "EAP with integrated gradients (--ig-steps points)",
            "as eap",
            _ranked("eap-ig"),
            Style("tab:red", "v", 7),
            curve=True,
        ),
        MethodEntry(
            "acdc",
            "greedy removal of edges, last reader first, while KL rises by at most tau",
            "tau = --acdc-tau times the empty circuit's KL",
            _acdc,
            Style("tab:purple", "x", 9),
        ),
    )
}
assert tuple(METHODS) == METHOD_NAMES, "every method named in edgeprune.core.options has an entry here"
assert {n for n, e in METHODS.items() if e.curve} == set(RANKED_METHODS)


def method(name: str) -> MethodEntry:
    """The entry of ``name`` (EdgePruneError naming the methods when unknown)."""
    return METHODS[check_method(name)]


def parse_methods(text: str) -> tuple[str, ...]:
    """``--methods``: a comma-separated subset of the registry, in the order given."""
    methods = tuple(m.strip().lower() for m in text.split(",") if m.strip())
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise EdgePruneError(f"unknown method(s) {bad or text!r}; choose from {', '.join(METHODS)} (comma-separated)")
    return methods


def run_methods(bench: Bench, methods: tuple[str, ...]) -> list[Row]:
    """Each method's rows on ``bench``; a method that fails with an EdgePruneError gets an error row."""
    rows: list[Row] = []
    for name in methods:
        try:
            for row in method(name).run(bench):
                rows.append(row)
        except EdgePruneError as exc:
            rows.append(Row(bench.name, name, "", error=str(exc)))
    return rows

"""Validate a ground-truth circuit on its model: sufficiency and necessity, on every input.

Sufficiency: with every other edge ablated the circuit gives the model's output
at every defined position of every input (exhaustive up to max_seq_len
when there are at most ``MAX_INPUTS`` inputs, else a seeded sample of that many:
the input budget, which ``InputPlan`` states and every report carries).  Necessity: removing any single
edge changes some output.  A categorical position is *defined* when the model's
output vector there is decisive (max > 0.5): Tracr writes a one-hot value, and
an Aggregate that selects nothing leaves the output space near zero.

"The output" is the output-space vector, not only its argmax: two readouts agree
when they decode to the same value *and* every output-space entry is within
``atol`` (numerical outputs: the value within ``atol``).  Why: an edge that only
rescales the output (the constant ``one`` a categorical MLP reads as a bias, which
Tracr keeps in the token embedding) changes what the model computes, and the
pruning objective (KL) sees it; judged by the argmax alone such edges passed as
unnecessary, and the ground truth had to list them by hand per program.  Edges that
change nothing at all (a selector half no same-length corruption exercises) still
drop out.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from edgeprune.compiled.model import CompiledTransformer
from edgeprune.core.circuit import Circuit
from edgeprune.core.options import is_mean
from edgeprune.verify.slow_forward import masked_forward, mean_outputs

#: the checker's input budget: every input when there are at most this many, else a seeded sample of this many
#: (the exhaustive check of a vocab-6, length-4 program, 1554 inputs, took over 10 minutes)
MAX_INPUTS = 1000
#: inputs evaluated per pass: a circuit that fails usually fails on the first chunk, and the pass stops there
CHECK_CHUNK = 128
HINTS = 8  # failing inputs remembered by an Oracle and tried first


def enumerate_inputs(
    vocab: Sequence[Any], max_seq_len: int, constraint: str | None = None, limit: int = MAX_INPUTS, seed: int = 0
) -> list[list[Any]]:
    """All inputs of length 1..max_seq_len (distinct tokens when constrained); a seeded sample past ``limit``."""
    vocab = list(vocab)
    total = sum(len(vocab) ** n for n in range(1, max_seq_len + 1))
    out: list[list[Any]] = []
    if total <= limit * 4:
        for n in range(1, max_seq_len + 1):
            for seq in itertools.product(vocab, repeat=n):
                if constraint == "distinct" and len(set(seq)) < n:
                    continue
                out.append(list(seq))
        if len(out) <= limit:
            return out
        rng = random.Random(seed)
        return sorted(rng.sample(out, limit), key=lambda s: (len(s), [vocab.index(t) for t in s]))
    rng = random.Random(seed)
    seen: set[tuple] = set()
    while len(out) < limit:
        n = rng.randint(1, max_seq_len)
        seq = (
            tuple(rng.choice(vocab) for _ in range(n))
            if constraint != "distinct"
            else tuple(rng.sample(vocab, min(n, len(vocab))))
        )
        if seq not in seen:
            seen.add(seq)
            out.append(list(seq))
    return out


def count_inputs(vocab: Sequence[Any], max_seq_len: int, constraint: str | None = None) -> int:
    """How many inputs of length 1..max_seq_len exist (distinct tokens when constrained)."""
    v = len(list(vocab))
    if constraint == "distinct":
        return sum(math.perm(v, n) for n in range(1, min(max_seq_len, v) + 1))
    return sum(v**n for n in range(1, max_seq_len + 1))


@dataclass(frozen=True)
class InputPlan:
    """Which inputs a check ran on: ``exhaustive`` (all ``total``) or ``sampled`` (``inputs`` of ``total``, seeded)."""

    mode: str  # "exhaustive" | "sampled" | "given" (inputs chosen by the caller)
    inputs: int
    total: int | None = None
    seed: int | None = None
    budget: int | None = None

    def to_dict(self) -> dict:
        return {"mode": self.mode, "inputs": self.inputs, "total": self.total, "seed": self.seed, "budget": self.budget}

    def describe(self) -> str:
        if self.mode == "exhaustive":
            return f"exhaustive: every input ({self.inputs})"
        if self.mode == "sampled":
            return f"sampled: {self.inputs} of {self.total} inputs (seed {self.seed}, budget {self.budget})"
        return f"{self.inputs} given inputs"


def input_plan(
    vocab: Sequence[Any], max_seq_len: int, constraint: str | None = None, limit: int = MAX_INPUTS, seed: int = 0
) -> tuple[list[list[Any]], InputPlan]:
    """``enumerate_inputs`` and the plan it followed (every input, or a seeded sample of ``limit``)."""
    inputs = enumerate_inputs(vocab, max_seq_len, constraint, limit, seed)
    total = count_inputs(vocab, max_seq_len, constraint)
    mode = "exhaustive" if len(inputs) >= total else "sampled"
    return inputs, InputPlan(mode, len(inputs), total, None if mode == "exhaustive" else seed, limit)


def model_inputs(model: CompiledTransformer, limit: int = MAX_INPUTS) -> list[list[Any]]:
    meta = model.metadata
    return enumerate_inputs(meta.vocab, meta.max_seq_len, meta.extra.get("input_constraint"), limit)


def model_input_plan(
    model: CompiledTransformer, limit: int = MAX_INPUTS, seed: int = 0
) -> tuple[list[list[Any]], InputPlan]:
    """The checker's inputs for ``model`` under the budget ``limit``, and which it did (``InputPlan``)."""
    meta = model.metadata
    return input_plan(meta.vocab, meta.max_seq_len, meta.extra.get("input_constraint"), limit, seed)


def interchange_pairs(
    inputs: Sequence[list[Any]], per_input: int = 3, seed: int = 0
) -> list[tuple[list[Any], list[Any]]]:
    """Clean/corrupted pairs of equal length drawn from ``inputs`` (seeded)."""
    rng = random.Random(seed)
    by_len: dict[int, list[list[Any]]] = {}
    for s in inputs:
        by_len.setdefault(len(s), []).append(s)
    pairs = []
    for s in inputs:
        pool = by_len[len(s)]
        for _ in range(per_input):
            pairs.append((s, pool[rng.randrange(len(pool))]))
    return pairs


@dataclass
class Outputs:
    """Readouts of a batch of equal-length inputs plus which positions are defined."""

    values: torch.Tensor  # categorical: (B, T) argmax ids; numerical: (B, T) values
    defined: torch.Tensor  # (B, T) bool, BOS excluded
    raw: torch.Tensor | None = None  # categorical: (B, T, n_out) output-space values


def _readout(model: CompiledTransformer, residual: torch.Tensor) -> Outputs:
    out = model.readout(residual)
    if model.is_categorical:
        values = out.argmax(-1)
        defined = out.max(-1).values > 0.5
        defined[:, 0] = False  # a categorical output is decoded at the input's positions only
    else:
        # a numerical output is read at every position, BOS included: the objective's
        # softmax over the sequence (as in the reference) sees the BOS value too
        values = out
        defined = torch.ones_like(out, dtype=torch.bool)
    return Outputs(values, defined, out if model.is_categorical else None)


def _differs(model: CompiledTransformer, ref: Outputs, got: Outputs, atol: float) -> torch.Tensor:
    """(B,) bool: some defined position differs (decoded value, or any output-space value by more than ``atol``)."""
    if model.is_categorical:
        diff = ref.values != got.values
        if ref.raw is not None and got.raw is not None:  # the output values, not only their argmax (see Oracle)
            diff = diff | ((ref.raw - got.raw).abs().amax(-1) > atol)
    else:
        diff = (ref.values - got.values).abs() > atol
    return (diff & ref.defined).any(-1)


@dataclass
class CheckReport:
    ablation: str
    n_inputs: int
    edges: int
    sufficient: bool
    counterexamples: list[dict] = field(default_factory=list)
    unnecessary: list[tuple[str, str]] = field(default_factory=list)
    plan: InputPlan | None = None  # which inputs: exhaustive or a seeded sample

    @property
    def ok(self) -> bool:
        return self.sufficient and not self.unnecessary

    def summary(self) -> str:
        how = f"; {self.plan.describe()}" if self.plan is not None else ""
        s = f"{self.edges} edges, {self.n_inputs} inputs ({self.ablation}{how}): "
        s += "sufficient" if self.sufficient else f"NOT sufficient, e.g. {self.counterexamples[:2]}"
        s += "; every edge necessary" if not self.unnecessary else f"; unnecessary: {self.unnecessary}"
        return s


def _batches(model: CompiledTransformer, pairs: Iterable[tuple[list[Any], list[Any]]]):
    """Group (clean, corrupted) pairs by length into id tensors."""
    by_len: dict[int, list[tuple[list[Any], list[Any]]]] = {}
    for c, k in pairs:
        by_len.setdefault(len(c), []).append((c, k))
    for n in sorted(by_len):
        group = by_len[n]
        clean = torch.tensor([model.metadata.encode(c) for c, _ in group])
        corr = torch.tensor([model.metadata.encode(k) for _, k in group])
        yield group, clean, corr


class Oracle:
    """Sufficiency of edge sets on fixed inputs, with the full model's outputs computed once.

    ``failing(edges)`` lists up to ``limit`` inputs where the circuit ``edges``
    (all others ablated) decodes differently from the model; ``sufficient(edges)``
    is ``not failing(edges)``.  Used by the checker, the verdicts and the derived
    ground truth, so all three judge a circuit by the very same test.
    """

    def __init__(
        self,
        model: CompiledTransformer,
        ablation: str = "zero",
        inputs: Sequence[list[Any]] | None = None,
        pairs: Sequence[tuple[list[Any], list[Any]]] | None = None,
        atol: float = 1e-3,
        plan: InputPlan | None = None,
    ) -> None:
        if pairs is None:
            if inputs is None:
                inputs, plan = model_input_plan(model)
            inputs = list(inputs)
            pairs = interchange_pairs(inputs) if ablation == "interchange" else [(s, s) for s in inputs]
        self.model, self.ablation, self.atol = model, ablation, atol
        self.plan = plan if plan is not None else InputPlan("given", len({tuple(c) for c, _ in pairs}))
        self.n_pairs = len(pairs)
        # incremental evaluation: verdicts of edge sets already asked, and the inputs that last failed (tried first)
        self._memo: dict[frozenset, bool] = {}
        self._hints: list[tuple[int, int]] = []
        self.groups = list(_batches(model, pairs))
        with torch.no_grad():
            self.refs = [_readout(model, model(clean)) for _, clean, _ in self.groups]
            # mean ablation: the writers' means over the oracle's own inputs (the reference set)
            self.means = (
                mean_outputs(model, [(c, None) for _, c, _ in self.groups], ablation) if is_mean(ablation) else None
            )

    def _rows_differ(self, g: int, rows: slice | torch.Tensor, kept: set) -> torch.Tensor:
        """Indices (into ``rows``) of group ``g``'s inputs where the circuit ``kept`` decodes differently."""
        _, clean, corr = self.groups[g]
        ref = self.refs[g]
        got = _readout(
            self.model,
            masked_forward(
                self.model,
                clean[rows],
                kept,
                self.ablation,
                corr[rows] if self.ablation == "interchange" else None,
                means=self.means,
            ),
        )
        sub = Outputs(ref.values[rows], ref.defined[rows], None if ref.raw is None else ref.raw[rows])
        return torch.nonzero(_differs(self.model, sub, got, self.atol))

    @torch.no_grad()
    def failing(self, kept: Iterable[tuple[str, str]], limit: int = 5) -> list[dict]:
        """Up to ``limit`` inputs where ``kept`` fails, in input order; each group is evaluated ``CHECK_CHUNK``
        inputs at a time, so the search stops at the chunk that reaches ``limit``."""
        kept = set(kept)
        bad: list[dict] = []
        for g, (group, _, _) in enumerate(self.groups):
            for a in range(0, len(group), CHECK_CHUNK):
                for i in (self._rows_differ(g, slice(a, a + CHECK_CHUNK), kept).flatten() + a).tolist():
                    bad.append(
                        {"input": group[i][0], "corrupted": group[i][1]}
                        if self.ablation == "interchange"
                        else {"input": group[i][0]}
                    )
                    if len(bad) >= limit:
                        return bad
        return bad

    @torch.no_grad()
    def sufficient(self, kept: Iterable[tuple[str, str]]) -> bool:
        """Whether ``kept`` decodes like the model on every input.  Incremental: an edge set asked before is
        answered from memory, and the inputs that failed last are tried first (the next edge set asked
        usually differs by one edge and fails on the same input), then the rest chunk by chunk."""
        kept = set(kept)
        key = frozenset(kept)
        if key in self._memo:
            return self._memo[key]
        ok = True
        for g, i in list(self._hints):
            if len(self._rows_differ(g, torch.tensor([i]), kept)):
                ok = False
                self._hints.remove((g, i))
                self._hints.insert(0, (g, i))
                break
        if ok:
            for g, (group, _, _) in enumerate(self.groups):
                for a in range(0, len(group), CHECK_CHUNK):
                    hit = self._rows_differ(g, slice(a, a + CHECK_CHUNK), kept)
                    if len(hit):
                        ok = False
                        self._hints = [(g, a + int(hit[0]))] + self._hints[: HINTS - 1]
                        break
                if not ok:
                    break
        self._memo[key] = ok
        return ok

    def unnecessary(self, edges: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """Edges of ``edges`` whose single removal keeps every output."""
        kept = set(edges)
        return [e for e in sorted(kept) if self.sufficient(kept - {e})]


@torch.no_grad()
def check_ground_truth(
    model: CompiledTransformer,
    circuit: Circuit,
    ablation: str = "zero",
    inputs: Sequence[list[Any]] | None = None,
    pairs: Sequence[tuple[list[Any], list[Any]]] | None = None,
    necessity: bool = True,
    atol: float = 1e-3,
    oracle: Oracle | None = None,
) -> CheckReport:
    """Check that ``circuit`` is sufficient and (optionally) that each of its edges is necessary."""
    oracle = oracle or Oracle(model, ablation, inputs, pairs, atol)
    edges = set(circuit.edges)
    fails = oracle.failing(edges)
    report = CheckReport(
        ablation, oracle.n_pairs, len(edges), sufficient=not fails, counterexamples=fails, plan=oracle.plan
    )
    if necessity:
        for e in circuit.edges:
            if oracle.sufficient(edges - {e}):
                report.unnecessary.append(e)
    return report

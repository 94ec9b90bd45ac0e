"""Validate a ground-truth circuit on its model: sufficiency and necessity, on every input.

Sufficiency: with every other edge ablated the circuit gives the model's decoded
output at every defined position of every input (exhaustive up to max_seq_len
for small programs, a seeded sample otherwise).  Necessity: removing any single
edge changes some output.  A categorical position is *defined* when the model's
output vector there is decisive (max > 0.5): Tracr writes a one-hot value, and
an Aggregate that selects nothing leaves the output space near zero.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from edgeprune.compiled.model import CompiledTransformer
from edgeprune.core.circuit import Circuit
from edgeprune.core.options import is_mean
from edgeprune.verify.slow_forward import masked_forward, mean_outputs

MAX_INPUTS = 4000


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


def model_inputs(model: CompiledTransformer, limit: int = MAX_INPUTS) -> list[list[Any]]:
    meta = model.metadata
    return enumerate_inputs(meta.vocab, meta.max_seq_len, meta.extra.get("input_constraint"), limit)


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
    return Outputs(values, defined)


def _differs(model: CompiledTransformer, ref: Outputs, got: Outputs, atol: float) -> torch.Tensor:
    """(B,) bool: some defined position differs."""
    if model.is_categorical:
        diff = ref.values != got.values
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

    @property
    def ok(self) -> bool:
        return self.sufficient and not self.unnecessary

    def summary(self) -> str:
        s = f"{self.edges} edges, {self.n_inputs} inputs ({self.ablation}): "
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
    ) -> None:
        if pairs is None:
            inputs = list(inputs) if inputs is not None else model_inputs(model)
            pairs = interchange_pairs(inputs) if ablation == "interchange" else [(s, s) for s in inputs]
        self.model, self.ablation, self.atol = model, ablation, atol
        self.n_pairs = len(pairs)
        self.groups = list(_batches(model, pairs))
        with torch.no_grad():
            self.refs = [_readout(model, model(clean)) for _, clean, _ in self.groups]
            # mean ablation: the writers' means over the oracle's own inputs (the reference set)
            self.means = (
                mean_outputs(model, [(c, None) for _, c, _ in self.groups], ablation) if is_mean(ablation) else None
            )

    @torch.no_grad()
    def failing(self, kept: Iterable[tuple[str, str]], limit: int = 5) -> list[dict]:
        kept = set(kept)
        model, ablation = self.model, self.ablation
        bad: list[dict] = []
        for (group, clean, corr), ref in zip(self.groups, self.refs):
            got = _readout(
                model,
                masked_forward(
                    model, clean, kept, ablation, corr if ablation == "interchange" else None, means=self.means
                ),
            )
            for i in torch.nonzero(_differs(model, ref, got, self.atol)).flatten().tolist():
                bad.append(
                    {"input": group[i][0], "corrupted": group[i][1]}
                    if ablation == "interchange"
                    else {"input": group[i][0]}
                )
                if len(bad) >= limit:
                    return bad
        return bad

    def sufficient(self, kept: Iterable[tuple[str, str]]) -> bool:
        return not self.failing(kept, limit=1)

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
    report = CheckReport(ablation, oracle.n_pairs, len(edges), sufficient=not fails, counterexamples=fails)
    if necessity:
        for e in circuit.edges:
            if oracle.sufficient(edges - {e}):
                report.unnecessary.append(e)
    return report

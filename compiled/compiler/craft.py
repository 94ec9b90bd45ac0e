"""A small "craft" layer: named basis directions, sorted spaces, linear maps and blocks.

Tracr builds every block in named vector spaces and only at the end projects
them into the residual stream.  We do the same so that the residual layout and
the weights come out in Tracr's order: every space is kept sorted by Tracr's
direction order ((name, value), falling back to string comparison when the
values are not comparable).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np


@dataclass(frozen=True)
class Direction:
    """One basis direction: ``name`` (an SOp label or an auxiliary name) and an optional ``value``."""

    name: Any
    value: Any = None

    def __str__(self) -> str:
        return str(self.name) if self.value is None else f"{self.name}:{self.value}"

    def __lt__(self, other: Direction) -> bool:
        try:
            return (self.name, self.value) < (other.name, other.value)
        except TypeError:
            return str(self) < str(other)


def space(directions: Iterable[Direction]) -> list[Direction]:
    """A vector space = its sorted, duplicate-free list of basis directions."""
    return sorted(set(directions))


def join(*spaces: Sequence[Direction]) -> list[Direction]:
    out: set[Direction] = set()
    for s in spaces:
        out.update(s)
    return sorted(out)


def from_values(name: str, values: Iterable[Any]) -> list[Direction]:
    return space(Direction(name, v) for v in values)


@dataclass
class Linear:
    """``matrix[i, j]`` maps input direction i to output direction j (row-vector convention)."""

    inputs: list[Direction]
    outputs: list[Direction]
    matrix: np.ndarray

    @classmethod
    def from_action(
        cls, inputs: list[Direction], outputs: list[Direction], action: Callable[[Direction], dict[Direction, float]]
    ) -> Linear:
        """Build the matrix row by row; ``action`` returns the image as {output direction: coefficient}."""
        col = {d: j for j, d in enumerate(outputs)}
        m = np.zeros((len(inputs), len(outputs)))
        for i, d in enumerate(inputs):
            for out_dir, c in action(d).items():
                if out_dir not in col:
                    raise ValueError(f"image of {d} lies outside the output space (direction {out_dir})")
                m[i, col[out_dir]] += c
        return cls(list(inputs), list(outputs), m)

    @classmethod
    def combine_in_parallel(cls, fns: Sequence[Linear]) -> Linear:
        """Sum of maps on the joined (sorted) input and output spaces, as Tracr combines parallel MLPs."""
        inputs = join(*[f.inputs for f in fns])
        outputs = join(*[f.outputs for f in fns])
        m = np.zeros((len(inputs), len(outputs)))
        row = {d: i for i, d in enumerate(inputs)}
        col = {d: j for j, d in enumerate(outputs)}
        for f in fns:
            ri = [row[d] for d in f.inputs]
            cj = [col[d] for d in f.outputs]
            m[np.ix_(ri, cj)] += f.matrix
        return cls(inputs, outputs, m)


@dataclass
class Bilinear:
    """Scalar bilinear form ``q^T matrix k`` between a query space (rows) and a key space (columns)."""

    left: list[Direction]
    right: list[Direction]
    matrix: np.ndarray

    @classmethod
    def from_action(
        cls, left: list[Direction], right: list[Direction], action: Callable[[Direction, Direction], float]
    ) -> Bilinear:
        m = np.zeros((len(left), len(right)))
        for i, q in enumerate(left):
            for j, k in enumerate(right):
                m[i, j] = action(q, k)
        return cls(list(left), list(right), m)


@dataclass
class AttentionHead:
    """One head: W_QK as a bilinear form and W_OV as a linear map; ``node`` is the RASP label it computes."""

    w_qk: Bilinear
    w_ov: Linear
    node: str = ""
    causal: bool = False

    @property
    def residual_space(self) -> list[Direction]:
        return join(self.w_qk.left, self.w_qk.right, self.w_ov.inputs, self.w_ov.outputs)


@dataclass
class MLP:
    """Two linear maps with a ReLU between them; ``nodes`` are the RASP labels it computes."""

    fst: Linear
    snd: Linear
    nodes: list[str] = field(default_factory=list)
    # hidden directions owned by each node (to report hidden columns per node after combining)
    hidden_by_node: dict[str, list[Direction]] = field(default_factory=dict)

    @property
    def residual_space(self) -> list[Direction]:
        return join(self.fst.inputs, self.snd.outputs)

    @classmethod
    def combine_in_parallel(cls, mlps: Sequence[MLP]) -> MLP:
        fst = Linear.combine_in_parallel([m.fst for m in mlps])
        snd = Linear.combine_in_parallel([m.snd for m in mlps])
        nodes: list[str] = []
        hidden: dict[str, list[Direction]] = {}
        for m in mlps:
            for n in m.nodes:
                if n not in nodes:
                    nodes.append(n)
            for n, dirs in m.hidden_by_node.items():
                hidden.setdefault(n, []).extend(d for d in dirs if d not in hidden.get(n, []))
        return cls(fst, snd, nodes, hidden)


@dataclass
class AttnMLPPair:
    """A SelectorWidth: an attention head followed by an MLP in the same layer."""

    attn: AttentionHead
    mlp: MLP

    @property
    def residual_space(self) -> list[Direction]:
        return join(self.attn.residual_space, self.mlp.residual_space)


Block = Optional[AttentionHead | MLP | AttnMLPPair]


def vec(d: Direction, c: float = 1.0) -> dict[Direction, float]:
    return {d: c}


def add(*vs: dict[Direction, float]) -> dict[Direction, float]:
    out: dict[Direction, float] = {}
    for v in vs:
        for d, c in v.items():
            out[d] = out.get(d, 0.0) + c
    return out


def scale(v: dict[Direction, float], c: float) -> dict[Direction, float]:
    return {d: x * c for d, x in v.items()}

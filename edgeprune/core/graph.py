"""The computational graph of a layered transformer: writers, readers and allowed edges.

Writers are in forward order (embeddings, then per layer the heads and the MLP);
readers are, per layer, every head's q, k and v input, then the MLP input, then
``out``.  A writer feeds a reader when it comes earlier in the forward order: a
layer's heads feed that layer's MLP and everything after (sequential blocks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import torch

from edgeprune.core import names


@dataclass(frozen=True)
class ComputationalGraph:
    n_layers: int
    n_heads: int
    embeddings: tuple[str, ...] = (names.TOK, names.POS)
    n_kv_heads: int | None = None  # grouped-query attention: fewer k/v readers
    model: str = ""
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    # ----- writers -------------------------------------------------------
    @cached_property
    def writers(self) -> list[str]:
        out = list(self.embeddings)
        for layer in range(self.n_layers):
            out += [names.head(layer, h) for h in range(self.n_heads)]
            out.append(names.mlp(layer))
        return out

    @cached_property
    def writer_index(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.writers)}

    def n_writers_before_layer(self, layer: int) -> int:
        """Writers that a q/k/v reader of ``layer`` may read."""
        return len(self.embeddings) + layer * (self.n_heads + 1)

    def n_writers_before_mlp(self, layer: int) -> int:
        return self.n_writers_before_layer(layer) + self.n_heads

    # ----- readers -------------------------------------------------------
    def kv_reader_names(self, layer: int, role: str) -> list[str]:
        if self.kv_heads == self.n_heads:
            return [names.head_input(layer, h, role) for h in range(self.n_heads)]
        return [f"a{layer}.g{g}.{role}" for g in range(self.kv_heads)]

    @cached_property
    def readers(self) -> list[str]:
        out = []
        for layer in range(self.n_layers):
            out += [names.head_input(layer, h, "q") for h in range(self.n_heads)]
            out += self.kv_reader_names(layer, "k")
            out += self.kv_reader_names(layer, "v")
            out.append(names.mlp(layer))
        out.append(names.OUT)
        return out

    @cached_property
    def reader_index(self) -> dict[str, int]:
        return {r: i for i, r in enumerate(self.readers)}

    def n_inputs(self, reader: str) -> int:
        """How many writers come before ``reader`` (its allowed in-edges)."""
        if reader == names.OUT:
            return len(self.writers)
        if reader.startswith("m"):
            return self.n_writers_before_mlp(int(reader[1:]))
        return self.n_writers_before_layer(int(reader[1:].split(".")[0]))

    # ----- edges ---------------------------------------------------------
    @cached_property
    def edges(self) -> list[tuple[str, str]]:
        """Every allowed edge, ordered by reader then writer."""
        return [(self.writers[w], r) for r in self.readers for w in range(self.n_inputs(r))]

    @cached_property
    def edge_set(self) -> frozenset[tuple[str, str]]:
        return frozenset(self.edges)

    @property
    def n_edges(self) -> int:
        return len(self.edges)

    def allowed_mask(self) -> torch.Tensor:
        """(n_writers, n_readers) 0/1 matrix of allowed edges."""
        m = torch.zeros(len(self.writers), len(self.readers))
        for j, r in enumerate(self.readers):
            m[: self.n_inputs(r), j] = 1
        return m

    def check_edge(self, edge: tuple[str, str]) -> None:
        from edgeprune.core.errors import EdgePruneError

        if edge not in self.edge_set:
            raise EdgePruneError(
                f"edge {edge[0]} -> {edge[1]} is not in the graph of {self.model or 'this model'} "
                f"({self.n_layers} layers, {self.n_heads} heads): was the circuit made for another model?"
            )

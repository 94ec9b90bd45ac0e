"""Training data for pruning a compiled model: padded clean inputs and same-length corruptions."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from edgeprune.compiled.model import CompiledTransformer
from edgeprune.core.errors import EdgePruneError
from edgeprune.pruning.train import PruneData

Corrupt = Callable[[random.Random, list], list]


def shuffle_corruption(inputs: Sequence[Sequence[Any]]) -> Corrupt:
    """Fallback corruption: another input of the same length (ACDC's scheme), or a shuffle of the input."""
    by_len: dict[int, list[list]] = {}
    for seq in inputs:
        by_len.setdefault(len(seq), []).append(list(seq))

    def corrupt(rng: random.Random, clean: list) -> list:
        pool = [s for s in by_len.get(len(clean), []) if s != list(clean)]
        if pool:
            return list(rng.choice(pool))
        out = list(clean)
        rng.shuffle(out)
        return out

    return corrupt


def build_data(
    model: CompiledTransformer, inputs: Sequence[Sequence[Any]], corrupt: Corrupt | None = None, seed: int = 0
) -> PruneData:
    """Encode ``inputs`` (BOS prepended, padded); with ``corrupt`` also a same-length corruption of each."""
    inputs = [list(s) for s in inputs]
    if not inputs:
        raise EdgePruneError("no training inputs given")
    ids, mask = model.encode_batch(inputs)
    corrupted = None
    if corrupt is not None:
        rng = random.Random(seed)
        corr = [list(corrupt(rng, list(s))) for s in inputs]
        for c, s in zip(corr, inputs):
            if len(c) != len(s):
                raise EdgePruneError(
                    f"the corruption of {s} has length {len(c)}, not {len(s)}: interchange ablation needs "
                    "same-length corruptions; fix the program's corrupt()"
                )
        corrupted, cmask = model.encode_batch(corr)
        if corrupted.shape[1] < ids.shape[1]:  # only when every input is shorter than the longest (cannot happen)
            raise EdgePruneError("corruptions are shorter than their clean inputs")
    key_mask = None if bool(mask.all()) else mask
    return PruneData(ids=ids, key_mask=key_mask, corrupted=corrupted)

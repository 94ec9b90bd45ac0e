"""The one rule for dangling edges, used for ground truths and recovered circuits alike.

An edge stays only if its writer is an embedding (``tok``/``pos``) or has an
in-edge itself, and its reader's node is ``out`` or has an out-edge; applied
until nothing changes.  A block with no inputs writes nothing the program uses
(Tracr biases are zero; under interchange its output equals the corrupted one),
and a block whose output nobody reads cannot change the output.

Under per-position mean ablation (``ablation="mean"``) an attention head is a
source too: with every input at its per-position mean its softmax still runs over
the input's own positions, so its output follows the length, which no edge
carries and the mean (over references of several lengths) does not match.
"""

from __future__ import annotations

from collections.abc import Iterable

from edgeprune.core import names

Edge = tuple[str, str]


def prune_dangling(
    edges: Iterable[Edge], embeddings: tuple[str, ...] = (names.TOK, names.POS), ablation: str | None = None
) -> set[Edge]:
    kept: set[tuple[str, str]] = {(e[0], e[1]) for e in edges}
    if ablation == "mean":  # heads read the length through their softmax: sources (module docstring)
        embeddings = tuple(embeddings) + tuple(sorted({w for w, _ in kept if names.parse_node(w)[0] == "head"}))
    while True:
        has_in = {names.reader_node(r) for _, r in kept}
        has_out = {w for w, _ in kept}
        nxt = {
            (w, r)
            for w, r in kept
            if (w in embeddings or w in has_in) and (r == names.OUT or names.reader_node(r) in has_out)
        }
        if nxt == kept:
            return kept
        kept = nxt

"""The one rule for dangling edges, used for ground truths and recovered circuits alike.

An edge stays only if its writer is an embedding (``tok``/``pos``) or has an
in-edge itself, and its reader's node is ``out`` or has an out-edge; applied
until nothing changes.  A block with no inputs writes nothing the program uses
(Tracr biases are zero; under interchange its output equals the corrupted one),
and a block whose output nobody reads cannot change the output.
"""

from __future__ import annotations

from collections.abc import Iterable

from edgeprune.core import names

Edge = tuple[str, str]


def prune_dangling(edges: Iterable[Edge], embeddings: tuple[str, ...] = (names.TOK, names.POS)) -> set[Edge]:
    kept: set[tuple[str, str]] = {(e[0], e[1]) for e in edges}
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

"""Node and edge names shared by every model family (DESIGN.md section 2)."""

from __future__ import annotations

import re

from edgeprune.core.errors import EdgePruneError


class NodeNameError(EdgePruneError):
    """A node name that does not parse (a ValueError, as before, and a user-facing EdgePruneError)."""


TOK = "tok"
POS = "pos"
OUT = "out"

_HEAD = re.compile(r"^a(\d+)\.h(\d+)$")
_HEAD_INPUT = re.compile(r"^a(\d+)\.h(\d+)\.([qkv])$")
_MLP = re.compile(r"^m(\d+)$")
# grouped-query attention: one key and one value reader per KV group, shared by H/KV query heads
_GROUP = re.compile(r"^a(\d+)\.g(\d+)$")
_GROUP_INPUT = re.compile(r"^a(\d+)\.g(\d+)\.([kv])$")


def head(layer: int, index: int) -> str:
    return f"a{layer}.h{index}"


def head_input(layer: int, index: int, role: str) -> str:
    return f"a{layer}.h{index}.{role}"


def mlp(layer: int) -> str:
    return f"m{layer}"


def parse_node(name: str) -> tuple[str, int, int, str]:
    """Split a node name into (kind, layer, head, role); kind is tok/pos/head/head_input/mlp/out,
    or group/group_input for a grouped-query attention layer's shared k/v readers (head = group index)."""
    if name in (TOK, POS, OUT):
        return name, -1, -1, ""
    m = _HEAD.match(name)
    if m:
        return "head", int(m.group(1)), int(m.group(2)), ""
    m = _HEAD_INPUT.match(name)
    if m:
        return "head_input", int(m.group(1)), int(m.group(2)), m.group(3)
    m = _MLP.match(name)
    if m:
        return "mlp", int(m.group(1)), -1, ""
    m = _GROUP_INPUT.match(name)
    if m:
        return "group_input", int(m.group(1)), int(m.group(2)), m.group(3)
    m = _GROUP.match(name)
    if m:
        return "group", int(m.group(1)), int(m.group(2)), ""
    raise NodeNameError(
        f"unknown node name {name!r}: expected tok, pos, a<L>.h<H>[.q|.k|.v], a<L>.g<G>.k|v, m<L> or out"
    )


def reader_node(reader: str) -> str:
    """The computational node a reader belongs to (a0.h0.q -> a0.h0; a GQA group's a0.g1.k -> a0.g1)."""
    kind, layer, idx, _ = parse_node(reader)
    if kind == "head_input":
        return head(layer, idx)
    if kind == "group_input":
        return f"a{layer}.g{idx}"
    return reader


def edge_str(edge: tuple[str, str]) -> str:
    return f"{edge[0]} -> {edge[1]}"

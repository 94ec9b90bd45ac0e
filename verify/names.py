"""Node and edge names shared by every model family (DESIGN.md section 2)."""

from __future__ import annotations

import re

TOK = "tok"
POS = "pos"
OUT = "out"

_HEAD = re.compile(r"^a(\d+)\.h(\d+)$")
_HEAD_INPUT = re.compile(r"^a(\d+)\.h(\d+)\.([qkv])$")
_MLP = re.compile(r"^m(\d+)$")


def head(layer: int, index: int) -> str:
    return f"a{layer}.h{index}"


def head_input(layer: int, index: int, role: str) -> str:
    return f"a{layer}.h{index}.{role}"


def mlp(layer: int) -> str:
    return f"m{layer}"


def parse_node(name: str) -> tuple[str, int, int, str]:
    """Split a node name into (kind, layer, head, role); kind is tok/pos/head/head_input/mlp/out."""
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
    raise ValueError(f"unknown node name {name!r}: expected tok, pos, a<L>.h<H>[.q|.k|.v], m<L> or out")


def reader_node(reader: str) -> str:
    """The computational node a reader belongs to (a0.h0.q -> a0.h0)."""
    kind, layer, idx, _ = parse_node(reader)
    return head(layer, idx) if kind == "head_input" else reader


def edge_str(edge: tuple[str, str]) -> str:
    return f"{edge[0]} -> {edge[1]}"

"""Circuit pictures: layered positions, PNG/SVG by suffix, clear error for other suffixes."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeprune.core.circuit import Circuit
from edgeprune.core.errors import EdgePruneError
from edgeprune.verify.draw import draw_circuit, layered_positions

EDGES = [
    ("tok", "a0.h0.q"),
    ("pos", "a0.h0.k"),
    ("a0.h0", "m0"),
    ("m0", "a1.h1.v"),
    ("a1.h1", "out"),
    ("tok", "a1.g0.k"),
]


def test_layers_stack_from_embeddings_to_out() -> None:
    c = Circuit(edges=EDGES)
    pos = layered_positions(c.nodes)
    y = {n: p[1] for n, p in pos.items()}
    assert y["tok"] == y["pos"] == 0
    assert y["tok"] < y["a0.h0"] < y["m0"] < y["a1.h1"] < y["out"]
    assert y["a1.g0"] == y["a1.h1"]  # a GQA group sits in its layer's attention row
    assert y["out"] == max(y.values())
    assert pos["tok"][0] != pos["pos"][0]  # nodes of one row are spread out


def test_png_and_svg_by_suffix(tmp_path: Path) -> None:
    c = Circuit(edges=EDGES, model="tiny")
    png = draw_circuit(c, tmp_path / "c.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    c.save(tmp_path / "c.json")
    svg = draw_circuit(tmp_path / "c.json", tmp_path / "sub" / "c.svg", title="my circuit")
    text = svg.read_text()
    assert "<svg" in text and "my circuit" in text and "a1.h1" in text
    empty = draw_circuit(Circuit(edges=[]), tmp_path / "e.svg")
    assert "<svg" in empty.read_text()


def test_unknown_suffix_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EdgePruneError, match=r"'\.pdf'.*\.png, \.svg"):
        draw_circuit(Circuit(edges=EDGES), tmp_path / "c.pdf")
    with pytest.raises(EdgePruneError, match="does not exist"):
        draw_circuit(tmp_path / "missing.json", tmp_path / "c.png")


def test_gqa_group_readers_are_valid_names() -> None:
    """Grouped-query Llama graphs name their shared k/v readers a<L>.g<G>.k|v; circuits must accept them."""
    c = Circuit(edges=[("tok", "a0.g1.v"), ("tok", "a0.g0.k"), ("tok", "a0.h3.q")])
    assert c.edges == [("tok", "a0.h3.q"), ("tok", "a0.g0.k"), ("tok", "a0.g1.v")]
    assert c.nodes == ["tok", "a0.h3", "a0.g0", "a0.g1"]
    with pytest.raises(ValueError, match="a<L>.g<G>.k|v"):
        Circuit(edges=[("tok", "a0.g1.q")])  # queries are per head, never per group

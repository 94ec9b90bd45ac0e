"""A library program compiled by real Tracr (then converted) carries the same metadata as the own compiler's.

Nodes (value sets, bases, layers, heads, block kinds), the block map (a layer's MLP nodes in
graph order, as Tracr combines them) and the layout agree field for field; only ``source``
and the own compiler's ``extra`` (its graph and layout passes) differ.
"""

from __future__ import annotations

import dataclasses

import pytest

from edgeprune.compiled.resolve import compile_spec
from edgeprune.programs.registry import get_program, program_names

pytestmark = pytest.mark.tracr

QUICK = {"balanced_prefix", "pair_balance"}  # two MLPs in one layer, not in name order: the converter once sorted them


def _params():
    for name in program_names():
        yield pytest.param(name, marks=[] if name in QUICK else [pytest.mark.slow], id=name)


@pytest.mark.parametrize("name", list(_params()))
def test_tracr_metadata_equals_own(name):
    """One program object compiled both ways: labels carry global ids (drawn when first read), so two
    builds differ; the conversion gives Tracr's expressions the own ids, whatever Tracr's counter says."""
    spec = get_program(name)
    program = spec.build()
    spec = dataclasses.replace(spec, build=lambda: program)
    own, tr = compile_spec(spec).metadata, compile_spec(spec, compiler="tracr").metadata
    assert tr.source == "tracr" and own.source == "edgeprune-compiler"
    for f in dataclasses.fields(own):
        if f.name not in ("source", "extra", "nodes"):
            assert getattr(tr, f.name) == getattr(own, f.name), (name, f.name)
    assert [n.label for n in tr.nodes] == [n.label for n in own.nodes], name
    for a, b in zip(own.nodes, tr.nodes):
        assert dataclasses.asdict(b) == dataclasses.asdict(a), (name, a.label)
    assert tr.blocks.mlps == own.blocks.mlps, name

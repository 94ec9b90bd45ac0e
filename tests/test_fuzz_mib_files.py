"""Fuzz the EAP-IG graph JSON (``import-circuit``) and the edge-score file (``export --scores``): a damaged
file ends in exit status 2 with a message, never a traceback, and the input is left unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from edgeprune.cli import main  # noqa: E402
from tests.test_fuzz_inputs import COUNTS, _check, _mutate, _mutate_json_field  # noqa: E402

GRAPH = ["--layers", "2", "--heads", "2", "--d-model", "8"]
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("mib")
    (d / "c.json").write_text(json.dumps({"format": "edgeprune-circuit", "edges": [["tok", "m0"], ["m0", "out"]]}))
    assert main(["export", str(d / "c.json"), *GRAPH, "--merge-inputs", "-o", str(d / "g.json")]) == 0
    assert main(["import-circuit", str(d / "g.json"), "-o", str(d / "c2.json"), "--scores-out", str(d / "s.json")]) == 0
    return {"graph": d / "g.json", "scores": d / "s.json", "circuit": d / "c.json"}


def _damage(src: Path, dst: Path, data) -> None:
    if data.draw(st.booleans()):
        dst.write_bytes(_mutate(src.read_bytes(), data.draw))
        return
    doc = json.loads(src.read_text())
    _mutate_json_field(doc, data.draw, fields=sorted(doc))
    dst.write_text(json.dumps(doc))


@SETTINGS
@given(data=st.data())
def test_fuzz_import_circuit_graph(tmp_path_factory, files, data):
    d = tmp_path_factory.mktemp("g")
    target = d / "g.json"
    _damage(files["graph"], target, data)
    _check("EAP-IG graph json", ["import-circuit", str(target), "-o", str(d / "c.json")], target, lambda: None)


def test_in_graph_must_be_a_bool(tmp_path, files, capsys):
    """ "in_graph": "false" is a string, truthy: it would silently put the edge in the circuit."""
    doc = json.loads(files["graph"].read_text())
    name = next(iter(doc["edges"]))
    doc["edges"][name]["in_graph"] = "false"
    (tmp_path / "g.json").write_text(json.dumps(doc))
    assert main(["import-circuit", str(tmp_path / "g.json"), "-o", str(tmp_path / "c.json")]) == 2
    assert "'in_graph' must be true or false" in capsys.readouterr().err


@SETTINGS
@given(data=st.data())
def test_fuzz_export_scores(tmp_path_factory, files, data):
    d = tmp_path_factory.mktemp("s")
    target = d / "s.json"
    _damage(files["scores"], target, data)
    argv = ["export", str(files["circuit"]), *GRAPH, "--merge-inputs", "--scores", str(target), "-o", str(d / "g.json")]
    _check("edge-score json", argv, target, lambda: None)


@SETTINGS
@given(data=st.data())
def test_fuzz_export_model_config(tmp_path_factory, files, data):
    """``export --model DIR`` sizes the graph from DIR/config.json (GPT-2 or Llama fields)."""
    d = tmp_path_factory.mktemp("hf")
    (d / "m").mkdir()
    good = d / "good.json"
    good.write_text(json.dumps({"model_type": "gpt2", "n_layer": 2, "n_head": 2, "n_embd": 8, "n_positions": 16}))
    target = d / "m" / "config.json"
    _damage(good, target, data)
    argv = ["export", str(files["circuit"]), "--model", str(d / "m"), "--merge-inputs", "-o", str(d / "g.json")]
    _check("export --model config.json", argv, target, lambda: None)


MIB_FORMATS = ("EAP-IG graph json", "edge-score json", "export --model config.json")


@pytest.mark.counts
def test_zz_print_counts():
    for (fmt, outcome), n in sorted(COUNTS.items()):
        if fmt in MIB_FORMATS:
            print(f"fuzz {fmt}: {n} {outcome}")
    assert {fmt for fmt, _ in COUNTS} >= set(MIB_FORMATS)

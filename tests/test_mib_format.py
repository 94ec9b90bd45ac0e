"""EAP-IG's graph JSON (MIB's submission format): the schema, the name mapping, round trips and the CLI."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeprune.cli import main
from edgeprune.core.circuit import Circuit
from edgeprune.core.graph import ComputationalGraph
from edgeprune.core.mib_format import MibFormatError, from_mib, mib_edges, to_mib

# EAP-IG's Graph.to_json writes {"cfg": dict(graph.cfg), "nodes": {name: {"in_graph": bool}}, "edges":
# {name: {"score": float, "in_graph": bool}}}; node scores and neurons appear only for node- or
# neuron-level graphs, which an edge circuit is not.  Graph.from_model's cfg holds n_layers, n_heads,
# parallel_attn_mlp and d_model.  Nodes: input, a{L}.h{H}, m{L}, logits; edges parent->child, with <q>, <k>
# or <v> when the child is a head.
EAP_IG_TOP = {"cfg", "nodes", "edges"}
EAP_IG_CFG = {"n_layers", "n_heads", "parallel_attn_mlp", "d_model"}
EAP_IG_NODE = {"in_graph"}
EAP_IG_EDGE = {"score", "in_graph"}
EDGE_NAME = re.compile(r"^(input|a\d+\.h\d+|m\d+)->(a\d+\.h\d+<[qkv]>|m\d+|logits)$")


def eap_ig_edge_count(n_layers: int, n_heads: int) -> int:
    """EAP-IG's sequential graph: every earlier node feeds each head's q, k, v; a layer's heads feed its MLP."""
    total = 0
    for layer in range(n_layers):
        before = 1 + layer * (n_heads + 1)
        total += before * 3 * n_heads + before + n_heads
    return total + 1 + n_layers * (n_heads + 1)


@pytest.mark.parametrize("n_layers,n_heads", [(1, 1), (2, 3), (4, 1)])
def test_exported_file_has_exactly_eap_ig_fields(n_layers, n_heads):
    graph = ComputationalGraph(n_layers, n_heads)
    data = to_mib(Circuit([("tok", "a0.h0.v"), ("pos", "a0.h0.v"), ("a0.h0", "out")]), graph, d_model=16)
    assert set(data) == EAP_IG_TOP
    assert set(data["cfg"]) == EAP_IG_CFG and data["cfg"]["parallel_attn_mlp"] is False
    assert data["cfg"]["n_layers"] == n_layers and data["cfg"]["n_heads"] == n_heads and data["cfg"]["d_model"] == 16
    expected_nodes = {"input", "logits"} | {f"m{l}" for l in range(n_layers)}
    expected_nodes |= {f"a{l}.h{h}" for l in range(n_layers) for h in range(n_heads)}
    assert set(data["nodes"]) == expected_nodes
    assert all(set(v) == EAP_IG_NODE and isinstance(v["in_graph"], bool) for v in data["nodes"].values())
    assert len(data["edges"]) == eap_ig_edge_count(n_layers, n_heads)
    for name, v in data["edges"].items():
        assert EDGE_NAME.match(name), name
        assert set(v) == EAP_IG_EDGE and isinstance(v["score"], float) and isinstance(v["in_graph"], bool)
    on = {n for n, v in data["edges"].items() if v["in_graph"]}
    assert on == {"input->a0.h0<v>", "a0.h0->logits"}
    assert data["nodes"]["a0.h0"]["in_graph"] and data["nodes"]["logits"]["in_graph"]
    assert not data["nodes"]["m0"]["in_graph"]
    json.dumps(data)  # plain JSON


def test_names_map_both_ways():
    graph = ComputationalGraph(2, 2)
    pairs = dict(mib_edges(graph))
    assert pairs["input->a1.h0<k>"] == (("tok", "a1.h0.k"), ("pos", "a1.h0.k"))
    assert pairs["a0.h1->a1.h1<q>"] == (("a0.h1", "a1.h1.q"),)
    assert pairs["m1->logits"] == (("m1", "out"),)
    assert pairs["a0.h0->m0"] == (("a0.h0", "m0"),)
    assert sum(len(v) for v in pairs.values()) == graph.n_edges  # every project edge has exactly one EAP-IG name


@st.composite
def paired_circuits(draw):
    """A graph, and a circuit whose tok and pos edges come in pairs (what EAP-IG's input node can express)."""
    graph = ComputationalGraph(draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    groups = mib_edges(graph)
    chosen = draw(st.lists(st.sampled_from(range(len(groups))), unique=True, max_size=len(groups)))
    edges = [e for i in chosen for e in groups[i][1]]
    score = {e: draw(st.floats(-3, 3, allow_nan=False, width=32)) for _, es in groups for e in es[:1]}
    scores = {e: score[es[0]] for _, es in groups for e in es}  # tok and pos share a score
    return graph, Circuit(edges, model="m"), scores


@settings(max_examples=60, deadline=None)
@given(paired_circuits())
def test_export_then_import_equals_the_original(case):
    graph, circuit, scores = case
    data = json.loads(json.dumps(to_mib(circuit, graph, 8, scores)))  # through JSON text, as a file would
    back = from_mib(data, model="m")
    assert back.circuit == circuit
    assert back.graph.edges == graph.edges
    assert back.scores.keys() == scores.keys()
    assert all(abs(back.scores[e] - scores[e]) <= 1e-6 * max(1.0, abs(scores[e])) for e in scores)
    assert to_mib(back.circuit, back.graph, 8, back.scores) == data  # and the file round-trips too


def test_tok_and_pos_apart_is_refused_unless_merged():
    graph = ComputationalGraph(1, 1)
    c = Circuit([("tok", "a0.h0.q"), ("pos", "a0.h0.k"), ("tok", "a0.h0.k"), ("a0.h0", "out")])
    with pytest.raises(MibFormatError, match=r"input->a0.h0<q> \(only tok -> a0.h0.q\).*--merge-inputs"):
        to_mib(c, graph, 4)
    merged = from_mib(to_mib(c, graph, 4, merge_inputs=True)).circuit
    assert set(merged.edges) == set(c.edges) | {("pos", "a0.h0.q")}  # the union rule
    scores = {("tok", "a0.h0.q"): 0.25, ("pos", "a0.h0.q"): 0.5}
    assert to_mib(c, graph, 4, scores, merge_inputs=True)["edges"]["input->a0.h0<q>"]["score"] == 0.75  # sum


def test_rotary_and_grouped_query_models():
    rotary = ComputationalGraph(1, 2, embeddings=("tok",))
    c = Circuit([("tok", "a0.h1.v"), ("a0.h1", "m0"), ("m0", "out")])
    data = to_mib(c, rotary, 4)
    assert from_mib(data, embeddings=("tok",)).circuit == c
    assert set(from_mib(data).circuit.edges) == set(c.edges) | {("pos", "a0.h1.v")}
    with pytest.raises(MibFormatError, match="grouped-query"):
        to_mib([], ComputationalGraph(1, 4, embeddings=("tok",), n_kv_heads=2), 4)


def test_bad_files_are_named():
    graph = ComputationalGraph(1, 1)
    data = to_mib([], graph, 4)
    with pytest.raises(MibFormatError, match="'cfg', 'nodes' and 'edges'"):
        from_mib({"edges": {}})
    with pytest.raises(MibFormatError, match="parallel_attn_mlp"):
        from_mib({**data, "cfg": {**data["cfg"], "parallel_attn_mlp": True}})
    with pytest.raises(MibFormatError, match="needs <q>, <k> or <v>"):
        from_mib({**data, "edges": {"input->a0.h0": {"score": 0.0, "in_graph": True}}})
    with pytest.raises(MibFormatError, match="not in a 1-layer"):
        from_mib({**data, "edges": {"m0->a0.h0<q>": {"score": 0.0, "in_graph": True}}})


def test_cli_export_and_import(tmp_path, capsys):
    circuit = Circuit([("tok", "a0.h0.v"), ("pos", "a0.h0.v"), ("a0.h0", "m0"), ("m0", "out")], model="x")
    path = tmp_path / "c.json"
    circuit.save(path)
    graph_file, back = tmp_path / "g.json", tmp_path / "back.json"
    args = ["export", str(path), "--format", "mib", "-o", str(graph_file), "--layers", "2", "--heads", "2"]
    assert main([*args, "--d-model", "8"]) == 0
    assert set(json.loads(graph_file.read_text())) == EAP_IG_TOP
    assert main([*args, "--d-model", "8"]) == 2  # refuses to overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 2 and "--d-model together" in capsys.readouterr().err
    assert main(["import-circuit", str(graph_file), "-o", str(back), "--scores-out", str(tmp_path / "s.json")]) == 0
    assert Circuit.load(back) == circuit
    scores = json.loads((tmp_path / "s.json").read_text())["scores"]
    assert len(scores) == ComputationalGraph(2, 2).n_edges
    assert {(w, r) for w, r, s in scores if s == 0.5} == set(circuit.edges[:2])  # input's 1.0 split in halves


def test_cli_sizes_the_graph_from_a_transformers_model_dir(tmp_path, capsys):
    """--model DIR with a config.json: GPT-2 keeps tok and pos under input; a GQA Llama is refused by name."""
    pytest.importorskip("transformers")
    from tests.hf_helpers import save_model, task_tokenizer, tiny_gpt2, tiny_llama

    tok = task_tokenizer()
    gpt2 = save_model(tiny_gpt2(len(tok)), tok, tmp_path / "gpt2")
    circuit = Circuit([("tok", "a1.h3.k"), ("pos", "a1.h3.k"), ("a1.h3", "out")], model="gpt2")
    circuit.save(tmp_path / "c.json")
    out = tmp_path / "g.json"
    assert main(["export", str(tmp_path / "c.json"), "-o", str(out), "--model", str(gpt2)]) == 0
    data = json.loads(out.read_text())
    config = json.loads((gpt2 / "config.json").read_text())
    assert data["cfg"] == {"n_layers": 2, "n_heads": 4, "parallel_attn_mlp": False, "d_model": config["n_embd"]}
    assert len(data["edges"]) == eap_ig_edge_count(2, 4)
    llama = save_model(tiny_llama(len(tok)), tok, tmp_path / "llama")
    assert main(["export", str(tmp_path / "c.json"), "-o", str(tmp_path / "l.json"), "--model", str(llama)]) == 2
    assert "grouped-query attention" in capsys.readouterr().err

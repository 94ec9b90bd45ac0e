"""Our compiler against real Tracr output (the reference folders): same outputs, layers, layout and weights.

Labels contain global expression ids, so each program is built fresh after
resetting the id counter; then Tracr's lazy id order makes labels identical
to the reference ones, and residual layouts and weights can be compared exactly.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeprune.compiled.compiler import compile_program
from edgeprune.compiled.tracr_import import load_reference_dir
from edgeprune.programs import library as lib
from edgeprune.programs import rasp
from tests.conftest import REFERENCE_DIR, REFERENCE_PROGRAMS

# The Tracr lib construction recorded in each model.json "construction".
BUILDERS: dict[str, Callable[[], rasp.SOp]] = {
    "reverse": lambda: lib.make_reverse(rasp.tokens),
    "xproportion": lambda: lib.make_frac_prevs(rasp.tokens == "x"),
    "hist": lambda: lib.make_hist(),
    "length": lambda: lib.make_length(),
    "pair_balance": lambda: lib.make_pair_balance(rasp.tokens, "(", ")"),
    "sort_unique": lambda: lib.make_sort_unique(rasp.tokens, rasp.tokens),
}


def _fresh(builder: Callable[[], rasp.SOp]) -> rasp.SOp:
    """Build with the id counter reset, as the reference generator built each program in a fresh process."""
    rasp.RASPExpr._ids = itertools.count(1)
    return builder()


@pytest.fixture(scope="module", params=REFERENCE_PROGRAMS)
def pair(request):
    name = request.param
    if name not in BUILDERS:
        pytest.skip(f"no builder for reference program {name}")
    ref_dir = Path(REFERENCE_DIR) / name
    ref_model, raw = load_reference_dir(ref_dir)
    model = compile_program(
        _fresh(BUILDERS[name]),
        raw["vocab"],
        raw["max_seq_len"],
        name=name,
        compiler_bos=raw["compiler_bos"],
        compiler_pad=raw["compiler_pad"],
        causal=raw["causal"],
        mlp_exactness=raw["mlp_exactness"],
    )
    samples = json.loads((ref_dir / "samples.json").read_text())["samples"]
    return name, model, ref_model, raw, samples


def test_every_reference_program_has_a_builder():
    assert set(REFERENCE_PROGRAMS) <= set(BUILDERS), sorted(set(REFERENCE_PROGRAMS) - set(BUILDERS))


def test_decoded_outputs_match_tracr(pair):
    name, model, _, raw, samples = pair
    outs = model.run([s["input"] for s in samples])
    for s, out in zip(samples, outs):
        expected = s["tracr_decoded"][1:]
        if model.is_categorical:
            assert out == expected, (name, s["input"])
        else:
            np.testing.assert_allclose(out, expected, atol=1e-4, err_msg=f"{name} {s['input']}")


def test_same_layers_and_block_kinds(pair):
    name, model, _, raw, _ = pair
    assert model.config.n_layers == raw["model_config"]["num_layers"]
    for lay in raw["layers"]:
        layer = lay["layer"]
        ours_heads = {k: v for k, v in model.metadata.blocks.heads.items() if k.startswith(f"a{layer}.")}
        ref_heads = {f"a{layer}.h{h['head']}": h["node"] for h in lay["heads"]}
        assert ours_heads == ref_heads, (name, layer)
        ours_mlp = model.metadata.blocks.mlps.get(f"m{layer}", [])
        assert bool(ours_mlp) == lay["mlp_used"], (name, layer)
        assert ours_mlp == [m["node"] for m in lay["mlp_nodes"]], (name, layer)
        cols = model.metadata.extra["mlp_hidden_columns"].get(f"m{layer}", {})
        for m in lay["mlp_nodes"]:
            assert cols[m["node"]] == m["hidden_columns"], (name, layer, m["node"])


def test_same_config_residual_layout_and_encoding(pair):
    name, model, ref, raw, _ = pair
    assert model.config == ref.config
    assert model.metadata.residual_labels == raw["residual_labels"]
    assert model.metadata.encoding_map == ref.metadata.encoding_map
    assert model.metadata.output_space == raw["output_space_residual_indices"]
    assert model.metadata.output_values == ref.metadata.output_values
    assert model.metadata.output_encoding == raw["output_encoding"]
    assert model.metadata.output_sop == raw["output_sop"]


def test_same_weights(pair):
    name, model, ref, _, _ = pair
    for key, ref_param in ref.named_parameters():
        ours = getattr(model, key)
        assert ours.shape == ref_param.shape, (name, key)
        torch.testing.assert_close(ours, ref_param, atol=1e-5, rtol=1e-5, msg=lambda m, key=key: f"{name} {key}: {m}")


def test_same_residual_stream_as_tracr(pair):
    """The final residual of every stored sample, not only the decoded output."""
    name, model, _, _, _ = pair
    with np.load(Path(REFERENCE_DIR) / name / "residuals.npz") as z:
        ids, lengths, final = z["input_ids"], z["lengths"], z["final_residual"]
    for i in range(0, len(ids), max(1, len(ids) // 40)):
        n = int(lengths[i]) + 1
        x = torch.as_tensor(ids[i, :n], dtype=torch.long)[None]
        with torch.no_grad():
            res = model(x)[0].numpy()
        np.testing.assert_allclose(res, final[i, :n], atol=2e-4, rtol=1e-4, err_msg=f"{name} sample {i}")


_NODE_FIELDS = (
    "expr_type",
    "encoding",
    "operands",
    "output_basis",
    "predicate",
    "keys",
    "queries",
    "selector",
    "sop",
    "layer",
    "block_type",
)


def test_node_metadata_matches_reference(pair):
    name, model, ref, raw, _ = pair
    ours = model.metadata.node_by_label
    assert set(ours) == {n["label"] for n in raw["nodes"]}, name
    for n in raw["nodes"]:
        mine = ours[n["label"]]
        for f in _NODE_FIELDS:
            if f in n:
                assert getattr(mine, f) == n[f], (name, n["label"], f)
        if n.get("is_sop"):
            if n["encoding"] == "numerical":
                np.testing.assert_allclose(mine.value_set, n["value_set"], err_msg=f"{name} {n['label']}")
            else:
                assert mine.value_set == n["value_set"], (name, n["label"])
        assert model.metadata.extra["computational_depth"][n["label"]] == n["computational_depth"]
    heads = {h["node"]: h["head"] for lay in raw["layers"] for h in lay["heads"]}
    for label, h in heads.items():
        assert ours[label].head == h
    assert sorted(map(list, model.metadata.extra["edges"])) == sorted(map(list, raw["edges"]))


def test_evaluator_matches_tracr_rasp_evaluate(pair):
    """Our RASP evaluator gives Tracr's ``rasp.evaluate`` on every sample (booleans compared as numbers)."""
    name, model, _, _, samples = pair
    program = model.program
    for s in samples:
        got = rasp.evaluate(program, s["input"])
        exp = s["rasp_eval"]
        assert len(got) == len(exp)
        for g, e in zip(got, exp):
            if e is None or g is None:
                assert g is None and e is None, (name, s["input"])
            elif isinstance(e, (int, float)) and not isinstance(e, bool) or isinstance(g, float):
                assert float(g) == pytest.approx(float(e), abs=1e-9), (name, s["input"])
            else:
                assert g == e, (name, s["input"])

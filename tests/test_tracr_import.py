"""Imported Tracr models reproduce Tracr's own outputs and residual streams."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from edgeprune.compiled.io import load_model, save_model
from edgeprune.compiled.tracr_import import load_reference_dir, load_reference_samples
from edgeprune.core.errors import InputError, ModelFileError
from tests.conftest import REFERENCE_PROGRAMS


@pytest.fixture(scope="module", params=REFERENCE_PROGRAMS)
def imported(request, reference_dir):
    ref = reference_dir / request.param
    model, raw = load_reference_dir(ref)
    return model, raw, load_reference_samples(ref), np.load(ref / "residuals.npz")


def test_six_reference_programs_present():
    assert set(REFERENCE_PROGRAMS) >= {"reverse", "xproportion", "hist", "length", "pair_balance", "sort_unique"}


def test_decoded_outputs_match_tracr(imported):
    model, raw, samples, _ = imported
    outputs = model.run([s["input"] for s in samples])
    for out, s in zip(outputs, samples):
        expected = s["tracr_decoded"][1:]
        if model.is_categorical:
            assert out == expected, s["input"]
        else:
            assert np.allclose(out, np.asarray(expected, dtype=float), atol=1e-5), s["input"]


def test_final_residual_matches_within_1e5(imported):
    model, _, samples, res = imported
    final = torch.from_numpy(res["final_residual"])
    lengths = res["lengths"]
    for i, s in enumerate(samples):
        n = int(lengths[i]) + 1
        got = model(torch.tensor([s["input_ids"]]))[0]
        assert (got - final[i, :n]).abs().max().item() < 1e-5


def test_layer_residuals_match(imported):
    model, _, samples, res = imported
    for k, idx in enumerate(res["layer_residual_sample_index"]):
        s = samples[int(idx)]
        n = len(s["input_ids"])
        trace = model.residual_trace(torch.tensor([s["input_ids"]]))
        for j, x in enumerate(trace):
            assert (x[0] - torch.from_numpy(res["layer_residuals"][k, j, :n])).abs().max().item() < 1e-5


def test_metadata_blocks_match_layers(imported):
    model, raw, _, _ = imported
    for lay in raw["layers"]:
        l = lay["layer"]
        heads = {h for h in model.metadata.blocks.heads if h.startswith(f"a{l}.")}
        assert len(heads) == len(lay["heads"])
        assert (f"m{l}" in model.metadata.blocks.mlps) == bool(lay["mlp_nodes"])


def test_batched_padding_equals_single_runs(reference_dir):
    model, _ = load_reference_dir(reference_dir / "reverse")
    inputs = [[1], [2, 3], [3, 1, 2, 2, 1]]
    assert model.run(inputs) == [model.run([s])[0] for s in inputs]


def test_save_and_load_round_trip(tmp_path, reference_dir):
    model, _ = load_reference_dir(reference_dir / "hist")
    save_model(model, tmp_path / "m")
    again = load_model(tmp_path / "m")
    ids = torch.tensor([model.metadata.encode(["a", "b", "a"])])
    assert torch.equal(model(ids), again(ids))
    assert again.metadata.to_dict() == model.metadata.to_dict()


# ----- bad input --------------------------------------------------------------


def test_token_outside_vocab(reference_dir):
    model, _ = load_reference_dir(reference_dir / "reverse")
    with pytest.raises(InputError, match="not in the vocab"):
        model.run([[1, 7]])


def test_input_longer_than_max_seq_len(reference_dir):
    model, _ = load_reference_dir(reference_dir / "reverse")
    with pytest.raises(InputError, match="max_seq_len=5"):
        model.run([[1, 2, 3, 1, 2, 3]])


def test_bos_is_not_an_input_token(reference_dir):
    model, _ = load_reference_dir(reference_dir / "reverse")
    with pytest.raises(InputError):
        model.run([["BOS", 1]])


def test_reference_dir_missing_params(tmp_path, reference_dir):
    shutil.copy(reference_dir / "reverse" / "model.json", tmp_path / "model.json")
    with pytest.raises(ModelFileError, match="missing params.npz"):
        load_reference_dir(tmp_path)


def test_reference_dir_not_a_directory(tmp_path):
    with pytest.raises(ModelFileError, match="not a directory"):
        load_reference_dir(tmp_path / "nope")


def test_reference_dir_malformed_json(tmp_path, reference_dir):
    shutil.copy(reference_dir / "reverse" / "params.npz", tmp_path / "params.npz")
    (tmp_path / "model.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        load_reference_dir(tmp_path)


def test_reference_dir_missing_field(tmp_path, reference_dir):
    shutil.copy(reference_dir / "reverse" / "params.npz", tmp_path / "params.npz")
    raw = json.loads((reference_dir / "reverse" / "model.json").read_text())
    del raw["residual_labels"]
    (tmp_path / "model.json").write_text(json.dumps(raw))
    with pytest.raises(ModelFileError, match="residual_labels"):
        load_reference_dir(tmp_path)


def test_reference_dir_missing_parameter(tmp_path, reference_dir):
    shutil.copy(reference_dir / "reverse" / "model.json", tmp_path / "model.json")
    with np.load(reference_dir / "reverse" / "params.npz") as z:
        params = {k: z[k] for k in z.files if "layer_3/mlp/linear_2/w" not in k}
    np.savez(tmp_path / "params.npz", **params)
    with pytest.raises(ModelFileError, match="layer_3/mlp/linear_2/w"):
        load_reference_dir(tmp_path)


def test_reference_dir_failed_compile(tmp_path):
    (tmp_path / "FAILED.txt").write_text("boom")
    with pytest.raises(ModelFileError, match="failed Tracr compile"):
        load_reference_dir(tmp_path)


def test_saved_model_files_disagree(tmp_path, reference_dir):
    rev, _ = load_reference_dir(reference_dir / "reverse")
    hist, _ = load_reference_dir(reference_dir / "hist")
    save_model(rev, tmp_path / "rev")
    save_model(hist, tmp_path / "hist")
    shutil.copy(tmp_path / "hist" / "weights.safetensors", tmp_path / "rev" / "weights.safetensors")
    with pytest.raises(ModelFileError, match="disagrees|shape"):
        load_model(tmp_path / "rev")


def test_saved_model_missing_weights(tmp_path, reference_dir):
    rev, _ = load_reference_dir(reference_dir / "reverse")
    save_model(rev, tmp_path / "rev")
    (tmp_path / "rev" / "weights.safetensors").unlink()
    with pytest.raises(ModelFileError, match="weights.safetensors"):
        load_model(tmp_path / "rev")


@pytest.mark.tracr
def test_live_tracr_model_converts_like_the_reference(reference_dir):
    """With the optional tracr package: compile reverse with Tracr and convert it in Python."""
    from tracr.compiler import compiling, lib  # type: ignore
    from tracr.rasp import rasp  # type: ignore

    from edgeprune.compiled.ground_truth import ground_truth
    from edgeprune.compiled.tracr_import import from_tracr_model

    program = lib.make_reverse(rasp.tokens)
    assembled = compiling.compile_rasp_to_model(program, {1, 2, 3}, 5, compiler_bos="BOS", compiler_pad="compiler_pad")
    model = from_tracr_model(assembled, program, {1, 2, 3}, 5, name="reverse")
    assert model.run([[1, 2, 3], [3, 3, 1]]) == [[3, 2, 1], [1, 3, 3]]
    ref, _ = load_reference_dir(reference_dir / "reverse")
    assert ground_truth(model, "zero").edges == ground_truth(ref, "zero").edges


# ----- every field of a reference directory is checked (issue 15) ------------------------------


def _copy_ref(tmp_path, reference_dir, program="reverse"):
    d = tmp_path / program
    d.mkdir()
    for f in ("model.json", "params.npz"):
        shutil.copy(reference_dir / program / f, d / f)
    return d


def _edit_json(d, edit):
    raw = json.loads((d / "model.json").read_text())
    edit(raw)
    (d / "model.json").write_text(json.dumps(raw))


def _set(path, value):
    def edit(raw):
        node = raw
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value

    return edit


JSON_CASES = {
    "output type foo": (_set(["output_encoder", "type"], "foo"), "output_encoder.type"),
    "output index out of range": (_set(["output_space_residual_indices"], [33, 34, 99]), "0..40"),
    "output index negative": (_set(["output_space_residual_indices"], [-1, 34, 35]), "output_space_residual_indices"),
    "output index repeated": (_set(["output_space_residual_indices"], [33, 33, 35]), "distinct"),
    "output index shifted": (_set(["output_space_residual_indices"], [32, 33, 34]), "output_space_labels"),
    "output index a string": (_set(["output_space_residual_indices"], ["33", 34, 35]), "residual indices"),
    "output_encoding disagrees": (_set(["output_encoding"], "numerical"), "output_encoding"),
    "decoding map short": (_set(["output_encoder", "decoding_map"], [[0, 1], [1, 2]]), "decoding_map"),
    "decoding map not pairs": (_set(["output_encoder", "decoding_map"], [0, 1, 2]), "decoding_map"),
    "encoding map lacks a token": (
        _set(["input_encoder", "encoding_map"], [[1, 0], [2, 1], ["BOS", 3], ["compiler_pad", 4]]),
        "encoding_map",
    ),
    "encoding map repeats an id": (
        _set(["input_encoder", "encoding_map"], [[1, 0], [2, 0], [3, 2], ["BOS", 3], ["compiler_pad", 4]]),
        "ids 0..4",
    ),
    "vocab has a token the map lacks": (_set(["vocab"], [1, 2, 3, 4]), "encoding_map"),
    "bos id disagrees": (_set(["input_encoder", "bos_id"], 0), "bos_id"),
    "bos token unknown": (_set(["input_encoder", "bos_token"], "START"), "bos_token"),
    "max_seq_len disagrees": (_set(["max_seq_len"], 7), "max_input_len_including_bos"),
    "num_layers a string": (_set(["model_config", "num_layers"], "4"), "model_config.num_layers"),
    "num_heads zero": (_set(["model_config", "num_heads"], 0), "model_config.num_heads"),
    "layer_norm not a bool": (_set(["model_config", "layer_norm"], "no"), "layer_norm"),
    "d_model disagrees": (_set(["d_model"], 40), "d_model=40"),
    "residual labels repeat": (
        lambda raw: raw["residual_labels"].__setitem__(1, raw["residual_labels"][0]),
        "distinct",
    ),
    "layer out of range": (_set(["layers", 0, "layer"], 7), "num_layers=4"),
    "head out of range": (_set(["layers", 0, "heads", 0, "head"], 3), "num_heads=1"),
    "head node unknown": (_set(["layers", 0, "heads", 0, "node"], "nope"), "not a node"),
    "node operand unknown": (_set(["nodes", 2, "operands"], ["nope"]), "not a node"),
    "node not an object": (_set(["nodes", 0], 5), r"nodes\[0\]"),
    "declared params disagree": (_set(["params", "pos_embed/embeddings"], [7, 41]), "pos_embed/embeddings"),
    "model.json a list": (None, "JSON object"),
}


@pytest.mark.parametrize("case", sorted(JSON_CASES))
def test_reference_model_json_field_checked(tmp_path, reference_dir, case):
    edit, match = JSON_CASES[case]
    d = _copy_ref(tmp_path, reference_dir)
    if edit is None:
        (d / "model.json").write_text("[1, 2]")
    else:
        _edit_json(d, edit)
    with pytest.raises(ModelFileError, match=match):
        load_reference_dir(d)


def _edit_params(d, edit):
    with np.load(d / "params.npz") as z:
        params = {k: z[k] for k in z.files}
    edit(params)
    np.savez(d / "params.npz", **params)


def _retype(key, dtype):
    return lambda p: p.__setitem__(key, p[key].astype(dtype))


PARAM_CASES = {
    "integer dtype": (_retype("token_embed/embeddings", np.int64), "dtype int64"),
    "bool dtype": (_retype("transformer/layer_0/attn/key/w", np.bool_), "dtype bool"),
    "extra array": (
        lambda p: p.__setitem__("transformer/layer_4/attn/key/w", p["transformer/layer_0/attn/key/w"]),
        "layer_4",
    ),
    "missing array": (lambda p: p.pop("pos_embed/embeddings"), "pos_embed/embeddings"),
    "wrong shape": (lambda p: p.__setitem__("transformer/layer_1/mlp/linear_1/b", np.zeros(31, np.float32)), "shape"),
    "nan value": (lambda p: p["transformer/layer_2/attn/value/w"].__setitem__((0, 0), np.nan), "NaN"),
}


@pytest.mark.parametrize("case", sorted(PARAM_CASES))
def test_reference_params_checked(tmp_path, reference_dir, case):
    edit, match = PARAM_CASES[case]
    d = _copy_ref(tmp_path, reference_dir)
    _edit_params(d, edit)
    # model.json's own shape listing is dropped so the params.npz check itself is exercised
    _edit_json(d, lambda raw: raw.pop("params"))
    with pytest.raises(ModelFileError, match=match):
        load_reference_dir(d)


def test_reference_params_float64_accepted(tmp_path, reference_dir):
    """A float64 archive is the same model (cast to float32), not an error."""
    d = _copy_ref(tmp_path, reference_dir)
    _edit_params(d, lambda p: p.update({k: v.astype(np.float64) for k, v in p.items()}))
    model, _ = load_reference_dir(d)
    assert model.run([[1, 2, 3]]) == [[3, 2, 1]]


def test_reference_pickled_params_refused(tmp_path, reference_dir):
    d = _copy_ref(tmp_path, reference_dir)
    np.savez(d / "params.npz", **{"token_embed/embeddings": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(ModelFileError, match="params.npz cannot be read"):
        load_reference_dir(d)


def test_saved_model_metadata_checked(tmp_path, reference_dir):
    """The same field checks guard a saved model's metadata (output space, blocks)."""
    rev, _ = load_reference_dir(reference_dir / "reverse")
    save_model(rev, tmp_path / "rev")
    doc = json.loads((tmp_path / "rev" / "model.json").read_text())
    doc["metadata"]["output_space"] = [33, 34, 41]
    (tmp_path / "rev" / "model.json").write_text(json.dumps(doc))
    with pytest.raises(ModelFileError, match="0..40"):
        load_model(tmp_path / "rev")
    doc["metadata"]["output_space"] = [33, 34, 35]
    doc["metadata"]["blocks"]["heads"]["a5.h0"] = "length_5"
    (tmp_path / "rev" / "model.json").write_text(json.dumps(doc))
    with pytest.raises(ModelFileError, match="a5.h0"):
        load_model(tmp_path / "rev")

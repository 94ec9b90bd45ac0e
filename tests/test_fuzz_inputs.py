"""Fuzz: mutated and truncated input files end in exit status 2 and a message, never a traceback,
and the inputs are left unchanged.  Counts per format are printed (pytest -s)."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from edgeprune.cli import main  # noqa: E402

COUNTS: Counter = Counter()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fz") / "m"
    assert main(["compile", "length", "-o", str(out)]) == 0
    return out


def _mutate(data: bytes, draw) -> bytes:
    kind = draw(st.sampled_from(["truncate", "flip", "insert", "non-utf8"]))
    if kind == "truncate" or not data:
        return data[: draw(st.integers(0, max(0, len(data) - 1)))]
    pos = draw(st.integers(0, len(data) - 1))
    if kind == "flip":
        return data[:pos] + bytes([data[pos] ^ draw(st.integers(1, 255))]) + data[pos + 1 :]
    if kind == "non-utf8":
        return data[:pos] + b"\xff\xfe" + data[pos:]
    return data[:pos] + draw(st.binary(min_size=1, max_size=8)) + data[pos:]


def _run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(argv)
    return rc, err.getvalue()


def _check(fmt: str, argv: list[str], target: Path, ok_if_valid) -> None:
    before = target.read_bytes()
    rc, err = _run(argv)
    assert target.read_bytes() == before, f"{fmt}: input changed"
    assert "Traceback" not in err
    if rc == 0:
        ok_if_valid()  # the mutation left a valid file
        COUNTS[fmt, "still valid"] += 1
    else:
        assert rc == 2, (fmt, rc, err)
        assert err.strip(), f"{fmt}: no message"
        COUNTS[fmt, "clear error"] += 1


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), which=st.sampled_from(["model.json", "weights.safetensors"]))
def test_fuzz_model_dir(tmp_path_factory, model_dir, data, which):
    d = tmp_path_factory.mktemp("case") / "m"
    shutil.copytree(model_dir, d)
    target = d / which
    target.write_bytes(_mutate(target.read_bytes(), data.draw))
    _check(which, ["info", str(d)], target, lambda: None)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_circuit_json(tmp_path_factory, data):
    d = tmp_path_factory.mktemp("circ")
    target = d / "c.json"
    good = json.dumps({"format": "edgeprune-circuit", "edges": [["tok", "m0"], ["m0", "out"]]}).encode()
    target.write_bytes(_mutate(good, data.draw))
    _check("circuit json", ["draw", str(target), "-o", str(d / "p.svg")], target, lambda: None)


# ----- Tracr reference directories (model.json + params.npz) ------------------------------------

REF_FIELDS = [
    "model_config",
    "d_model",
    "input_encoder",
    "residual_labels",
    "output_encoder",
    "output_encoding",
    "output_space_residual_indices",
    "output_space_labels",
    "vocab",
    "max_seq_len",
    "nodes",
    "layers",
    "params",
    "program",
    "output_sop",
]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 60) | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


def _mutate_json_field(doc: dict, draw, fields: list[str] = REF_FIELDS) -> None:
    """Delete, replace or nudge one value somewhere under a field the importer reads."""
    path: list = [draw(st.sampled_from([f for f in fields if f in doc]))]
    node = doc[path[0]]
    while isinstance(node, (dict, list)) and node and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else list(range(len(node)))))
        path.append(key)
        node = node[key]
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    action = draw(st.sampled_from(["delete", "replace", "nudge"]))
    if action == "delete":
        del parent[last]
    elif action == "nudge" and isinstance(node, int) and not isinstance(node, bool):
        parent[last] = node + draw(st.sampled_from([-2, -1, 1, 2]))
    elif action == "nudge" and isinstance(node, list) and node:
        i = draw(st.integers(0, len(node) - 1))
        parent[last] = node + [node[i]] if draw(st.booleans()) else node[:i] + node[i + 1 :]
    else:
        parent[last] = draw(JSON_VALUES)


def _mutate_params(params: dict, draw) -> dict:
    keys = sorted(params)
    key = draw(st.sampled_from(keys))
    action = draw(st.sampled_from(["drop", "extra", "int", "float64", "grow", "flatten", "nan", "rename"]))
    out = dict(params)
    a = params[key]
    if action == "drop":
        del out[key]
    elif action == "extra":
        out["transformer/layer_9/attn/query/w"] = a
    elif action == "int":
        out[key] = a.astype(np.int32)
    elif action == "float64":
        out[key] = a.astype(np.float64)  # still a valid model
    elif action == "grow":
        out[key] = np.concatenate([a, a[:1]], axis=0)
    elif action == "flatten":
        out[key] = a.reshape(-1)
    elif action == "nan":
        b = a.copy()
        b.flat[draw(st.integers(0, b.size - 1))] = np.nan
        out[key] = b
    else:
        out[key.replace("transformer", "transformr")] = out.pop(key)
    return out


def _use_reference(d: Path) -> None:
    """What an accepted reference must support: a forward, the ground truth, a save and a reload."""
    from edgeprune.compiled.ground_truth import ground_truth_dict
    from edgeprune.compiled.io import load_model, save_model
    from edgeprune.compiled.tracr_import import load_reference_dir

    model, _ = load_reference_dir(d)
    model.run([[model.metadata.vocab[0]]])
    ground_truth_dict(model)
    save_model(model, d.parent / "saved")
    load_model(d.parent / "saved")


@pytest.mark.parametrize("program", ["length", "pair_balance"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), how=st.sampled_from(["field", "field", "params", "bytes-json", "bytes-npz"]))
def test_fuzz_tracr_reference_dir(tmp_path_factory, reference_dir, program, data, how):
    d = tmp_path_factory.mktemp("ref") / program
    d.mkdir()
    for f in ("model.json", "params.npz"):
        shutil.copy(reference_dir / program / f, d / f)
    if how == "field":
        doc = json.loads((d / "model.json").read_text())
        _mutate_json_field(doc, data.draw)
        (d / "model.json").write_text(json.dumps(doc))
        target = d / "model.json"
    elif how == "params":
        with np.load(d / "params.npz") as z:
            params = {k: z[k] for k in z.files}
        np.savez(d / "params.npz", **_mutate_params(params, data.draw))
        target = d / "params.npz"
    else:
        target = d / ("model.json" if how == "bytes-json" else "params.npz")
        target.write_bytes(_mutate(target.read_bytes(), data.draw))
    _check(f"tracr reference {target.name} ({how})", ["info", str(d)], target, lambda: _use_reference(d))


SAVED_FIELDS = ["config", "metadata", "ground_truth", "format"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_saved_model_fields(tmp_path_factory, model_dir, data):
    """A saved model.json with one value deleted, replaced or nudged anywhere under config or metadata."""
    from edgeprune.compiled.ground_truth import ground_truth_dict
    from edgeprune.compiled.io import load_model

    d = tmp_path_factory.mktemp("saved") / "m"
    shutil.copytree(model_dir, d)
    doc = json.loads((d / "model.json").read_text())
    top = data.draw(st.sampled_from(SAVED_FIELDS))
    wrapper = {top: doc[top]}
    _mutate_json_field(wrapper, data.draw, fields=[top])
    if top in wrapper:
        doc[top] = wrapper[top]
    else:
        del doc[top]
    (d / "model.json").write_text(json.dumps(doc))

    def use() -> None:
        model = load_model(d)
        model.run([[model.metadata.vocab[0]]])
        ground_truth_dict(model)

    _check("saved model.json (field)", ["info", str(d)], d / "model.json", use)


@pytest.mark.counts
def test_zz_print_counts():
    for (fmt, outcome), n in sorted(COUNTS.items()):
        print(f"fuzz {fmt}: {n} {outcome}")
    assert COUNTS

"""Fuzz: mutated and truncated input files end in exit status 2 and a message, never a traceback,
and the inputs are left unchanged.  Counts per format are printed (pytest -s)."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from collections import Counter
from pathlib import Path

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


def test_zz_print_counts():
    for (fmt, outcome), n in sorted(COUNTS.items()):
        print(f"fuzz {fmt}: {n} {outcome}")
    assert COUNTS

"""Fuzz the files ``--resume`` reads back (the checkpoint and metrics.jsonl) and the ``--inputs`` file
of ``run``: a damaged file either resumes/runs or ends in an EdgePruneError naming it, never another
exception.  Counts per format are printed (pytest -s)."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from edgeprune.core.errors import EdgePruneError  # noqa: E402
from edgeprune.pruning.adapters.compiled import CompiledAdapter  # noqa: E402
from edgeprune.pruning.data import build_data, shuffle_corruption  # noqa: E402
from edgeprune.pruning.train import CHECKPOINT_TENSORS, METRICS, PruneConfig, Pruner  # noqa: E402
from tests.pruning_helpers import random_model  # noqa: E402
from tests.test_fuzz_inputs import JSON_VALUES, _mutate  # noqa: E402

COUNTS: Counter = Counter()
INPUTS = [["a"], ["b", "c"], ["a", "b", "c"], ["c", "c", "a", "b"], ["b", "a"], ["c", "a", "b", "b"]]
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _setup():
    model = random_model(0)
    data = build_data(model, INPUTS, shuffle_corruption(INPUTS), seed=0)
    config = PruneConfig(steps=12, batch_size=4, seed=0, checkpoint_every=5, log_every=1, ablation="interchange")
    return CompiledAdapter(model), data, config


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("run") / "r"
    ad, data, config = _setup()
    Pruner(ad, data, config).run(d, progress=False, stop_after=5)
    return d


def _resume(fmt: str, d: Path) -> None:
    ad, data, config = _setup()
    try:
        result = Pruner(ad, data, config).run(d, resume=True, progress=False, stop_after=2)
    except EdgePruneError as err:
        assert str(err).strip()
        COUNTS[fmt, "clear error"] += 1
        return
    assert result.steps == 7  # resumed from the step-5 checkpoint
    COUNTS[fmt, "resumed"] += 1


def _copy(tmp_path_factory, run_dir: Path) -> Path:
    d = tmp_path_factory.mktemp("case") / "r"
    shutil.copytree(run_dir, d)
    return d


@SETTINGS
@given(data=st.data())
def test_fuzz_checkpoint_bytes(tmp_path_factory, run_dir, data):
    d = _copy(tmp_path_factory, run_dir)
    path = d / CHECKPOINT_TENSORS
    path.write_bytes(_mutate(path.read_bytes(), data.draw))
    _resume("checkpoint bytes", d)


def _read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    with safe_open(str(path), framework="pt") as fh:
        doc = json.loads(fh.metadata()["edgeprune"])
    return load_file(str(path)), doc


STATE_FIELDS = ["step", "elapsed", "optimizer_scalars", "format", "n_edges", "config"]


@SETTINGS
@given(data=st.data())
def test_fuzz_checkpoint_state(tmp_path_factory, run_dir, data):
    """The JSON state in the checkpoint's header, one field changed or removed."""
    d = _copy(tmp_path_factory, run_dir)
    path = d / CHECKPOINT_TENSORS
    tensors, doc = _read_checkpoint(path)
    field = data.draw(st.sampled_from(STATE_FIELDS))
    target = doc
    if field in ("optimizer_scalars", "config") and doc[field] and data.draw(st.booleans()):
        target, field = doc[field], data.draw(st.sampled_from(sorted(doc[field])))
    if data.draw(st.booleans()):
        target.pop(field, None)
    else:
        target[field] = data.draw(JSON_VALUES)
    save_file(tensors, str(path), metadata={"edgeprune": json.dumps(doc)})
    _resume("checkpoint state", d)


@SETTINGS
@given(data=st.data())
def test_fuzz_checkpoint_tensors(tmp_path_factory, run_dir, data):
    """One tensor of the checkpoint dropped, renamed, reshaped, retyped or filled with NaN."""
    d = _copy(tmp_path_factory, run_dir)
    path = d / CHECKPOINT_TENSORS
    tensors, doc = _read_checkpoint(path)
    key = data.draw(st.sampled_from(sorted(tensors)))
    action = data.draw(st.sampled_from(["drop", "rename", "grow", "scalar", "int", "float64", "nan"]))
    t = tensors.pop(key)
    if action == "rename":
        tensors[data.draw(st.sampled_from(["opt.x.exp_avg", "opt.9.exp_avg", "opt.0", key + "_"]))] = t
    elif action == "grow":
        tensors[key] = torch.cat([t.reshape(-1), t.reshape(-1)[:1]])
    elif action == "scalar":
        tensors[key] = t.reshape(-1)[:1].clone()
    elif action == "int":
        tensors[key] = t.to(torch.int32)
    elif action == "float64":
        tensors[key] = t.to(torch.float64)
    elif action == "nan":
        tensors[key] = torch.full_like(t, float("nan")) if t.is_floating_point() else t
    save_file(tensors, str(path), metadata={"edgeprune": json.dumps(doc)})
    _resume("checkpoint tensors", d)


@SETTINGS
@given(data=st.data())
def test_fuzz_metrics_log(tmp_path_factory, run_dir, data):
    """metrics.jsonl is only a log: any damage to it must not block --resume."""
    d = _copy(tmp_path_factory, run_dir)
    path = d / METRICS
    path.write_bytes(_mutate(path.read_bytes(), data.draw) + data.draw(st.binary(max_size=16)))
    _resume("metrics.jsonl", d)
    assert COUNTS["metrics.jsonl", "clear error"] == 0


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    from edgeprune.cli import main

    out = tmp_path_factory.mktemp("m") / "m"
    assert main(["compile", "reverse", "-o", str(out)]) == 0
    return out


_LINES = st.sampled_from(["[1, 2, 3]", "[3]", "[]", "", '["1", 2]', "[1, 2, 3, 1, 2, 3]", "[4]", '{"a": 1}', "[[1]]"])


@SETTINGS
@given(lines=st.lists(_LINES | JSON_VALUES.map(json.dumps), max_size=4), data=st.data())
def test_fuzz_run_inputs_file(tmp_path_factory, model_dir, lines, data):
    from edgeprune.cli import main

    path = tmp_path_factory.mktemp("in") / "inputs.jsonl"
    raw = "\n".join(lines).encode()
    path.write_bytes(_mutate(raw, data.draw) if raw and data.draw(st.booleans()) else raw)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(["run", str(model_dir), "--inputs", str(path)])
    assert "Traceback" not in err.getvalue()
    assert rc in (0, 2), (rc, err.getvalue())
    if rc == 2:
        assert "inputs.jsonl" in err.getvalue(), err.getvalue()  # every problem names the file (and its line)
    COUNTS["run --inputs", "ran" if rc == 0 else "clear error"] += 1


@pytest.mark.parametrize(
    "content, needle",
    [
        (b"[1, 2]\n\xff[1]\n", "inputs.jsonl:2: byte 0xff is not UTF-8"),
        (b"[1, 2]\n[1, 7]\n", "inputs.jsonl:2: token 7 is not in the vocab"),
        (b"[1, 2, 3, 1, 2, 3]\n", "inputs.jsonl:1: input has 6 tokens"),
        (b"[1]\n{oops\n", "inputs.jsonl:2: not a JSON list"),
        (b"\n\n", "has no inputs"),
    ],
)
def test_run_inputs_errors_name_the_line(tmp_path, model_dir, capsys, content, needle):
    from edgeprune.cli import main

    path = tmp_path / "inputs.jsonl"
    path.write_bytes(content)
    assert main(["run", str(model_dir), "--inputs", str(path)]) == 2
    assert needle in capsys.readouterr().err


CHECKPOINT_CASES = {
    "nan masks": (lambda t, d: t["edge_log_alpha"].fill_(float("nan")), "damaged training state"),
    "rng state retyped": (lambda t, d: t.__setitem__("rng_state", t["rng_state"].float()), "rng_state"),
    "optimizer moment missing": (lambda t, d: t.pop("opt.0.exp_avg_sq"), "exp_avg_sq"),
    "optimizer moment reshaped": (lambda t, d: t.__setitem__("opt.0.exp_avg", t["opt.0.exp_avg"][:1]), "exp_avg"),
    "optimizer key unparsable": (lambda t, d: t.__setitem__("opt.x.exp_avg", t["opt.0.exp_avg"].clone()), "damaged"),
    "optimizer scalar a string": (lambda t, d: d["optimizer_scalars"].__setitem__("0.step", "five"), "not a number"),
    "elapsed null": (lambda t, d: d.__setitem__("elapsed", None), "elapsed"),
    "step negative": (lambda t, d: d.__setitem__("step", -3), "step"),
}


@pytest.mark.parametrize("case", sorted(CHECKPOINT_CASES))
def test_damaged_checkpoint_state_named(tmp_path, run_dir, case):
    edit, needle = CHECKPOINT_CASES[case]
    d = tmp_path / "r"
    shutil.copytree(run_dir, d)
    path = d / CHECKPOINT_TENSORS
    tensors, doc = _read_checkpoint(path)
    edit(tensors, doc)
    save_file(tensors, str(path), metadata={"edgeprune": json.dumps(doc)})
    ad, data, config = _setup()
    with pytest.raises(EdgePruneError, match=needle) as err:
        Pruner(ad, data, config).run(d, resume=True, progress=False, stop_after=2)
    assert str(path) in str(err.value) and "start the run again" in str(err.value)


def _good_rows() -> list[dict]:
    from dataclasses import asdict

    from edgeprune.usecases.methods import Row

    return [
        asdict(
            Row("length", "edge-pruning", "default", edges=4, sparsity=0.9, kl=0.0, exact=True, truth_edges=4, auc=1.0)
        ),
        asdict(Row("reverse", "acdc", "tau=0.01", edges=9, sparsity=0.8, kl=0.1, exact=False, truth_edges=8)),
        asdict(Row("hist", "-", "", error="CompileError: boom")),
    ]


@SETTINGS
@given(data=st.data())
def test_fuzz_compare_methods_rows(tmp_path_factory, data):
    """compare-methods --resume reads its rows.jsonl back: damaged lines are skipped, kept rows have their
    declared types, and the tables render from them."""
    from edgeprune.usecases import comparison_report as report
    from edgeprune.usecases.compare_methods import read_rows, registry_order

    rows = _good_rows()
    i = data.draw(st.integers(0, len(rows) - 1))
    if data.draw(st.booleans()):
        rows[i][data.draw(st.sampled_from(sorted(rows[i])))] = data.draw(JSON_VALUES)
    raw = "\n".join(json.dumps(r) for r in rows).encode()
    if data.draw(st.booleans()):
        raw = _mutate(raw, data.draw)
    path = tmp_path_factory.mktemp("rows") / "rows.jsonl"
    path.write_bytes(raw)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        got = registry_order(read_rows(path))
    report.render(got, "zero")
    report.render(got, "zero", per_program=True)
    COUNTS["compare-methods rows.jsonl", f"{len(got)} of 3 rows kept"] += 1


@pytest.mark.counts
def test_zz_print_counts():
    for (fmt, outcome), n in sorted(COUNTS.items()):
        print(f"fuzz {fmt}: {n} {outcome}")
    assert COUNTS

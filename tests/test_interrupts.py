"""Interrupted runs resume bit for bit: Ctrl-C mid-step (deferred to the step boundary), a second
Ctrl-C (the last checkpoint stands), and SIGKILL in the middle of a checkpoint write."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from edgeprune.pruning.adapters.compiled import CompiledAdapter
from edgeprune.pruning.data import build_data, shuffle_corruption
from edgeprune.pruning.train import CHECKPOINT_TENSORS, PruneConfig, Pruner
from tests.pruning_helpers import random_model

ROOT = Path(__file__).resolve().parent.parent
INPUTS = [["a"], ["b", "c"], ["a", "b", "c"], ["c", "c", "a", "b"], ["b", "a"], ["c", "a", "b", "b"]]
SETUP = """
from edgeprune.pruning.adapters.compiled import CompiledAdapter
from edgeprune.pruning.data import build_data, shuffle_corruption
from edgeprune.pruning.train import PruneConfig, Pruner
from tests.pruning_helpers import random_model
INPUTS = {inputs!r}
model = random_model(0)
data = build_data(model, INPUTS, shuffle_corruption(INPUTS), seed=0)
config = PruneConfig(steps=30, batch_size=4, seed=0, checkpoint_every=5, log_every=5, ablation="interchange",
                     per_example_masks=True)
ad = CompiledAdapter(model)
"""


def _setup():
    model = random_model(0)
    data = build_data(model, INPUTS, shuffle_corruption(INPUTS), seed=0)
    config = PruneConfig(
        steps=30, batch_size=4, seed=0, checkpoint_every=5, log_every=5, ablation="interchange", per_example_masks=True
    )
    return CompiledAdapter(model), data, config


@pytest.fixture(scope="module")
def reference():
    ad, data, config = _setup()
    return Pruner(ad, data, config).run(progress=False)


def _same(result, ref) -> None:
    assert result.steps == ref.steps
    assert result.circuit == ref.circuit
    torch.testing.assert_close(result.masks.edge_log_alpha, ref.masks.edge_log_alpha, rtol=0, atol=0)
    torch.testing.assert_close(result.masks.node_log_alpha, ref.masks.node_log_alpha, rtol=0, atol=0)


def _sigint_during(pruner: Pruner, at_step: int, times: int) -> None:
    """Send ``times`` real SIGINTs to this process in the middle of step ``at_step`` (after the
    step's batch and mask noise are drawn would be the bad moment: here, between two halves of it)."""
    original = pruner.train_step

    def step():
        if pruner.step == at_step:
            for _ in range(times):
                os.kill(os.getpid(), signal.SIGINT)
        return original()

    pruner.train_step = step


def test_ctrl_c_mid_step_resumes_bitwise(tmp_path, reference, capsys):
    ad, data, config = _setup()
    part = Pruner(ad, data, config)
    _sigint_during(part, 12, 1)
    with pytest.raises(KeyboardInterrupt):
        part.run(tmp_path, progress=False)
    assert part.step == 13  # the running step finished, then the loop stopped
    assert "checkpoint at step 13" in capsys.readouterr().err
    resumed = Pruner(ad, data, config).run(tmp_path, resume=True, progress=False)
    _same(resumed, reference)


def test_second_ctrl_c_stops_at_once_and_keeps_the_last_checkpoint(tmp_path, reference, capsys):
    ad, data, config = _setup()
    part = Pruner(ad, data, config)
    _sigint_during(part, 12, 2)
    with pytest.raises(KeyboardInterrupt):
        part.run(tmp_path, progress=False)
    assert "last checkpoint" in capsys.readouterr().err
    resumed = Pruner(ad, data, config)
    resumed.load_checkpoint(tmp_path)
    assert resumed.step == 10
    _same(Pruner(ad, data, config).run(tmp_path, resume=True, progress=False), reference)


def _killed_during_checkpoint(run_dir: Path, nth: int, after_replace: bool) -> None:
    """Run in a subprocess whose ``nth`` checkpoint write stalls (in the .tmp, or after the tensors'
    rename but before the readable JSON copy); SIGKILL it there."""
    stall = textwrap.dedent(f"""
        import os, sys, time
        import edgeprune.pruning.train as train
        calls = [0]
        real_save, real_replace = train.save_file, os.replace
        def save_file(tensors, path, metadata=None):
            real_save(tensors, path, metadata=metadata)
            calls[0] += 1
            if calls[0] == {nth} and not {after_replace}:
                print("STALL", flush=True); time.sleep(600)
        def replace(src, dst):
            real_replace(src, dst)
            if calls[0] == {nth} and {after_replace} and str(dst).endswith(".safetensors"):
                print("STALL", flush=True); time.sleep(600)
        train.save_file = save_file
        train.os.replace = replace
    """)
    script = stall + SETUP.format(inputs=INPUTS) + f"Pruner(ad, data, config).run({str(run_dir)!r}, progress=False)\n"
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "STALL", line
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize("after_replace", [False, True], ids=["in-tmp", "between-files"])
def test_sigkill_during_checkpoint_write_resumes_bitwise(tmp_path, reference, after_replace):
    _killed_during_checkpoint(tmp_path, 3, after_replace)  # the third save: step 15
    assert (tmp_path / (CHECKPOINT_TENSORS + ".tmp")).exists() != after_replace
    ad, data, config = _setup()
    probe = Pruner(ad, data, config)
    probe.load_checkpoint(tmp_path)
    assert probe.step == (15 if after_replace else 10)
    assert not (tmp_path / (CHECKPOINT_TENSORS + ".tmp")).exists()  # leftovers cleaned
    _same(Pruner(ad, data, config).run(tmp_path, resume=True, progress=False), reference)


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    from edgeprune.core.errors import EdgePruneError

    ad, data, config = _setup()
    Pruner(ad, data, config).run(tmp_path, progress=False, stop_after=5)
    path = tmp_path / CHECKPOINT_TENSORS
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(EdgePruneError, match="truncated or corrupt"):
        Pruner(ad, data, config).load_checkpoint(tmp_path)


def test_partial_last_metrics_line_is_dropped_on_resume(tmp_path, reference):
    ad, data, config = _setup()
    Pruner(ad, data, config).run(tmp_path, progress=False, stop_after=10)
    with open(tmp_path / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 11, "lo')  # a kill in the middle of a log write
    _same(Pruner(ad, data, config).run(tmp_path, resume=True, progress=False), reference)
    import json

    steps = [json.loads(ln)["step"] for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [5, 10, 15, 20, 25, 30]


def test_recovery_run_resumed_inside_the_stop_window_stops_where_the_uninterrupted_one_does(tmp_path):
    """The early stop's window (circuit and the step it was first seen) is in the checkpoint: a run
    interrupted between two stop checks resumes to the very same stop step and masks."""
    from edgeprune.pruning.defaults import recovery_config

    model = random_model(0)
    data = build_data(model, INPUTS, shuffle_corruption(INPUTS), seed=0)
    config = recovery_config(
        "random", None, ablation="interchange", steps=80, batch_size=4, stop_window=10, stop_check_every=5
    )
    ad = CompiledAdapter(model)
    full = Pruner(ad, data, config)
    ref = full.run(progress=False)
    assert ref.steps < config.steps  # it stopped early: the window matters
    at = ref.steps - 3  # after the check that opened the window, before the one that closes it
    part = Pruner(ad, data, config)
    part.run(tmp_path, progress=False, stop_after=at)
    probe = Pruner(ad, data, config)
    probe.load_checkpoint(tmp_path)
    assert probe.step == at and probe._stable is not None and probe._stable[1] <= at
    assert full._stable is not None and torch.equal(probe._stable[0], full._stable[0])
    resumed = Pruner(ad, data, config).run(tmp_path, resume=True, progress=False)
    _same(resumed, ref)

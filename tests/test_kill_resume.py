"""A run SIGKILLed at random moments (seeded), then resumed: it continues from the last checkpoint and
ends bit for bit where the uninterrupted run ends, or, killed before its first checkpoint, ``--resume``
says so clearly and a fresh run gives the same result.  Never a corrupt-file traceback."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from edgeprune.core.errors import EdgePruneError
from edgeprune.pruning.adapters.compiled import CompiledAdapter
from edgeprune.pruning.data import build_data, shuffle_corruption
from edgeprune.pruning.train import CHECKPOINT_TENSORS, PruneConfig, Pruner
from tests.pruning_helpers import random_model

ROOT = Path(__file__).resolve().parent.parent
INPUTS = [["a"], ["b", "c"], ["a", "b", "c"], ["c", "c", "a", "b"], ["b", "a"], ["c", "a", "b", "b"]]
STEPS = 60
# a checkpoint after every step, so random moments land inside checkpoint writes too
CONFIG = dict(
    steps=STEPS, batch_size=4, seed=0, checkpoint_every=1, log_every=1, ablation="interchange", per_example_masks=True
)
SCRIPT = f"""
import sys
from edgeprune.pruning.adapters.compiled import CompiledAdapter
from edgeprune.pruning.data import build_data, shuffle_corruption
from edgeprune.pruning.train import PruneConfig, Pruner
from tests.pruning_helpers import random_model
model = random_model(0)
data = build_data(model, {INPUTS!r}, shuffle_corruption({INPUTS!r}), seed=0)
started = []
def callback(metrics):
    if not started:
        started.append(1)
        print("STARTED", flush=True)
Pruner(CompiledAdapter(model), data, PruneConfig(**{CONFIG!r})).run(sys.argv[1], progress=False, callback=callback)
print("DONE", flush=True)
"""


def _pruner() -> Pruner:
    model = random_model(0)
    data = build_data(model, INPUTS, shuffle_corruption(INPUTS), seed=0)
    return Pruner(CompiledAdapter(model), data, PruneConfig(**CONFIG))


@pytest.fixture(scope="module")
def reference() -> tuple[object, float]:
    t0 = time.perf_counter()
    result = _pruner().run(progress=False)
    return result, time.perf_counter() - t0


def _kill_after(run_dir: Path, delay: float) -> bool:
    """Start the run in a subprocess, SIGKILL it ``delay`` seconds after its first step; True if it was killed."""
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(run_dir)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "STARTED"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=120)
        assert proc.stdout is not None
        proc.stdout.close()
    return proc.returncode == -signal.SIGKILL


def _resume_or_restart(run_dir: Path):
    """What a user does after a kill: ``--resume``; if there is no checkpoint yet, the message says so
    and a fresh run (``--overwrite``) starts clean."""
    try:
        return "resumed", _pruner().run(run_dir, resume=True, progress=False)
    except EdgePruneError as err:
        assert "no checkpoint" in str(err) and "without --resume" in str(err), str(err)
        return "restarted", _pruner().run(run_dir, progress=False)


def _check_moments(tmp_path: Path, reference, seed: int, n: int, span: tuple[float, float]) -> list[str]:
    """``n`` kills at seeded moments, drawn as fractions ``span`` of the uninterrupted run's time."""
    ref, seconds = reference
    rng = random.Random(seed)
    outcomes = []
    for i in range(n):
        d = tmp_path / f"kill{i}"
        killed = _kill_after(d, rng.uniform(*span) * seconds)
        how, result = _resume_or_restart(d)
        assert not (d / (CHECKPOINT_TENSORS + ".tmp")).exists()  # leftovers of a killed write are cleaned
        assert result.steps == ref.steps
        assert result.circuit == ref.circuit
        assert torch.equal(result.masks.edge_log_alpha, ref.masks.edge_log_alpha)
        assert torch.equal(result.masks.node_log_alpha, ref.masks.node_log_alpha)
        steps = [json.loads(ln)["step"] for ln in (d / "metrics.jsonl").read_text().splitlines()]
        assert steps == list(range(1, STEPS + 1))  # the log has each step once, no cut line
        outcomes.append(f"{'killed' if killed else 'finished'}+{how}")
    print("kill moments:", ", ".join(outcomes))
    return outcomes


def test_sigkill_at_random_moments_resumes_bitwise(tmp_path, reference):
    outcomes = _check_moments(tmp_path, reference, seed=15, n=1, span=(0.2, 0.7))
    assert outcomes[0].startswith("killed")


@pytest.mark.slow
def test_sigkill_at_many_random_moments_resumes_bitwise(tmp_path, reference):
    outcomes = _check_moments(tmp_path, reference, seed=1515, n=5, span=(0.0, 1.1))
    assert sum(o.startswith("killed") for o in outcomes) >= 3


@pytest.mark.slow
def test_recover_cli_killed_then_resumed(tmp_path):
    """The command a user runs: ``edgeprune recover --run-dir D`` killed, then ``--resume``: same verdict and
    circuit.  (The step it stops at is not compared: the stop rule's window restarts on resume.)"""
    base = [sys.executable, "-m", "edgeprune.cli", "recover", "length", "--steps", "300", "--checkpoint-every", "3"]
    ref = subprocess.run(
        [*base, "--run-dir", str(tmp_path / "ref"), "--json"], cwd=ROOT, capture_output=True, text=True
    )
    assert ref.returncode == 0, ref.stderr
    rng = random.Random(7)
    for i in range(3):
        d = tmp_path / f"k{i}"
        proc = subprocess.Popen([*base, "--run-dir", str(d), "--json"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        while not (d / "metrics.jsonl").exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 2.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=120)
        assert proc.stdout is not None
        proc.stdout.close()
        again = subprocess.run(
            [*base, "--run-dir", str(d), "--resume", "--json"], cwd=ROOT, capture_output=True, text=True
        )
        assert "Traceback" not in again.stderr, again.stderr
        if again.returncode != 0:  # killed before the first checkpoint: a clear message, then a clean start
            assert "no checkpoint" in again.stderr, again.stderr
            again = subprocess.run(
                [*base, "--run-dir", str(d), "--overwrite", "--json"], cwd=ROOT, capture_output=True, text=True
            )
        assert again.returncode == 0, again.stderr
        got, want = json.loads(again.stdout), json.loads(ref.stdout)
        for key in ("verdict", "edges", "missing", "extra"):
            assert got[key] == want[key], (key, got[key], want[key])
        assert (
            json.loads((d / "circuit.json").read_text())["edges"]
            == json.loads((tmp_path / "ref" / "circuit.json").read_text())["edges"]
        )


def test_killed_before_the_first_checkpoint_restarts_clean(tmp_path, reference):
    """A kill before any checkpoint leaves a run directory with only a partial log: ``--resume`` says there is
    nothing to continue, and the fresh run equals the uninterrupted one."""
    ref, _ = reference
    d = tmp_path / "early"
    d.mkdir()
    (d / "metrics.jsonl").write_text('{"step": 1, "lo')
    (d / (CHECKPOINT_TENSORS + ".tmp")).write_bytes(b"\x00" * 10)  # a first write cut short
    how, result = _resume_or_restart(d)
    assert how == "restarted" and result.circuit == ref.circuit
    assert torch.equal(result.masks.edge_log_alpha, ref.masks.edge_log_alpha)
    assert not (d / (CHECKPOINT_TENSORS + ".tmp")).exists()

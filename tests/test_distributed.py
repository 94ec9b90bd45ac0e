"""FSDP pruning (gloo, CPU): sharded runs find the masks a plain single-process run finds.

The 2-process test launches the real command line under ``torchrun`` and compares the saved
log-alphas with a plain run's (same seed, same global batch, per-example mask noise).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")
from safetensors.torch import load_file  # noqa: E402

from edgeprune.cli import main  # noqa: E402
from edgeprune.core.errors import EdgePruneError  # noqa: E402
from edgeprune.pruning.distributed import batch_slicer  # noqa: E402
from tests.hf_helpers import save_model, task_tokenizer, tiny_gpt2, tiny_llama  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ARGS = [
    "--task",
    "ioi",
    "--examples",
    "8,2,4",
    "--steps",
    "5",
    "--batch-size",
    "8",
    "--per-example-masks",
    "--target-sparsity",
    "0.9",
    "--no-progress",
    "--json",
]
TOL = 1e-5


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    tok = task_tokenizer()
    root = tmp_path_factory.mktemp("dist")
    return {
        "gpt2": save_model(tiny_gpt2(len(tok)), tok, root / "gpt2"),
        "llama": save_model(tiny_llama(len(tok), heads=4, kv_heads=2), tok, root / "llama"),
    }


def _masks(run: Path) -> dict[str, torch.Tensor]:
    t = load_file(str(run / "checkpoint.safetensors"))
    return {k: t[k] for k in ("edge_log_alpha", "node_log_alpha", "edge_lambdas")}


def _assert_same_masks(a: Path, b: Path) -> None:
    ma, mb = _masks(a), _masks(b)
    assert (ma["edge_log_alpha"] - 10).abs().max() > 0.05  # training moved the masks off their init
    for k in ma:
        assert (ma[k] - mb[k]).abs().max() <= TOL, k
    edges = [json.loads((d / "circuit.json").read_text())["edges"] for d in (a, b)]
    assert edges[0] == edges[1]


def test_batch_slices_cover_the_global_batch():
    parts = [batch_slicer(r, 4)(12) for r in range(4)]
    assert [list(range(12))[s] for s in parts] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]
    with pytest.raises(EdgePruneError, match="does not split evenly over 4 processes"):
        batch_slicer(0, 4)(10)


@pytest.mark.parametrize("model, extra", [("llama", []), ("gpt2", ["--gradient-checkpointing"])])
def test_fsdp_in_one_process_matches_plain_run(model, extra, model_dirs, tmp_path, capsys):
    """The FSDP wrapping (block units, root unit, tied GPT-2 embeddings) changes nothing numerically."""
    plain, sharded = tmp_path / "plain", tmp_path / "fsdp"
    assert main(["prune", "--model", str(model_dirs[model]), *ARGS, "--out", str(plain)]) == 0
    assert (
        main(["prune", "--model", str(model_dirs[model]), *ARGS, "--out", str(sharded), "--distributed", *extra]) == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert json.loads(lines[0])["circuit"] == pytest.approx(json.loads(lines[-1])["circuit"], rel=1e-4, abs=1e-5)
    _assert_same_masks(plain, sharded)


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not on PATH")
def test_two_processes_match_one(model_dirs, tmp_path, capsys):
    """torchrun, 2 processes, gloo on CPU, a grouped-query Llama: each rank runs half of every batch."""
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["prune", "--model", str(model_dirs["llama"]), *ARGS, "--out", str(one)]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [
        shutil.which("torchrun"),
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "edgeprune.cli",
        "prune",
        "--model",
        str(model_dirs["llama"]),
        *ARGS,
        "--out",
        str(two),
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    reported = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert len(reported) == 1  # rank 0 reports, rank 1 stays quiet
    _assert_same_masks(one, two)
    metrics = json.loads((two / "metrics.json").read_text())
    assert abs(metrics["sparsity"] - 0.9) <= 0.02


def test_every_weight_is_managed_by_fsdp(model_dirs):
    """All HF parameters (blocks, embeddings, tied unembedding) end up as FSDP-sharded DTensors."""
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor

    from edgeprune.pruning.distributed import FSDPAdapter, init_distributed
    from edgeprune.pruning.language_models import load_model

    init_distributed()
    try:
        for name in ("gpt2", "llama"):
            loaded = load_model(model_dirs[name])
            before = loaded.adapter.model_id()
            adapter = FSDPAdapter(loaded.adapter)
            params = dict(loaded.model.named_parameters())
            assert params and all(isinstance(p, DTensor) for p in params.values()), name
            assert adapter.model_id() == before
            with pytest.raises(EdgePruneError, match="outside the root unit"):
                adapter.embed(torch.zeros(1, 3, dtype=torch.long))
    finally:
        dist.destroy_process_group()

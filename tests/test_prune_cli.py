"""``edgeprune prune`` / ``evaluate`` / ``draw`` end to end on tiny GPT-2 and Llama models saved locally.

Each run prunes for a few steps, then checks what a user relies on: the circuit reaches the
requested sparsity within 2 points, circuit.json and metrics.json are written with the task's
metrics, ``evaluate`` reads the circuit back and reproduces the metrics, ``draw`` pictures it.
Every task on both models (the Llama one with grouped-query attention).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from edgeprune.cli import main  # noqa: E402
from edgeprune.core.errors import EdgePruneError  # noqa: E402
from edgeprune.pruning.metrics import TASK_METRICS  # noqa: E402
from edgeprune.pruning.tasks import TASK_NAMES  # noqa: E402
from tests.hf_helpers import save_model, task_tokenizer, tiny_gpt2, tiny_llama  # noqa: E402

torch.set_num_threads(1)

JSONL_ROWS = [
    {"clean": "1 + 2 = <predict>3</predict>", "corrupted": "1 + 5 = <predict>6</predict>"},
    {"clean": "2 + 2 = <predict>4</predict>", "corrupted": "5 + 2 = <predict>7</predict>"},
    {"clean": "3 + 1 = <predict>4</predict>", "corrupted": "3 + 4 = <predict>7</predict>"},
    {"clean": "1 + 1 = <predict>2</predict>", "corrupted": "4 + 1 = <predict>5</predict>"},
    {"clean": "2 + 3 = <predict>5</predict>", "corrupted": "2 + 7 = <predict>9</predict>", "split": "test"},
    {"clean": "4 + 4 = <predict>8</predict>", "corrupted": "1 + 4 = <predict>5</predict>", "split": "test"},
]


@pytest.fixture(scope="module")
def tok():
    return task_tokenizer()


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory, tok) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lm")
    return {
        "gpt2": save_model(tiny_gpt2(len(tok)), tok, root / "gpt2"),
        "llama": save_model(tiny_llama(len(tok), heads=4, kv_heads=2), tok, root / "llama"),  # grouped-query
    }


@pytest.fixture(scope="module")
def jsonl_task(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("task") / "sums.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in JSONL_ROWS))
    return path


def _task_arg(task: str, jsonl_task: Path) -> str:
    return str(jsonl_task) if task == "jsonl" else task


def _prune(model_dir: Path, task: str, out: Path, sparsity: float, *extra: str) -> int:
    return main(
        [
            "prune",
            "--model",
            str(model_dir),
            "--task",
            task,
            "--examples",
            "12,4,6",
            "--steps",
            "12",
            "--batch-size",
            "6",
            "--target-sparsity",
            str(sparsity),
            "--out",
            str(out),
            "--no-progress",
            "--json",
            *extra,
        ]
    )


def _check_run(model_dir: Path, task: str, out: Path, sparsity: float, capsys) -> None:
    assert _prune(model_dir, task, out, sparsity) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    circuit = json.loads((out / "circuit.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert printed == metrics
    assert abs(metrics["sparsity"] - sparsity) <= 0.02
    assert metrics["edges"] == len(circuit["edges"]) > 0
    assert abs(1 - len(circuit["edges"]) / metrics["edges_total"] - sparsity) <= 0.02
    key = task if task in TASK_NAMES else "custom"
    assert set(metrics["circuit"]) == set(TASK_METRICS[key]) == set(metrics["full_model"])
    assert metrics["full_model"]["kl"] == pytest.approx(0.0, abs=1e-6)  # the full model against itself
    assert metrics["circuit"]["kl"] >= 0
    assert circuit["meta"]["n_edges_total"] == metrics["edges_total"] and circuit["meta"]["task"] == task
    assert (out / "checkpoint.safetensors").is_file()

    # evaluate reads the circuit back and reproduces the metrics (other batch size: pooled, not averaged)
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(model_dir),
                "--task",
                task,
                "--examples",
                "12,4,6",
                "--circuit",
                str(out / "circuit.json"),
                "--batch-size",
                "4",
                "--json",
            ]
        )
        == 0
    )
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for name, value in metrics["circuit"].items():
        assert again["circuit"][name] == pytest.approx(value, rel=1e-4, abs=1e-5), name
    assert again["edges"] == metrics["edges"]

    assert main(["draw", str(out / "circuit.json"), "-o", str(out / "circuit.svg")]) == 0
    assert "<svg" in (out / "circuit.svg").read_text()


@pytest.mark.parametrize("task", [*TASK_NAMES, "jsonl"])
@pytest.mark.parametrize("model", ["gpt2", "llama"])
def test_prune_evaluate_draw_every_task(model, task, model_dirs, jsonl_task, tmp_path, capsys):
    """About 1 s per case on one CPU thread (tiny models, 12 steps), so the whole matrix runs by default."""
    sparsity = 0.9 if model == "gpt2" else 0.8
    _check_run(model_dirs[model], _task_arg(task, jsonl_task), tmp_path / "run", sparsity, capsys)


def test_sparsity_reached_exactly_across_targets(model_dirs, tmp_path, capsys):
    """The cut ranks gates, so even after few steps (gates still nearly tied) the count is exact."""
    from edgeprune.core.graph import ComputationalGraph
    from edgeprune.pruning.hard_concrete import MaskParameters
    from edgeprune.pruning.language_models import cut_at_sparsity

    g = ComputationalGraph(2, 4)
    masks = MaskParameters(g, generator=torch.Generator().manual_seed(0))  # every gate at its init ~10
    for s in (0.0, 0.5, 0.9, 0.98, 1.0):
        c = cut_at_sparsity(masks, s)
        assert len(c) == round((1 - s) * g.n_edges)
    with torch.no_grad():
        masks.node_log_alpha[g.writer_index["a0.h1"]] = -20.0  # a writer that is off drops its edges
    c = cut_at_sparsity(masks, 0.0)
    assert all(w != "a0.h1" for w, _ in c.edges)


def test_interrupted_run_resumes_to_the_same_circuit(model_dirs, tmp_path, capsys):
    """Ctrl-C saves a checkpoint; ``--resume`` finishes the run with the circuit an uninterrupted run finds."""
    from edgeprune.pruning.language_models import lm_config, load_model, prune_language_model

    whole = tmp_path / "whole"
    assert _prune(model_dirs["gpt2"], "ioi-t1", whole, 0.9, "--checkpoint-every", "4") == 0

    def interrupt_after_6(pruner):
        step = pruner.train_step

        def train_step():
            if pruner.step == 6:
                raise KeyboardInterrupt
            return step()

        pruner.train_step = train_step

    cut = tmp_path / "cut"
    config = lm_config(0.9, steps=12, batch_size=6, checkpoint_every=4)
    with pytest.raises(KeyboardInterrupt):
        prune_language_model(
            load_model(model_dirs["gpt2"]),
            "ioi-t1",
            config,
            cut,
            sizes=(12, 4, 6),
            progress=False,
            pruner_hook=interrupt_after_6,
        )
    assert json.loads((cut / "checkpoint.json").read_text())["step"] == 6
    assert not (cut / "circuit.json").exists()
    assert _prune(model_dirs["gpt2"], "ioi-t1", cut, 0.9, "--checkpoint-every", "4", "--resume") == 0
    edges = [json.loads((d / "circuit.json").read_text())["edges"] for d in (cut, whole)]
    assert edges[0] == edges[1]
    assert main(["prune", "--model", str(model_dirs["gpt2"]), "--task", "ioi-t1", "--resume"]) == 2
    assert "--resume needs --out" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# bad input: each a clear error naming the problem and the fix


def test_circuit_from_another_model_is_refused(model_dirs, tmp_path, capsys):
    out = tmp_path / "run"
    assert _prune(model_dirs["gpt2"], "ioi-t1", out, 0.9) == 0
    capsys.readouterr()
    # another architecture: the edges do not fit its graph
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(model_dirs["llama"]),
                "--task",
                "ioi-t1",
                "--examples",
                "4",
                "--circuit",
                str(out / "circuit.json"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "another model" in err and "evaluate it with the model it was pruned on" in err
    # same architecture and graph, other weights
    tok = task_tokenizer()
    other = save_model(tiny_gpt2(len(tok), seed=7), tok, tmp_path / "other")
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(other),
                "--task",
                "ioi-t1",
                "--examples",
                "4",
                "--circuit",
                str(out / "circuit.json"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "weights differ" in err and "--allow-other-model" in err
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(other),
                "--task",
                "ioi-t1",
                "--examples",
                "4",
                "--circuit",
                str(out / "circuit.json"),
                "--allow-other-model",
                "--json",
            ]
        )
        == 0
    )


def test_circuit_edges_outside_the_graph_are_refused(model_dirs, tmp_path):
    from edgeprune.core.circuit import Circuit
    from edgeprune.pruning.language_models import circuit_edge_mask, load_model

    loaded = load_model(model_dirs["gpt2"])
    deep = Circuit(edges=[("tok", "a5.h0.q")])  # layer 5 in a 2-layer model
    with pytest.raises(EdgePruneError, match="not in the graph.*another model"):
        circuit_edge_mask(loaded.adapter, deep)


def test_bad_task_inputs(model_dirs, tmp_path, capsys):
    missing = tmp_path / "bad.jsonl"
    missing.write_text(json.dumps({"clean": "1 + 2 = 3", "corrupted": "1 + 5 = 6"}) + "\n")
    assert _prune(model_dirs["gpt2"], str(missing), tmp_path / "o1", 0.9) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl:1" in err and "no <predict>" in err and "mark the answer" in err
    uneven = tmp_path / "uneven.jsonl"
    row = {"clean": "1 + 2 = <predict>3</predict>", "corrupted": "1 + 2 + 2 = <predict>5</predict>"}
    uneven.write_text(json.dumps(row) + "\n")
    assert _prune(model_dirs["llama"], str(uneven), tmp_path / "o2", 0.9) == 2
    err = capsys.readouterr().err
    assert "uneven.jsonl:1" in err and "same number of tokens" in err
    assert _prune(model_dirs["gpt2"], "ioi", tmp_path / "o3", 1.5) == 2
    assert "not in [0, 1]" in capsys.readouterr().err


def test_architecture_without_adapter_is_refused(tmp_path, capsys):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    tok = task_tokenizer()
    cfg = GPTNeoXConfig(
        vocab_size=len(tok),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    path = save_model(GPTNeoXForCausalLM(cfg), tok, tmp_path / "neox")
    assert _prune(path, "ioi", tmp_path / "out", 0.9) == 2
    err = capsys.readouterr().err
    assert "no edge-pruning adapter for architecture GPTNeoXForCausalLM" in err
    assert "GPT2LMHeadModel" in err and "LlamaForCausalLM" in err and "write a ModelAdapter" in err


def test_draw_refuses_unknown_format(tmp_path, capsys):
    from edgeprune.core.circuit import Circuit

    Circuit(edges=[("tok", "out")]).save(tmp_path / "c.json")
    assert main(["draw", str(tmp_path / "c.json"), "-o", str(tmp_path / "c.jpg")]) == 2
    assert "'.jpg'" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["gpt2", "llama"])
def test_bfloat16_model_with_float32_masks(model, model_dirs, tmp_path, capsys):
    """``--dtype bfloat16``: blocks run in bf16, the mixed stream and the log-alphas stay float32."""
    from safetensors.torch import load_file

    out = tmp_path / "bf16"
    assert _prune(model_dirs[model], "ioi-t1", out, 0.9, "--dtype", "bfloat16", "--gradient-checkpointing") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert abs(metrics["sparsity"] - 0.9) <= 0.02
    assert metrics["full_model"]["kl"] == pytest.approx(0.0, abs=1e-6)
    alphas = load_file(str(out / "checkpoint.safetensors"))["edge_log_alpha"]
    assert alphas.dtype == torch.float32 and (alphas - 10).abs().max() > 0.05  # trained, in float32

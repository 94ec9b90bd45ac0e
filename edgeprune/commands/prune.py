"""``edgeprune prune``, ``evaluate`` and ``draw``: circuits in ``transformers`` language models."""

from __future__ import annotations

import argparse
import json
import os
import sys

from edgeprune.core.errors import EdgePruneError
from edgeprune.core.files import check_output
from edgeprune.core.options import ABLATION_HELP, ABLATIONS

TASK_HELP = "ioi, ioi-t1, gt, gp, boolean-ip, boolean-fs, or a JSONL file of clean/corrupted pairs"


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="hub id (e.g. gpt2) or a local directory saved with save_pretrained")
    p.add_argument("--task", required=True, help=TASK_HELP)
    p.add_argument(
        "--dtype",
        default="float32",
        help="weights and block arithmetic: float32 or bfloat16 (the mixed residual stream and the masks stay float32)",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument(
        "--examples",
        default=None,
        metavar="N|TRAIN,VAL,TEST",
        help="examples per split of a generated task (default: the paper's sizes)",
    )
    p.add_argument("--seed", type=int, default=0, help="task generation and mask noise")
    p.add_argument(
        "--ablation",
        choices=ABLATIONS,
        default="interchange",
        help=ABLATION_HELP + " (evaluate: the means over the task's train split); default: interchange",
    )
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "prune",
        help="find a circuit in a GPT-2 or Llama model on a task",
        description="Edge Pruning on a transformers model (GPT2LMHeadModel or LlamaForCausalLM). Writes "
        "circuit.json and metrics.json (test-split metrics of the circuit and the full model) to --out. "
        "Under torchrun (WORLD_SIZE > 1) or with --distributed the frozen model is sharded with FSDP.",
    )
    _model_args(p)
    p.add_argument(
        "--target-sparsity",
        type=float,
        default=None,
        help="fraction of edges removed in the final circuit (default 0.98)",
    )
    p.add_argument(
        "--edge-target",
        type=float,
        default=None,
        help="Lagrangian sparsity target during training (default: --target-sparsity; may exceed 1)",
    )
    p.add_argument("--steps", type=int, default=None, help="training steps (default 3000, the paper's)")
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="global batch (default 32; split over the processes when distributed)",
    )
    p.add_argument("--lr", type=float, default=None, help="learning rate of the log-alphas (default 0.8)")
    p.add_argument("--lambda-lr", type=float, default=None, help="learning rate of the lambdas (default 0.8)")
    p.add_argument("--eval-batch-size", type=int, default=None)
    p.add_argument(
        "--per-example-masks",
        action="store_true",
        help="one mask sample per example instead of one per batch (less gradient noise)",
    )
    p.add_argument(
        "--gradient-checkpointing",
        action="store_true",
        help="recompute each block in the backward pass instead of storing its activations",
    )
    p.add_argument("--out", default=None, help="run directory: checkpoints, metrics.jsonl, circuit.json, metrics.json")
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=0,
        help="checkpoint every N steps (needs --out); default 0: with --out, a checkpoint after every "
        "5 minutes of training and at the end, so a killed run continues with --resume",
    )
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    p.add_argument("--overwrite", action="store_true", help="replace the contents of an existing non-empty --out")
    p.add_argument(
        "--distributed", action="store_true", help="FSDP over the processes of torchrun (implied when WORLD_SIZE > 1)"
    )
    p.add_argument("--backend", default=None, help="torch.distributed backend (default: nccl on cuda, else gloo)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_prune)

    e = subparsers.add_parser(
        "evaluate",
        help="score a circuit file on a task's test split",
        description="The paper's metrics (KL, task metrics, edges, sparsity) of a circuit on the test split, "
        "next to the full model's.",
    )
    _model_args(e)
    e.add_argument("--circuit", required=True, help="circuit.json written by edgeprune prune")
    e.add_argument("--split", default="test", choices=("train", "validation", "test"))
    e.add_argument("--batch-size", type=int, default=32)
    e.add_argument(
        "--allow-other-model",
        action="store_true",
        help="score a circuit pruned on other weights of the same architecture",
    )
    e.set_defaults(func=run_evaluate)

    d = subparsers.add_parser(
        "draw",
        help="draw a circuit file as a PNG or SVG picture",
        description="Layered picture of a circuit: embeddings at the bottom, out at the top.",
    )
    d.add_argument("circuit", help="circuit JSON file")
    d.add_argument("-o", "--output", required=True, help="picture file, .png or .svg")
    d.add_argument("--title", default=None)
    d.add_argument("--overwrite", action="store_true", help="replace an existing picture file")
    d.set_defaults(func=run_draw)


def _print_metrics(doc: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(doc, sort_keys=True))
        return
    print(
        f"{doc['model']} on {doc['task']} ({doc['split']} split, {doc['examples']} examples, "
        f"{doc['ablation']} ablation)"
    )
    print(f"edges: {doc['edges']} of {doc['edges_total']} (sparsity {doc['sparsity']:.4f})")
    width = max(len(k) for k in doc["circuit"])
    print(f"{'metric':<{width}}  {'circuit':>10}  {'full model':>10}")
    for k, v in doc["circuit"].items():
        print(f"{k:<{width}}  {v:>10.4f}  {doc['full_model'].get(k, float('nan')):>10.4f}")


def _distributed_requested(args: argparse.Namespace) -> bool:
    return bool(args.distributed) or int(os.environ.get("WORLD_SIZE", "1")) > 1


def _check_ranges(args: argparse.Namespace) -> None:
    """Every numeric option of ``prune`` in its range, one clear error naming the option."""
    checks = [
        ("--lr", args.lr, lambda v: v > 0, "> 0"),
        ("--lambda-lr", args.lambda_lr, lambda v: v > 0, "> 0"),
        ("--edge-target", args.edge_target, lambda v: v >= 0, ">= 0"),
        ("--steps", args.steps, lambda v: v >= 1, ">= 1"),
        ("--batch-size", args.batch_size, lambda v: v >= 1, ">= 1"),
        ("--eval-batch-size", args.eval_batch_size, lambda v: v >= 1, ">= 1"),
        ("--checkpoint-every", args.checkpoint_every, lambda v: v >= 0, ">= 0 (0: only at the end)"),
    ]
    for name, value, ok, rule in checks:
        if value is not None and (value != value or not ok(value)):
            raise EdgePruneError(f"{name} must be {rule}, got {value}")


def run_prune(args: argparse.Namespace) -> int:
    from edgeprune.pruning.language_models import (
        DEFAULT_TARGET_SPARSITY,
        lm_config,
        load_model,
        parse_sizes,
        prune_language_model,
    )

    if args.resume and not args.out:
        raise EdgePruneError("--resume needs --out pointing at the interrupted run's directory")
    if args.checkpoint_every and not args.out:
        raise EdgePruneError("--checkpoint-every needs --out (where to write the checkpoints)")
    _check_ranges(args)
    if args.out:
        check_output(args.out, overwrite=args.overwrite, resume=args.resume, inputs=[args.model, args.task])
    target = DEFAULT_TARGET_SPARSITY if args.target_sparsity is None else args.target_sparsity
    config = lm_config(
        target,
        args.edge_target,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        lambda_lr=args.lambda_lr,
        ablation=args.ablation,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        per_example_masks=args.per_example_masks or None,
    )
    sizes = parse_sizes(args.examples)
    if _distributed_requested(args):
        from edgeprune.pruning.distributed import prune_distributed

        result = prune_distributed(
            args.model,
            args.task,
            config,
            out_dir=args.out,
            sizes=sizes,
            seed=args.seed,
            dtype=args.dtype,
            device=args.device,
            backend=args.backend,
            gradient_checkpointing=args.gradient_checkpointing,
            resume=args.resume,
            progress=not (args.no_progress or args.json) and sys.stderr.isatty(),
            eval_batch_size=args.eval_batch_size,
        )
        if result is None:  # not rank 0: rank 0 reports
            return 0
    else:
        loaded = load_model(args.model, args.dtype, args.device, args.gradient_checkpointing)
        result = prune_language_model(
            loaded,
            args.task,
            config,
            out_dir=args.out,
            sizes=sizes,
            seed=args.seed,
            resume=args.resume,
            eval_batch_size=args.eval_batch_size,
            progress=not (args.no_progress or args.json) and sys.stderr.isatty(),
        )
    _print_metrics(result.metrics, args.json)
    if args.out and not args.json:
        print(f"wrote {args.out}/circuit.json and {args.out}/metrics.json")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from edgeprune.core.circuit import Circuit
    from edgeprune.pruning.language_models import circuit_metrics, load_model, load_task, parse_sizes

    circuit = Circuit.load(args.circuit)
    loaded = load_model(args.model, args.dtype, args.device)
    dataset = load_task(args.task, loaded.tokenizer, parse_sizes(args.examples), args.seed)
    doc = circuit_metrics(
        loaded,
        dataset,
        circuit,
        args.task,
        args.ablation,
        args.batch_size,
        split=args.split,
        allow_other_model=args.allow_other_model,
    )
    doc["circuit_file"] = str(args.circuit)
    _print_metrics(doc, args.json)
    return 0


def run_draw(args: argparse.Namespace) -> int:
    from edgeprune.verify.draw import draw_circuit

    check_output(args.output, overwrite=args.overwrite, inputs=[args.circuit], flag="-o")
    path = draw_circuit(args.circuit, args.output, title=args.title)
    print(f"wrote {path}")
    return 0

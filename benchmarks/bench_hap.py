"""HAP against Edge Pruning on a random GPT-2 and a generated task: CPU time and faithfulness side by side.

Both run the same pruning settings (``lm_config`` at ``--sparsity``, ``--steps`` steps) through
``edgeprune compare-methods``' language-model bench, so they are scored identically (KL and the
task metric on the test split, interchange ablation).  HAP's time includes its attribution pass.
Its per-step saving comes from writers that no kept edge reads: they are neither computed nor
mixed (``DisentangledForward(live_writers=...)``), so it grows as ``--keep`` shrinks.  A random
model has no real circuit, so the KL numbers compare the two optimisers, not circuit quality.

    python benchmarks/bench_hap.py [--layers 4 --heads 8 --d-model 64 --steps 200 --hap-steps 100 --keep 0.5,0.2,0.1]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgeprune.commands.compare_methods import LMBench, Options  # noqa: E402
from tests.hf_helpers import save_model, task_tokenizer, tiny_gpt2  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--task", default="ioi")
    ap.add_argument("--examples", default="128,32,64", help="train,validation,test examples")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--hap-steps", type=int, default=None, help="HAP's pruning steps (default: --steps)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--sparsity", type=float, default=0.9)
    ap.add_argument("--keep", default="0.5,0.2,0.1", help="HAP kept fractions to compare")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    sizes = tuple(int(s) for s in args.examples.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        tok = task_tokenizer()
        model_dir = save_model(
            tiny_gpt2(len(tok), n_layer=args.layers, n_head=args.heads, n_embd=args.d_model, seed=args.seed),
            tok,
            Path(tmp) / "gpt2",
        )
        base = dict(
            ablation="interchange",
            seed=args.seed,
            steps=args.steps,
            target_sparsity=args.sparsity,
            batch_size=args.batch,
        )
        bench = LMBench(str(model_dir), args.task, Options(methods=("ep",), **base), sizes=sizes, device=args.device)
        ep = bench.run_ep()
        rows = [ep]
        for keep in (float(k) for k in args.keep.split(",")):
            bench.opts = Options(methods=("hap",), hap_keep=keep, hap_steps=args.hap_steps, **base)
            rows.append(bench.run_hap())
    doc = {
        "model": f"random GPT-2, {args.layers} layers x {args.heads} heads, d {args.d_model}",
        "edges": bench.graph.n_edges,
        "task": args.task,
        "steps": args.steps,
        "sparsity": args.sparsity,
        "empty_kl": bench.empty_metrics["kl"],
        "rows": [],
    }
    for r in rows:
        doc["rows"].append(
            {
                "method": r.method,
                "setting": r.setting,
                "edges": r.edges,
                "kl": r.kl,
                r.metric_name: r.metric,
                "cpu_s": r.cpu_seconds,
                "wall_s": r.seconds,
                "cpu_ratio_to_ep": r.cpu_seconds / ep.cpu_seconds,
                "kept": r.extra.get("kept"),
                "attribution_s": r.extra.get("attribution_seconds"),
            }
        )
    if args.json:
        print(json.dumps(doc, indent=1))
    else:
        print(
            f"{doc['model']}, {doc['edges']} edges; {args.task}, {args.steps} steps, sparsity {args.sparsity}, "
            f"interchange ablation; empty-circuit KL {doc['empty_kl']:.4f}"
        )
        print(f"{'method':<6} {'setting':<44} {'edges':>5} {'KL':>8} {'cpu s':>7} {'x EP':>6}")
        for r in doc["rows"]:
            print(
                f"{r['method']:<6} {r['setting'][:44]:<44} {r['edges']:>5} {r['kl']:>8.4f} {r['cpu_s']:>7.1f} "
                f"{r['cpu_ratio_to_ep']:>6.2f}"
            )
    return doc


if __name__ == "__main__":
    main()

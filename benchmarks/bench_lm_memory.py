"""Peak memory of pruning a language model against the number of training examples.

Each size runs in its own subprocess (peak RSS is per process): a random GPT-2 built from a
config (no download), random token ids of one length, the library ``prune`` for a few steps at a
fixed batch, then the faithfulness of the binary circuit over the whole data set (the evaluation
pass).  With per-batch targets and chunked evaluation the peak should not grow with the data:
the full model's vocabulary-wide outputs are cached only below ``TARGET_CACHE_BYTES``.
Timings and RSS are noisy on a shared machine; RSS is the number to compare.

    python benchmarks/bench_lm_memory.py [--sizes 200,2000,20000 --seq 32 --vocab 50257 --steps 5]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def one(n: int, seq: int, vocab: int, layers: int, d_model: int, heads: int, steps: int, batch: int) -> dict:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from edgeprune.pruning.adapters.gpt2 import GPT2Adapter
    from edgeprune.pruning.train import PruneConfig, PruneData, Pruner

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=vocab, n_positions=seq, n_embd=d_model, n_layer=layers, n_head=heads)
    model = GPT2LMHeadModel(cfg).eval()
    ids = torch.randint(0, vocab, (n, seq), generator=torch.Generator().manual_seed(1))
    t0 = time.perf_counter()
    pruner = Pruner(GPT2Adapter(model), PruneData(ids), PruneConfig(steps=steps, batch_size=batch))
    setup = time.perf_counter() - t0
    pruner.run(progress=False)
    loss = pruner.binary_loss(pruner.masks.edge_log_alpha.detach() > 0, limit=256)  # chunked evaluation
    return {
        "examples": n,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "setup_s": round(setup, 2),
        "total_s": round(time.perf_counter() - t0, 2),
        "cached_targets": pruner.full_out is not None,
        "eval_chunk": pruner.chunk,
        "circuit_loss": round(loss, 4),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="200,2000,20000")
    ap.add_argument("--seq", type=int, default=32)
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    shape = (a.seq, a.vocab, a.layers, a.d_model, a.heads, a.steps, a.batch)
    if a.one is not None:
        print(json.dumps(one(a.one, *shape)))
        return []
    rows = []
    print(
        f"random GPT-2: {a.layers} layers, d_model {a.d_model}, {a.heads} heads, vocab {a.vocab}; "
        f"seq {a.seq}, batch {a.batch}, {a.steps} steps; one subprocess per size"
    )
    print(f"{'examples':>9} {'peak RSS MB':>12} {'setup s':>8} {'total s':>8} {'cached':>7} {'chunk':>6}")
    for n in [int(x) for x in a.sizes.split(",")]:
        cmd = [
            sys.executable,
            __file__,
            "--one",
            str(n),
            "--seq",
            str(a.seq),
            "--vocab",
            str(a.vocab),
            "--layers",
            str(a.layers),
            "--d-model",
            str(a.d_model),
            "--heads",
            str(a.heads),
            "--steps",
            str(a.steps),
            "--batch",
            str(a.batch),
        ]
        row = json.loads(
            subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        )
        rows.append(row)
        print(
            f"{row['examples']:>9} {row['peak_rss_mb']:>12.0f} {row['setup_s']:>8} {row['total_s']:>8} "
            f"{str(row['cached_targets']):>7} {row['eval_chunk']:>6}"
        )
    base = rows[0]["peak_rss_mb"]
    print(
        "peak RSS relative to the first size: "
        + ", ".join(f"{r['examples']}: {r['peak_rss_mb'] / base:.3f}" for r in rows)
    )
    return rows


if __name__ == "__main__":
    main()

"""Seconds per pruning step on a GPT-2-small-shaped random model, against a plain forward+backward.

A pruning step here = corrupted activations (no grad) + masked disentangled forward
+ backward to the (W, R) edge mask and (W,) node mask, the work the engine does per
step (the optimizer update on 33k mask entries is negligible and left out).  The
plain step = the unmasked ``transformers`` model forward + backward to its weights.
Peak memory: on CPU, how far the process's peak RSS (``resource.getrusage``) rises during
the first (warm-up) masked step above the RSS before it, plus the process peak; on a GPU,
torch's CUDA peak for each kind of step.  (The plain step runs second and reuses memory
the allocator kept, so its RSS growth says nothing and is not printed.)

    python benchmarks/bench_gpt2_step.py [--batch 8 --seq 64 --steps 3 --device cpu]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgeprune.pruning.adapters.hf_loading import adapter_for  # noqa: E402
from edgeprune.pruning.disentangled import DisentangledForward, ablated_states  # noqa: E402


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--d-model", type=int, default=768)
    ap.add_argument("--steps", type=int, default=3, help="timed steps (after one warm-up step)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--dtype", default="float32", help="model weights: float32 or bfloat16 (masks stay float32)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(
        n_layer=args.layers,
        n_head=args.heads,
        n_embd=args.d_model,
        n_positions=max(1024, args.seq),
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    cfg._attn_implementation = "eager"
    from edgeprune.pruning.adapters.hf_loading import resolve_dtype

    model = GPT2LMHeadModel(cfg).to(args.device, dtype=resolve_dtype(args.dtype)).eval()
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, cfg.vocab_size, (args.batch, args.seq), generator=gen).to(args.device)
    corrupted = torch.randint(0, cfg.vocab_size, (args.batch, args.seq), generator=gen).to(args.device)

    adapter = adapter_for(model, gradient_checkpointing=args.gradient_checkpointing, freeze=True)
    g = adapter.graph
    fwd = DisentangledForward(adapter)
    allowed = g.allowed_mask().to(args.device)
    edge_logits = torch.full_like(allowed, 2.0, requires_grad=True)
    node_logits = torch.full((len(g.writers),), 2.0, device=args.device, requires_grad=True)
    with torch.no_grad():
        target = adapter.full_output(ids).log_softmax(-1)

    def pruning_step() -> None:
        ablated = ablated_states(adapter, "interchange", ids, corrupted)
        out = fwd.output(ids, torch.sigmoid(edge_logits) * allowed, torch.sigmoid(node_logits), ablated)
        loss = torch.nn.functional.kl_div(out.log_softmax(-1), target, log_target=True, reduction="batchmean")
        edge_logits.grad = node_logits.grad = None
        loss.backward()
        assert edge_logits.grad is not None

    def plain_step() -> None:
        logits = model(ids).logits.float()
        loss = torch.nn.functional.kl_div(logits.log_softmax(-1), target, log_target=True, reduction="batchmean")
        model.zero_grad(set_to_none=True)
        loss.backward()

    growth: dict[str, float] = {}

    def timed(fn) -> float:
        before = _rss_mib()
        fn()  # warm-up
        growth[fn.__name__] = _rss_mib() - before
        _sync(args.device)
        t0 = time.perf_counter()
        for _ in range(args.steps):
            fn()
        _sync(args.device)
        return (time.perf_counter() - t0) / args.steps

    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    masked_s = timed(pruning_step)
    rss_after_masked = _rss_mib()
    masked_gpu = torch.cuda.max_memory_allocated() / 2**20 if cuda else None

    model.requires_grad_(True)  # the plain baseline trains the weights (a normal fine-tuning step)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    plain_s = timed(plain_step)
    plain_gpu = torch.cuda.max_memory_allocated() / 2**20 if cuda else None

    result = {
        "device": args.device,
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "seq": args.seq,
        "layers": args.layers,
        "heads": args.heads,
        "d_model": args.d_model,
        "edges": g.n_edges,
        "gradient_checkpointing": args.gradient_checkpointing,
        "dtype": args.dtype,
        "masked_step_s": round(masked_s, 4),
        "plain_step_s": round(plain_s, 4),
        "ratio": round(masked_s / plain_s, 2),
        "masked_step_peak_growth_mib": round(growth["pruning_step"], 1),
        "peak_rss_mib_after_masked": round(rss_after_masked, 1),
        "peak_rss_mib_end": round(_rss_mib(), 1),
    }
    if cuda:
        result.update(peak_gpu_mib_masked=round(masked_gpu, 1), peak_gpu_mib_plain=round(plain_gpu, 1))
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()

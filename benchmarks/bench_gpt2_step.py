"""Seconds per pruning step on a GPT-2-small-shaped random model, against a plain forward+backward.

The pruning step timed is the engine's real ``Pruner.train_step`` (batch draw from a
pool of ``--examples`` examples, corrupted run, mask sampling, masked disentangled
forward, KL loss, Lagrangian, backward to the (W, R) edge and (W,) node masks, gradient
clipping, AdamW), with the language-model defaults of ``edgeprune prune``.  The plain
step = the unmasked ``transformers`` model forward + backward to its weights on the same
batch.  The two alternate step by step in one run (``--warmup`` untimed steps of each, then
``--steps`` timed ones), so load on the machine hits both alike; the ratio is of their medians.
Peak memory: on CPU, how far the process's peak RSS (``resource.getrusage``) rises during
the warm-up pruning step above the RSS before it, plus the process peak; on a GPU,
torch's CUDA peak for each kind of step.  (The plain step runs second and reuses memory
the allocator kept, so its RSS growth says nothing and is not printed.)  On a GPU it also
projects the paper's 3000-step IOI run from the median pruning step.

    python benchmarks/bench_gpt2_step.py [--batch 8 --seq 64 --steps 3 --device cpu]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from edgeprune.pruning.adapters.hf_loading import adapter_for  # noqa: E402
from edgeprune.pruning.host_memory import available, steps_keep_memory  # noqa: E402
from edgeprune.pruning.train import PruneConfig, PruneData, Pruner  # noqa: E402


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
    ap.add_argument("--steps", type=int, default=3, help="timed steps of each kind (after the warm-up steps)")
    ap.add_argument(
        "--warmup",
        type=int,
        default=2,
        help="untimed steps of each kind first, alternating: the allocator settles (a run is thousands of steps)",
    )
    ap.add_argument("--examples", type=int, default=200, help="training pool the batches are drawn from")
    ap.add_argument(
        "--scored",
        choices=("last", "all"),
        default="last",
        help="positions the loss scores: the last (a task's answer, as IOI) or every one",
    )
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
    pool = torch.randint(0, cfg.vocab_size, (args.examples, args.seq), generator=gen)
    pool_corrupted = torch.randint(0, cfg.vocab_size, (args.examples, args.seq), generator=gen)

    adapter = adapter_for(model, gradient_checkpointing=args.gradient_checkpointing, freeze=True)
    g = adapter.graph
    config = PruneConfig(steps=3000, batch_size=args.batch, ablation="interchange", seed=0)
    scored = torch.zeros(args.examples, args.seq, dtype=torch.bool)
    scored[:, -1 if args.scored == "last" else slice(None)] = True
    pool_data = PruneData(ids=pool.to(args.device), corrupted=pool_corrupted.to(args.device), loss_mask=scored)
    pruner = Pruner(adapter, pool_data, config)
    ids = pool[: args.batch].to(args.device)
    answer = scored[: args.batch].to(args.device)
    with torch.no_grad():
        target = adapter.full_output(ids).log_softmax(-1)[answer]

    def pruning_step() -> None:
        model.requires_grad_(False)
        pruner.train_step()

    def plain_step() -> None:
        model.requires_grad_(True)  # the plain baseline trains the weights (a normal fine-tuning step)
        with steps_keep_memory():  # the allocator setting the pruning step runs under, so both see the same
            logits = model(ids).logits.float()[answer]  # the transformers forward reads out at every position
            loss = torch.nn.functional.kl_div(logits.log_softmax(-1), target, log_target=True, reduction="sum")
            model.zero_grad(set_to_none=True)
            (loss / len(ids)).backward()

    cuda = args.device.startswith("cuda")

    def once(fn) -> tuple[float, float | None]:
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        _sync(args.device)
        t0 = time.perf_counter()
        fn()
        _sync(args.device)
        return time.perf_counter() - t0, (torch.cuda.max_memory_allocated() / 2**20 if cuda else None)

    before = _rss_mib()
    _, masked_gpu = once(pruning_step)  # warm-up
    masked_growth = _rss_mib() - before
    rss_after_masked = _rss_mib()
    _, plain_gpu = once(plain_step)  # warm-up
    for _ in range(args.warmup - 1):
        once(pruning_step)
        once(plain_step)
    times: dict[str, list[float]] = {"pruning": [], "plain": []}
    for _ in range(args.steps):  # alternate, so the machine's load hits both alike
        times["pruning"].append(once(pruning_step)[0])
        times["plain"].append(once(plain_step)[0])
    masked_s, plain_s = statistics.median(times["pruning"]), statistics.median(times["plain"])

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
        "steps_keep_freed_memory": available(),
        "masked_step_s": round(masked_s, 4),
        "plain_step_s": round(plain_s, 4),
        "ratio": round(masked_s / plain_s, 2),
        "warmup_steps": args.warmup,
        "examples": args.examples,
        "scored": args.scored,
        "readout_at_scored_positions": pruner.positions is not None,
        "targets_cached": pruner.full_out is not None,
        "pruning_steps_s": [round(t, 3) for t in times["pruning"]],
        "plain_steps_s": [round(t, 3) for t in times["plain"]],
        "masked_step_peak_growth_mib": round(masked_growth, 1),
        "peak_rss_mib_after_masked": round(rss_after_masked, 1),
        "peak_rss_mib_end": round(_rss_mib(), 1),
    }
    if cuda:
        result.update(
            peak_gpu_mib_masked=round(masked_gpu or 0.0, 1),
            peak_gpu_mib_plain=round(plain_gpu or 0.0, 1),
            projected_3000_steps_min=round(3000 * masked_s / 60, 1),
        )
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()

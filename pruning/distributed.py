"""Pruning over several processes with PyTorch FSDP (``torchrun``), for models that do not fit one device.

What is sharded and what is not:

* the frozen model is sharded with ``torch.distributed.fsdp.fully_shard`` (FSDP2).  The adapters
  read a block's weights directly rather than calling the block's ``forward``, so each block
  computation is wrapped in a small module (``BlockUnit``) whose children are the HF submodules
  that block reads: one FSDP unit per attention block and per MLP, whose forward all-gathers
  their weights and whose backward gathers them again.  Embeddings, final norm and unembedding
  (tied in GPT-2) form the root unit, whose forward runs one whole engine call;
* mask log-alphas and Lagrange multipliers are small and replicated: every rank holds all of
  them, its gradients are averaged over ranks (``all_reduce``) before clipping, so every rank
  takes the same optimizer step;
* each rank runs its slice of the global batch.  Batch order and mask noise come from the
  same seeded generator on every rank, drawn for the whole global batch, so N processes see
  the masks one process would (the test compares 2 processes with 1).

Launch: ``torchrun --nproc_per_node N -m edgeprune.cli prune ...`` (WORLD_SIZE > 1 selects this
path), or ``edgeprune prune --distributed`` for a single-process group.
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeprune.core.errors import EdgePruneError
from edgeprune.pruning.adapter import ModelAdapter, at_positions
from edgeprune.pruning.adapters.hf_loading import HFAdapterBase
from edgeprune.pruning.disentangled import DisentangledForward
from edgeprune.pruning.train import PruneConfig, Pruner


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def init_distributed(backend: str | None = None, device: str = "cpu") -> tuple[int, int]:
    """(rank, world size) of the process group, created from torchrun's environment when needed.

    Without torchrun's variables a single-process group on a free localhost port is made, so
    ``--distributed`` also runs (and tests the FSDP path) in one process.
    """
    import torch.distributed as dist

    if not dist.is_available():
        raise EdgePruneError("this PyTorch build has no torch.distributed; install one with distributed support")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
        os.environ.setdefault("RANK", "0")
        os.environ.setdefault("WORLD_SIZE", "1")
    if str(device).startswith("cuda"):
        from edgeprune.pruning.adapters.hf_loading import resolve_device

        torch.cuda.set_device(resolve_device(device))  # no CUDA: a message naming --device, not a torch error
    backend = backend or ("nccl" if str(device).startswith("cuda") else "gloo")
    dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size()


def rank_device(device: str) -> str:
    """Under torchrun each process takes ``cuda:LOCAL_RANK`` when asked for plain ``cuda``."""
    if device == "cuda":
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


class BlockUnit(nn.Module):
    """One FSDP unit: runs ``fn`` (an adapter block) with ``modules`` (the HF submodules it reads) as children."""

    def __init__(self, fn: Callable[..., torch.Tensor], modules: dict[str, nn.Module]):
        super().__init__()
        self.fn = fn
        for name, m in modules.items():
            self.add_module(name, m)

    def forward(self, *args: Any) -> torch.Tensor:
        out = self.fn(*args)
        # FSDP hooks the backward of the returned tensor; a view could lose that hook to an in-place op
        return out.clone() if out._base is not None else out


class RootUnit(nn.Module):
    """The root FSDP unit: owns the end modules (embeddings, final norm, unembedding) and the block units;
    its forward runs one engine call, so the root weights are gathered for exactly that call."""

    def __init__(self, ends: dict[str, nn.Module], attention: list[BlockUnit], mlp: list[BlockUnit]):
        super().__init__()
        self.ends = nn.ModuleDict(ends)
        self.attention = nn.ModuleList(attention)
        self.mlp = nn.ModuleList(mlp)

    def forward(self, fn: Callable[[], torch.Tensor]) -> torch.Tensor:
        return fn()


def _block_modules(adapter: HFAdapterBase, layer: int) -> tuple[dict[str, nn.Module], dict[str, nn.Module]]:
    """(attention submodules, MLP submodules) that the adapter's layer-``layer`` blocks read."""
    from edgeprune.pruning.adapters.gpt2 import GPT2Adapter
    from edgeprune.pruning.adapters.llama import LlamaAdapter

    if isinstance(adapter, GPT2Adapter):
        b = adapter.tf.h[layer]
        return {"ln_1": b.ln_1, "attn": b.attn}, {"ln_2": b.ln_2, "mlp": b.mlp}
    if isinstance(adapter, LlamaAdapter):
        b = adapter.inner.layers[layer]
        return (
            {"input_layernorm": b.input_layernorm, "self_attn": b.self_attn},
            {"post_attention_layernorm": b.post_attention_layernorm, "mlp": b.mlp},
        )
    raise EdgePruneError(f"no FSDP layout for {type(adapter).__name__}; distributed pruning supports GPT-2 and Llama")


def _end_modules(adapter: HFAdapterBase) -> dict[str, nn.Module]:
    from edgeprune.pruning.adapters.gpt2 import GPT2Adapter

    if isinstance(adapter, GPT2Adapter):
        return {"wte": adapter.tf.wte, "wpe": adapter.tf.wpe, "ln_f": adapter.tf.ln_f, "lm_head": adapter.model.lm_head}
    inner = adapter.inner
    return {
        "embed_tokens": inner.embed_tokens,
        "norm": inner.norm,
        "lm_head": adapter.model.lm_head,
        "rotary_emb": inner.rotary_emb,
    }


class FSDPAdapter(ModelAdapter):
    """An HF adapter whose blocks run as FSDP units; every engine call goes through the root unit.

    Use ``engine_forward()`` instead of ``DisentangledForward(adapter)``: the masked forward must
    run inside the root unit's forward so the embedding and unembedding weights are gathered.
    """

    shared_head_input = True  # the wrapped adapter is a transformers one
    readout_per_position = True

    def __init__(self, base: HFAdapterBase, mesh: Any = None, reshard_after_forward: bool = True):
        from torch.distributed.fsdp import fully_shard

        self.base = base
        self.graph = base.graph
        self.device = base.device
        self.output_kind = base.output_kind
        self._model_id = base.model_id()  # before sharding: it samples every weight
        attention, mlp = [], []
        for layer in range(base.n_layers):
            attn_mods, mlp_mods = _block_modules(base, layer)
            attention.append(BlockUnit(functools.partial(base.attention, layer), attn_mods))
            mlp.append(BlockUnit(functools.partial(base.mlp, layer), mlp_mods))
        kw = {"mesh": mesh} if mesh is not None else {}
        for unit in attention + mlp:
            fully_shard(unit, reshard_after_forward=reshard_after_forward, **kw)
        self.root = RootUnit(_end_modules(base), attention, mlp)
        fully_shard(self.root, **kw)
        self._inside = False

    def rooted(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` inside the root unit's forward (or directly when already inside)."""
        if self._inside:
            return fn()
        self._inside = True
        try:
            return self.root(fn)
        finally:
            self._inside = False

    def _need_root(self, what: str) -> None:
        if not self._inside:
            raise EdgePruneError(
                f"FSDPAdapter.{what} ran outside the root unit; use adapter.engine_forward() "
                "or adapter.rooted(...) so the sharded end weights are gathered"
            )

    # ----- ModelAdapter -------------------------------------------------------
    def embed(self, ids: torch.Tensor) -> list[torch.Tensor]:
        self._need_root("embed")
        return self.base.embed(ids)

    def attention(
        self, layer: int, xq: torch.Tensor, xk: torch.Tensor, xv: torch.Tensor, key_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.root.attention[layer](xq, xk, xv, key_mask)

    def mlp(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        return self.root.mlp[layer](x)

    def readout(self, x: torch.Tensor) -> torch.Tensor:
        self._need_root("readout")
        return self.base.readout(x)

    def loss_mask(self, ids: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        return self.base.loss_mask(ids, key_mask)

    def model_id(self) -> str:
        return self._model_id

    @torch.no_grad()
    def writer_outputs(self, ids: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.rooted(lambda: ModelAdapter.writer_outputs(self, ids, key_mask))

    @torch.no_grad()
    def full_output(
        self, ids: torch.Tensor, key_mask: torch.Tensor | None = None, positions: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.rooted(
            lambda: self.readout(at_positions(ModelAdapter.writer_outputs(self, ids, key_mask).sum(0), positions))
        )

    def engine_forward(self) -> RootedForward:
        return RootedForward(self)


class RootedForward:
    """``DisentangledForward`` of an ``FSDPAdapter``, each call run inside the root unit."""

    def __init__(self, adapter: FSDPAdapter):
        self.adapter = adapter
        self.inner = DisentangledForward(adapter)

    def __call__(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.adapter.rooted(lambda: self.inner(*args, **kwargs))

    def output(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.adapter.rooted(lambda: self.inner.output(*args, **kwargs))


def average_gradients(params: Sequence[torch.Tensor]) -> None:
    """Mean of every replicated parameter's gradient over the ranks, in one all-reduce."""
    import torch.distributed as dist

    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n


def batch_slicer(rank: int, world: int) -> Callable[[int], slice]:
    """This rank's rows of a global batch of ``n``; equal slices, so the mean of the ranks' gradients is the
    global batch's gradient."""

    def local(n: int) -> slice:
        if n % world:
            raise EdgePruneError(
                f"a global batch of {n} examples does not split evenly over {world} processes; choose --batch-size "
                f"(and a train split at least that large) divisible by {world}"
            )
        k = n // world
        return slice(rank * k, (rank + 1) * k)

    return local


def make_distributed(pruner: Pruner, rank: int, world: int) -> None:
    """Hook a pruner into the process group: its batch slice, gradient averaging, rooted forward."""
    pruner.batch_slice = batch_slicer(rank, world)
    pruner.grad_sync = average_gradients
    if isinstance(pruner.adapter, FSDPAdapter):
        pruner.forward = pruner.adapter.engine_forward()


def prune_distributed(
    model: str | Path,
    task: str | Path,
    config: PruneConfig,
    out_dir: str | Path | None = None,
    sizes: int | Sequence[int] | None = None,
    seed: int = 0,
    dtype: str = "float32",
    device: str = "cpu",
    backend: str | None = None,
    gradient_checkpointing: bool = False,
    resume: bool = False,
    progress: bool = True,
    eval_batch_size: int | None = None,
) -> Any:
    """``prune_language_model`` on every rank with an FSDP-sharded model; rank 0 writes the files.

    Returns the result on rank 0 and None on the other ranks (every rank holds the same masks).
    """
    import torch.distributed as dist

    from edgeprune.pruning.language_models import LoadedModel, load_model, prune_language_model

    device = rank_device(device)
    rank, world = init_distributed(backend, device)
    try:
        base = load_model(model, dtype, device, gradient_checkpointing)
        adapter = FSDPAdapter(base.adapter)
        loaded = LoadedModel(base.source, base.model, base.tokenizer, adapter)
        rd = Path(out_dir) if out_dir is not None else None
        # rank 0 writes (and on --resume loads inside run()); the others load the same checkpoint in the hook
        hook_resume = rd if (rank != 0 and resume) else None
        if rank != 0:
            rd = None

        def hook(pruner: Pruner) -> None:
            if hook_resume is not None:
                pruner.load_checkpoint(hook_resume)
            make_distributed(pruner, rank, world)

        result = prune_language_model(
            loaded,
            task,
            config,
            out_dir=rd,
            sizes=sizes,
            seed=seed,
            resume=resume and rank == 0,
            progress=progress and rank == 0,
            eval_batch_size=eval_batch_size,
            pruner_hook=hook,
        )
        dist.barrier()
        return result if rank == 0 else None
    finally:
        dist.destroy_process_group()

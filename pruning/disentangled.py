"""The disentangled residual stream: every reader mixes the writers through its own edge masks.

For a reader r, ``x_r = sum_w z_wr y_w + (1 - z_wr) y~_w`` with ``y~`` the ablated
output (0, the writer's output on the corrupted input, or its mean over a reference
set: ``writer_means``).  Rewritten as
``x_r = sum_w y~_w + sum_w z_wr (y_w - y~_w)``: the first sum is a prefix sum of
the ablated writers, computed once per batch; the second is ONE matrix product
per reader group (a layer's q/k/v readers together, its MLP, ``out``) between the
stacked writer deltas (n_writers_so_far, B*T*D) and that group's mask columns.
Node masks scale a writer's mask row, so the effective edge mask is ``z_wr * z_w``.
The deltas live in one preallocated buffer written in place (``_WriterBuffer``).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

from edgeprune.core.errors import EdgePruneError
from edgeprune.core.options import check_ablation, is_mean
from edgeprune.pruning.adapter import ModelAdapter, at_positions


@dataclass
class AblatedStates:
    """Writer outputs of the plain model on the corrupted input, and the prefix sums the forward reads."""

    states: torch.Tensor  # (W, B, T, D)
    prefix: dict[int, torch.Tensor]  # k -> sum of states[:k] (B, T, D), for k at each reader group's boundary


def prefix_points(adapter: ModelAdapter) -> list[int]:
    """Writer counts at which some reader group starts: before each layer's heads, before its MLP, all."""
    g = adapter.graph
    points = []
    for layer in range(g.n_layers):
        points += [g.n_writers_before_layer(layer), g.n_writers_before_mlp(layer)]
    return points + [len(g.writers)]


@torch.no_grad()
def writer_means(
    adapter: ModelAdapter,
    ids: torch.Tensor,
    key_mask: torch.Tensor | None = None,
    ablation: str = "mean",
    chunk: int = 256,
) -> torch.Tensor:
    """Every writer's mean output over the reference inputs ``ids``: (W, T, D) per position, (W, 1, D) for ``mean-all``.

    ``mean``: at position t, the mean over the references that have position t (``key_mask``
    true there), so with variable lengths a late position averages only the longer inputs; a
    position no reference has (padding everywhere, or past the longest reference) gets 0.  ``mean-all``: one mean over every (reference, position)
    that exists, BOS included.  Sums run in float64, so a writer whose output at a position is
    the same in every reference gets exactly that output back as its mean.
    """
    check_ablation(ablation)
    if not is_mean(ablation):
        raise EdgePruneError(f"writer means are for the mean ablations (mean, mean-all), not {ablation!r}")
    if len(ids) == 0:
        raise EdgePruneError("mean ablation needs at least one reference input")
    total: torch.Tensor | None = None
    count: torch.Tensor | None = None
    dtype = torch.float32
    for a in range(0, len(ids), chunk):
        part = ids[a : a + chunk]
        km = None if key_mask is None else key_mask[a : a + chunk]
        raw = adapter.writer_outputs(part, km)  # (W, B, T, D)
        dtype, states = raw.dtype, raw.to(torch.float64)
        have = (
            torch.ones(states.shape[1:3], dtype=torch.float64, device=states.device)
            if km is None
            else km.to(device=states.device, dtype=torch.float64)
        )
        s = torch.einsum("wbtd,bt->wtd", states, have)
        c = have.sum(0)
        total = s if total is None else total + s
        count = c if count is None else count + c
    assert total is not None and count is not None
    if ablation == "mean-all":
        return (total.sum(1, keepdim=True) / count.sum()).to(dtype)
    return (total / count.clamp(min=1)[None, :, None]).to(dtype)


def data_means(adapter: ModelAdapter, data: Any, ablation: str, chunk: int = 256) -> torch.Tensor | None:
    """``writer_means`` over ``data``'s reference set (``PruneData.reference``, else its own inputs); None unless
    ``ablation`` is a mean ablation."""
    if not is_mean(ablation):
        return None
    ref = getattr(data, "reference", None)
    if ref is not None:
        return writer_means(adapter, ref, getattr(data, "reference_key_mask", None), ablation, chunk)
    return writer_means(adapter, data.ids, data.key_mask, ablation, chunk)


@torch.no_grad()
def ablated_states(
    adapter: ModelAdapter,
    ablation: str,
    ids: torch.Tensor,
    corrupted_ids: torch.Tensor | None,
    key_mask: torch.Tensor | None = None,
    means: torch.Tensor | None = None,
) -> AblatedStates | None:
    """Ablated activations for one batch (None under zero ablation); computed without gradients.

    Interchange: the writers' outputs on ``corrupted_ids``.  Mean: ``means`` (from
    ``writer_means``/``data_means``) broadcast over the batch, without copying.
    """
    check_ablation(ablation)
    if ablation == "zero":
        return None
    if is_mean(ablation):
        return _mean_states(adapter, ablation, ids, means)
    if corrupted_ids is None:
        raise EdgePruneError("interchange ablation needs corrupted inputs; give a corruption for every clean input")
    if tuple(corrupted_ids.shape) != tuple(ids.shape):
        raise EdgePruneError(
            f"corrupted inputs have shape {tuple(corrupted_ids.shape)} but clean inputs {tuple(ids.shape)}: "
            "each corruption must have the same length as its clean input"
        )
    states = adapter.writer_outputs(corrupted_ids, key_mask)
    return AblatedStates(states, _prefix_sums(adapter, states))


def _prefix_sums(adapter: ModelAdapter, states: torch.Tensor) -> dict[int, torch.Tensor]:
    # only the 2L+1 prefix sums the forward reads, not all W+1: a running sum, (2L+1) x (B, T, D) kept
    prefix: dict[int, torch.Tensor] = {}
    running = torch.zeros_like(states[0])
    done = 0
    for k in prefix_points(adapter):
        if k > done:
            running = running + states[done:k].sum(0)
            done = k
        prefix[k] = running
    return prefix


def _mean_states(adapter: ModelAdapter, ablation: str, ids: torch.Tensor, means: torch.Tensor | None) -> AblatedStates:
    W = len(adapter.graph.writers)
    if means is None:
        raise EdgePruneError(
            f"{ablation} ablation needs the writers' mean outputs over a reference set; compute them with "
            "pruning.disentangled.writer_means (or data_means) and pass means="
        )
    B, T = ids.shape
    if means.dim() != 3 or means.shape[0] != W:
        raise EdgePruneError(f"means have shape {tuple(means.shape)}; expected (writers={W}, positions, width)")
    if means.shape[1] == 1:
        per_pos = means.expand(W, T, means.shape[2])
    elif means.shape[1] >= T:
        per_pos = means[:, :T]
    else:  # positions past every reference: no reference has them, so their mean is 0 (as in writer_means)
        per_pos = torch.cat([means, means.new_zeros(W, T - means.shape[1], means.shape[2])], 1)
    D = per_pos.shape[-1]
    prefix = {k: v.expand(B, T, D) for k, v in _prefix_sums(adapter, per_pos[:, None]).items()}
    return AblatedStates(per_pos.unsqueeze(1).expand(W, B, T, D), prefix)


def effective_edge_mask(edge_mask: torch.Tensor, node_mask: torch.Tensor | None) -> torch.Tensor:
    """``z_wr z_w``: the edge masks (W, R) or (B, W, R) with each writer's row scaled by its node mask (W,) or
    (B, W); the edge masks themselves for None.  Why on the masks: scaling a (W, R) table costs nothing,
    scaling every writer's output is a pass over the residual stream each way."""
    if node_mask is None:
        return edge_mask
    return edge_mask * (node_mask[:, None] if node_mask.dim() == 1 else node_mask[:, :, None])


class _BufferPool:
    """Reuses a forward's writer buffer and its gradient in the next forward of the same shape.

    Why: the buffers are the largest tensors of a step (W x B x T x D: 250 MB at GPT-2-small,
    batch 8); allocated afresh each step they are fresh pages that every write first faults
    in, which cost more than the mixing products themselves.  A tensor is handed out again
    only once the buffer that held it is gone (its autograd graph freed), so two forwards in
    flight never share one.
    """

    def __init__(self) -> None:
        self._spare: dict[tuple, list[tuple[torch.Tensor, Any]]] = {}

    def take(self, like: torch.Tensor, shape: tuple[int, ...], owner: Any) -> torch.Tensor:
        key = (shape, like.dtype, like.device)
        slots = self._spare.setdefault(key, [])
        for i, (t, ref) in enumerate(slots):
            if ref() is None:
                slots[i] = (t, weakref.ref(owner))
                return t
        t = like.new_empty(shape)
        if len(slots) < POOL_SLOTS:
            slots.append((t, weakref.ref(owner)))
        return t


#: tensors kept per buffer shape: a training forward's data and gradient, plus one forward in flight
POOL_SLOTS = 3


class _WriterBuffer:
    """Every writer's delta ``y_w - y~_w`` in ONE preallocated tensor, written in place.

    Why: concatenating the growing writer stack at every reader group copies it again each
    time and keeps every copy alive for the backward pass (quadratic in the depth).  Here each
    block is written once; ``_Mix`` reads a range of writers (slices written later never
    change them), and gradients for the writers accumulate into one buffer that each
    ``_Write`` hands back to its block.  Autograd's order is kept by tokens: every mix takes the
    token of every block it reads, so a block's gradient is complete before its ``_Write``
    backward runs.  Node masks are not applied here: they scale the mask columns instead
    (``z_wr z_w``), a (W, R) product rather than a pass over every block.

    Layout: writer-major (W, B, T, D) for a mask shared by the batch: one GEMM per reader group,
    and its (r, B, T, D) output is head-major, the order the per-head projections read.  With
    per-example masks, batch-major (B, W, T, D): one batched GEMM per reader group.
    """

    def __init__(self, like: torch.Tensor, n_writers: int, per_example: bool, pool: _BufferPool | None = None):
        B, _, T, D = like.shape
        self.per_example = per_example
        self.shape = (B, T, D)
        self.full = (B, n_writers, T, D) if per_example else (n_writers, B, T, D)
        self.pool = pool
        self.data = pool.take(like, self.full, self) if pool is not None else like.new_empty(self.full)
        self.grad: torch.Tensor | None = None
        self.grad_from = n_writers  # rows grad_from.. of ``grad`` hold values; rows before it are unwritten
        self.written = 0  # rows ..written of ``data`` hold writers' deltas (blocks are written in row order)
        # the ordering tokens live with the caller, not here: the autograd nodes hold this buffer,
        # and a buffer holding their outputs would make a cycle through C++ nodes that is never
        # freed (about 1.5 MB leaked per training step on a compiled program)

    def rows(self, t: torch.Tensor, a: int, b: int) -> torch.Tensor:
        """Writers a..b of a buffer-shaped tensor, flattened to (n, B*T*D) or (B, n, T*D)."""
        B, T, D = self.shape
        if self.per_example:
            return t[:, a:b].reshape(B, b - a, T * D)
        return t[a:b].view(b - a, B * T * D)

    def grad_rows(self, a: int) -> torch.Tensor:
        """The gradient buffer with rows a.. holding values: rows never accumulated into are zeroed.

        Why lazily: the mixes run backward from the last reader group to the first and each writes
        (rather than adds to) the rows no later group reached, so most rows are never zero-filled."""
        if self.grad is None:
            self.grad = (
                self.pool.take(self.data, self.full, self) if self.pool is not None else torch.empty_like(self.data)
            )
        if a < self.grad_from:
            self.rows(self.grad, a, self.grad_from).zero_()
            self.grad_from = a
        return self.grad

    def accumulate(self, a: int, n: int, cols: torch.Tensor, g: torch.Tensor) -> None:
        """Adds ``cols @ g`` (the mix's gradient for writers a..n) into the gradient rows, writing
        instead of adding where no earlier backward reached."""
        grad = self.grad_rows(n)  # rows n.. now hold values, so rows a..n split at grad_from
        fresh_to = max(a, self.grad_from)  # rows a..fresh_to are unwritten: the product is written there
        for lo, hi, add in ((a, fresh_to, False), (fresh_to, n, True)):
            if hi <= lo:
                continue
            dst = self.rows(grad, lo, hi)
            part = cols[..., lo - a : hi - a, :]
            if self.per_example:
                if add:
                    dst.baddbmm_(part, g)
                else:
                    dst.copy_(torch.bmm(part, g))
            elif add:
                dst.addmm_(part, g)
            else:
                torch.mm(part, g, out=dst)
        self.grad_from = min(self.grad_from, a)

    def write(
        self,
        start: int,
        block: torch.Tensor,
        tokens: list[torch.Tensor],
        head_major: bool = False,
        minus: torch.Tensor | None = None,
    ) -> None:
        """``block`` (B, k, T, D), or (k, B, T, D) with ``head_major`` (shared masks only), becomes writers
        start..start+k; its ordering token joins ``tokens``.  ``minus`` (k, B, T, D), no gradient: the
        ablated outputs, subtracted on the way in (one pass, no separate delta tensor)."""
        tokens.append(_Write.apply(block, self, start, head_major, minus))

    def mix(
        self,
        n: int,
        cols: torch.Tensor,
        tokens: list[torch.Tensor],
        base: torch.Tensor | None = None,
        head_major: bool = False,
        first: int = 0,
    ) -> torch.Tensor:
        """(B, r, T, D) reader inputs from writers ``first``..``n``; ``cols`` (n - first, r) shared or
        (B, n - first, r).  ``head_major`` (shared masks only): (r, B, T, D) instead, the product's own
        layout, contiguous.  ``base`` (B, T, D): added to every reader's input inside the same product
        (the ablated prefix sum, or a partial sum of the earlier writers, which carries a gradient).
        With no writer in the range the input is ``base`` alone (zeros without one)."""
        if n <= first:
            B, T, D = self.shape
            r = cols.shape[-1]
            if base is None:
                return self.data.new_zeros((r, B, T, D) if head_major else (B, r, T, D))
            return base.unsqueeze(0).expand(r, B, T, D) if head_major else base.unsqueeze(1).expand(B, r, T, D)
        return _Mix.apply(cols, self, first, n, base, head_major, 0, *tokens)

    def mix_split(
        self, n: int, cols: torch.Tensor, tokens: list[torch.Tensor], base: torch.Tensor | None, split: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``mix`` head-major (shared masks, ``n`` > 0) as two tensors: readers ..split and split.. .

        Why two outputs of one product: autograd's gradient of a slice is a zero-filled tensor of
        the whole product, and two slices' gradients are added into it; separate outputs hand
        their gradients over as they are, and the backward joins them with one copy."""
        return _Mix.apply(cols, self, 0, n, base, True, split, *tokens)


class _Write(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx, block: torch.Tensor, buf: _WriterBuffer, start: int, head_major: bool, minus: torch.Tensor | None
    ) -> torch.Tensor:
        k = block.shape[0 if head_major else 1]
        if buf.per_example:
            dst, src = buf.data[:, start : start + k], block
            other = None if minus is None else minus.transpose(0, 1)
        else:
            dst, src, other = buf.data[start : start + k], (block if head_major else block.transpose(0, 1)), minus
        if other is None:
            dst.copy_(src)
        else:
            torch.sub(src, other, out=dst)
        buf.written = max(buf.written, start + k)
        ctx.buf, ctx.start, ctx.k, ctx.head_major = buf, start, k, head_major
        return block.new_zeros(())

    @staticmethod
    def backward(ctx, _token_grad: torch.Tensor):
        buf, a, b = ctx.buf, ctx.start, ctx.start + ctx.k
        if buf.grad is None or not ctx.needs_input_grad[0]:
            return None, None, None, None, None
        grad = buf.grad_rows(a)
        if buf.per_example:
            return grad[:, a:b], None, None, None, None
        return (grad[a:b] if ctx.head_major else grad[a:b].transpose(0, 1)), None, None, None, None


class _Mix(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx,
        cols: torch.Tensor,
        buf: _WriterBuffer,
        first: int,
        n: int,
        base: torch.Tensor | None,
        head_major: bool,
        split: int,
        *tokens: torch.Tensor,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        B, T, D = buf.shape
        delta = buf.rows(buf.data, first, n)
        ctx.save_for_backward(cols)
        ctx.buf, ctx.first, ctx.n, ctx.head_major, ctx.split = buf, first, n, head_major, split
        r = cols.shape[-1]
        if buf.per_example:
            if base is None:
                return torch.bmm(cols.transpose(1, 2), delta).view(B, r, T, D)
            start = base.reshape(B, 1, T * D).expand(B, r, T * D)
            return torch.baddbmm(start, cols.transpose(1, 2), delta).view(B, r, T, D)
        if base is None:
            out = (cols.t() @ delta).view(r, B, T, D)
        elif first == 0 and buf.written <= n < buf.full[0] and not ctx.needs_input_grad[4]:
            # row n is the next block's and not written yet: the base joins the product there as one more
            # writer with mask 1, instead of addmm copying it into every output row first (a pass over the
            # output).  The backward reads rows ..n only; a recompute under checkpointing finds row n
            # written and takes the branch below.
            buf.data[n].copy_(base)
            ones = cols.new_ones((1, r))
            out = (torch.cat([cols, ones]).t() @ buf.rows(buf.data, 0, n + 1)).view(r, B, T, D)
        else:
            start = base.reshape(1, B * T * D).expand(r, B * T * D)
            out = torch.addmm(start, cols.t(), delta).view(r, B, T, D)
        if split:
            return out[:split], out[split:]
        return out if head_major else out.transpose(0, 1)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor, grad_rest: torch.Tensor | None = None):
        (cols,) = ctx.saved_tensors
        buf, first, n = ctx.buf, ctx.first, ctx.n
        B, T, D = buf.shape
        if ctx.split:  # the two outputs' gradients, joined (one copy) for the products below
            joined = grad_out.new_empty((cols.shape[-1], B, T, D))
            joined[: ctx.split].copy_(grad_out)
            if grad_rest is None:
                joined[ctx.split :].zero_()
            else:
                joined[ctx.split :].copy_(grad_rest)
            grad_out = joined
        delta = buf.rows(buf.data, first, n)
        if buf.per_example:
            g = grad_out.reshape(B, -1, T * D)
            grad_cols = torch.bmm(delta, g.transpose(1, 2)) if ctx.needs_input_grad[0] else None
        else:
            g = (grad_out if ctx.head_major else grad_out.transpose(0, 1)).reshape(-1, B * T * D)  # (r, B*T*D)
            grad_cols = delta @ g.t() if ctx.needs_input_grad[0] else None
        if any(ctx.needs_input_grad[7:]):
            buf.accumulate(first, n, cols, g)
        grad_base = None
        if ctx.needs_input_grad[4]:
            grad_base = g.sum(1 if buf.per_example else 0).view(B, T, D)
        zero = grad_out.new_zeros(())
        return (grad_cols, None, None, None, grad_base, None, None, *([zero] * (len(ctx.needs_input_grad) - 7)))


@dataclass(frozen=True)
class _LayerPlan:
    """One layer's place in the graph (``n_in``, its readers ``q0..m``) and in the live-writer buffer."""

    n_in: int  # writers before the layer's heads (graph order)
    q0: int  # first reader of the layer (h0.q); its MLP reader is ``m``
    m: int
    live_in: int  # live writers before the layer's heads (buffer slots)
    heads: tuple[int, ...]  # the layer's live heads
    live_mlp: int  # live writers before its MLP
    mlp: bool  # whether its MLP is live


class DisentangledForward:
    """The fast masked forward of any adapter; ``__call__`` returns the mixed input of ``out`` (B, T, D).

    With ``live_writers`` (bool (W,)), only those writers are computed and mixed: a writer no
    allowed edge reads (HAP's edges outside its kept subgraph, fixed at 0) changes no reader's
    input, so its block is skipped (a layer's attention when none of its heads is live) and its
    row is left out of every mix.  Exact as long as the edge masks are 0 on every edge out of
    a dead writer; this is where HAP's smaller subgraph becomes cheaper steps.
    """

    def __init__(self, adapter: ModelAdapter, live_writers: torch.Tensor | None = None):
        self.adapter = adapter
        g = adapter.graph
        self.graph = g
        self.n_emb = len(g.embeddings)
        W, H = len(g.writers), g.n_heads
        live = torch.ones(W, dtype=torch.bool) if live_writers is None else live_writers.bool().cpu()
        if tuple(live.shape) != (W,):
            raise EdgePruneError(f"live_writers has shape {tuple(live.shape)}; give one flag per writer ({W})")
        self.sparse = not bool(live.all())
        self.live_idx = live.nonzero().squeeze(1)
        before = [0] + torch.cumsum(live.long(), 0).tolist()  # before[k]: live writers among the first k
        self.n_live = before[W]
        self.live_emb = [i for i in range(self.n_emb) if live[i]]
        self.layers = []
        for layer in range(g.n_layers):
            q0 = g.reader_index[f"a{layer}.h0.q"]
            n_attn_readers = g.n_heads + 2 * g.kv_heads
            m = g.reader_index[f"m{layer}"]
            assert m == q0 + n_attn_readers
            n_in = g.n_writers_before_layer(layer)
            heads = tuple(h for h in range(H) if live[n_in + h])
            self.layers.append(_LayerPlan(n_in, q0, m, before[n_in], heads, before[n_in + H], bool(live[n_in + H])))
        self.out_index = g.reader_index["out"]
        # out's mix folds into the product of the last layer with a live head (see ``__call__``)
        with_heads = [layer for layer, p in enumerate(self.layers) if p.heads]
        self.fold_out_layer = with_heads[-1] if with_heads else -1
        self.pool = _BufferPool()

    def __call__(
        self,
        ids: torch.Tensor,
        edge_mask: torch.Tensor,
        node_mask: torch.Tensor | None = None,
        ablated: AblatedStates | None = None,
        key_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``edge_mask`` is dense (W, R) (zeros outside allowed edges) or per example (B, W, R);
        ``node_mask`` (W,) or (B, W), or None for all ones.

        A layer's MLP, and ``out`` at the last layer with live heads, read most of their writers
        through the layer's attention product: their mask columns join it (the part over the
        writers before the layer), and their own mix adds only the layer's heads on top.  Why: a
        one-reader mix reads every earlier writer for one output, a pass over the buffer forward
        and two backward; inside the attention product it costs one more output row."""
        g, ad = self.graph, self.adapter
        H, KV = g.n_heads, g.kv_heads
        n_attn = H + 2 * KV
        states = ablated.states if ablated is not None else None

        emb = torch.stack(ad.embed(ids), 1)  # (B, n_emb, T, D)
        # the node gates scale their writers' rows of the mask (the effective edge mask z_wr z_w); masks
        # may live on another device than the model (e.g. on the CPU with the optimizer); .to keeps gradients
        cols = effective_edge_mask(edge_mask, node_mask).to(emb.device)
        if self.sparse:  # rows of live writers only, in writer order: buffer slot i holds live writer i
            cols = cols.index_select(-2, self.live_idx.to(emb.device))
        per_example = cols.dim() == 3
        buf = _WriterBuffer(emb, self.n_live, per_example=per_example, pool=self.pool)
        tokens: list[torch.Tensor] = []
        if self.live_emb:
            all_emb = len(self.live_emb) == self.n_emb
            own = None if states is None else (states[: self.n_emb] if all_emb else states[self.live_emb])
            buf.write(0, emb if all_emb else emb[:, self.live_emb], tokens, minus=own)
        out_part: torch.Tensor | None = None  # out's sum over the writers before ``fold_out_layer``
        for layer, p in enumerate(self.layers):
            mlp_part: torch.Tensor | None = None
            if p.heads:
                fold = [] if per_example else self._folded(layer, p, n_attn)
                c = _columns(cols, p.live_in, p.q0, p.m, fold)
                base = ablated.prefix[p.n_in] if ablated is not None else None
                partials: list[torch.Tensor] = []
                if per_example:
                    x = buf.mix(p.live_in, c, tokens, base)  # (B, H + 2 KV, T, D)
                    xq, xk, xv = torch.split(x, [H, KV, KV], dim=1)
                    heads = ad.attention(layer, xq, xk, xv, key_mask)  # (B, H, T, D)
                    if len(p.heads) < H:
                        heads = heads[:, list(p.heads)]
                else:  # head-major throughout: the product's layout, no transposed copies either way
                    run = partial(self._reader_heads, buf, layer, p.live_in, c, base, key_mask, len(fold))
                    if getattr(ad, "gradient_checkpointing", False) and torch.is_grad_enabled():
                        # the layer's reader inputs (H + 2 KV copies of the residual) are the largest saved
                        # tensors: recompute them with the attention in the backward pass instead of keeping them
                        heads, *partials = checkpoint(run, *tokens, use_reentrant=False)
                    else:
                        heads, *partials = run(*tokens)  # (H, B, T, D)
                    if len(p.heads) < H:
                        heads = heads[list(p.heads)]
                own = None
                if states is not None:
                    live = list(p.heads)
                    own = states[p.n_in : p.n_in + H] if len(live) == H else states[[p.n_in + h for h in live]]
                buf.write(p.live_in, heads, tokens, head_major=not per_example, minus=own)
                if partials and p.mlp:
                    mlp_part = partials.pop(0)
                if partials:
                    out_part = partials.pop()
            if p.mlp:
                col = cols[..., :, p.m : p.m + 1]
                if mlp_part is not None:  # the layer's heads on top of the partial sum over the writers before them
                    base = (
                        mlp_part
                        if ablated is None
                        else mlp_part + (ablated.prefix[p.n_in + H] - ablated.prefix[p.n_in])
                    )
                    xm = buf.mix(p.live_mlp, col[..., p.live_in : p.live_mlp, :], tokens, base, first=p.live_in)
                else:
                    base = ablated.prefix[p.n_in + H] if ablated is not None else None
                    xm = buf.mix(p.live_mlp, col[..., : p.live_mlp, :], tokens, base)
                y = ad.mlp(layer, xm.select(1, 0))
                own = None if states is None else states[p.n_in + H : p.n_in + H + 1]
                buf.write(p.live_mlp, y.unsqueeze(1), tokens, minus=own)
        col = cols[..., :, self.out_index : self.out_index + 1]
        if out_part is not None:
            first = self.layers[self.fold_out_layer].live_in
            L = self.layers[self.fold_out_layer].n_in
            base = out_part if ablated is None else out_part + (ablated.prefix[len(g.writers)] - ablated.prefix[L])
            return buf.mix(self.n_live, col[..., first:, :], tokens, base, first=first).select(1, 0)
        base = ablated.prefix[len(g.writers)] if ablated is not None else None
        return buf.mix(self.n_live, col, tokens, base).select(1, 0)

    def _reader_heads(
        self,
        buf: _WriterBuffer,
        layer: int,
        n: int,
        cols: torch.Tensor,
        base: torch.Tensor | None,
        key_mask: torch.Tensor | None,
        n_folded: int,
        *tokens: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        """A layer's head outputs (H, B, T, D) from its head-major reader inputs, mixed here, then the
        partial sums (B, T, D) of the ``n_folded`` readers folded into the product (its last columns).
        Under a checkpoint this runs again in the backward pass: the buffer's first ``n`` rows are the
        same then (later blocks write later rows)."""
        if not n_folded:
            x = buf.mix(n, cols, list(tokens), base, head_major=True)  # (H + 2 KV, B, T, D)
            return (self.adapter.attention_head_major(layer, x, key_mask),)
        x, folded = buf.mix_split(n, cols, list(tokens), base, cols.shape[-1] - n_folded)
        return (self.adapter.attention_head_major(layer, x, key_mask), *folded.unbind(0))

    def _folded(self, layer: int, p: _LayerPlan, n_attn: int) -> list[int]:
        """Readers whose mix over the writers before ``layer`` joins that layer's attention product: its
        MLP, and ``out`` at ``fold_out_layer``.  Only where the layer reads at least as many writers as
        its product has columns: joining the gradients costs a copy of those columns' rows, and below
        that the one-reader mixes read fewer."""
        fold = ([p.m] if p.mlp else []) + ([self.out_index] if layer == self.fold_out_layer else [])
        return fold if p.live_in >= n_attn + len(fold) else []

    def output(self, ids, edge_mask, node_mask=None, ablated=None, key_mask=None, positions=None) -> torch.Tensor:
        """The task output (logits or values) of the masked model; at ``positions`` (B, K) only when given."""
        return self.adapter.readout(at_positions(self(ids, edge_mask, node_mask, ablated, key_mask), positions))


def _columns(cols: torch.Tensor, n: int, q0: int, m: int, fold: list[int]) -> torch.Tensor:
    """Mask columns of a layer's attention readers (q0..m) and of the readers ``fold`` folded into
    its product, over the first ``n`` writers: a slice when they are contiguous (the MLP ``m`` and
    then ``out`` follow the last layer's readers), else gathered."""
    if fold == list(range(m, m + len(fold))):
        return cols[..., :n, q0 : m + len(fold)]
    return torch.cat([cols[..., :n, q0:m], cols[..., :n, fold]], -1)

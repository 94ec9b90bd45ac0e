"""The fast disentangled forward vs the plain model and the slow edge-by-edge reference."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeprune.core.errors import EdgePruneError
from edgeprune.pruning.adapters.compiled import CompiledAdapter
from edgeprune.pruning.disentangled import DisentangledForward, ablated_states
from edgeprune.pruning.hard_concrete import MaskParameters
from edgeprune.verify.slow_forward import masked_forward
from tests.pruning_helpers import random_model

TOL = dict(atol=1e-4, rtol=1e-4)

model_args = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 10_000),
        "n_layers": st.integers(1, 3),
        "n_heads": st.integers(1, 3),
        "layer_norm": st.booleans(),
    }
)


def _inputs(seed: int, batch: int = 3, length: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 3, (batch, length + 1), generator=g)
    ids[:, 0] = 3  # BOS
    corr = torch.randint(0, 3, (batch, length + 1), generator=g)
    corr[:, 0] = 3
    return ids, corr


@settings(max_examples=6, deadline=None)
@given(model_args)
def test_all_masks_one_reproduce_the_model(kw):
    model = random_model(**kw)
    ad = CompiledAdapter(model)
    ids, corr = _inputs(kw["seed"])
    ones = ad.graph.allowed_mask()
    for ablation in ("zero", "interchange"):
        got = DisentangledForward(ad)(ids, ones, None, ablated_states(ad, ablation, ids, corr))
        torch.testing.assert_close(got, model(ids), **TOL)


@settings(max_examples=6, deadline=None)
@given(model_args)
def test_all_masks_zero_reproduce_the_ablated_run(kw):
    model = random_model(**kw)
    ad = CompiledAdapter(model)
    ids, corr = _inputs(kw["seed"])
    zeros = torch.zeros_like(ad.graph.allowed_mask())
    f = DisentangledForward(ad)
    # interchange: every reader sees the corrupted run, so the output is the corrupted run's
    torch.testing.assert_close(f(ids, zeros, None, ablated_states(ad, "interchange", ids, corr)), model(corr), **TOL)
    # zero: out reads nothing
    assert torch.count_nonzero(f(ids, zeros, None, None)) == 0
    # node masks at 0 act like edge masks at 0
    ones = ad.graph.allowed_mask()
    torch.testing.assert_close(
        f(ids, ones, torch.zeros(len(ad.graph.writers)), ablated_states(ad, "interchange", ids, corr)),
        model(corr),
        **TOL,
    )


@settings(max_examples=10, deadline=None)
@given(model_args, st.integers(0, 10_000), st.sampled_from(["zero", "interchange"]), st.booleans())
def test_random_binary_masks_match_slow_forward(kw, mask_seed, ablation, padded):
    model = random_model(**kw)
    ad = CompiledAdapter(model)
    ids, corr = _inputs(kw["seed"])
    key_mask = None
    if padded:
        key_mask = torch.ones_like(ids, dtype=torch.bool)
        key_mask[0, 3:] = False
        ids[0, 3:] = 4
        corr[0, 3:] = 4
    masks = MaskParameters(ad.graph)
    g = torch.Generator().manual_seed(mask_seed)
    z = (torch.rand(ad.graph.n_edges, generator=g) > 0.5).float()
    edges = [e for e, keep in zip(ad.graph.edges, z.tolist()) if keep]
    f = DisentangledForward(ad)
    A = ablated_states(ad, ablation, ids, corr, key_mask)
    fast = f(ids, masks.dense(z), None, A, key_mask)
    slow = masked_forward(model, ids, edges, ablation, corr, key_mask)
    torch.testing.assert_close(fast, slow, **TOL)
    # per-example masks: each row uses its own mask
    zs = (torch.rand(ids.shape[0], ad.graph.n_edges, generator=g) > 0.5).float()
    per = f(ids, masks.dense(zs), None, A, key_mask)
    for b in range(ids.shape[0]):
        eb = [e for e, keep in zip(ad.graph.edges, zs[b].tolist()) if keep]
        ref = masked_forward(model, ids, eb, ablation, corr, key_mask)
        torch.testing.assert_close(per[b], ref[b], **TOL)


def test_node_mask_equals_edge_mask_product():
    model = random_model(3, n_layers=2, n_heads=2)
    ad = CompiledAdapter(model)
    ids, corr = _inputs(3)
    g = torch.Generator().manual_seed(1)
    masks = MaskParameters(ad.graph)
    ze = torch.rand(ad.graph.n_edges, generator=g)
    zn = torch.rand(len(ad.graph.writers), generator=g)
    f = DisentangledForward(ad)
    A = ablated_states(ad, "interchange", ids, corr)
    a = f(ids, masks.dense(ze), zn, A)
    b = f(ids, masks.dense(ze) * zn[:, None], None, A)
    torch.testing.assert_close(a, b, **TOL)


def test_gradients_reach_every_mask_that_matters():
    model = random_model(5)
    ad = CompiledAdapter(model)
    ids, _ = _inputs(5)
    masks = MaskParameters(ad.graph)
    z = torch.full((ad.graph.n_edges,), 0.7, requires_grad=True)
    DisentangledForward(ad).output(ids, masks.dense(z)).pow(2).sum().backward()
    assert z.grad is not None and torch.count_nonzero(z.grad) > ad.graph.n_edges // 2


def test_corruption_of_different_length_is_refused():
    model = random_model(0)
    ad = CompiledAdapter(model)
    ids, corr = _inputs(0)
    with pytest.raises(EdgePruneError, match="same length"):
        ablated_states(ad, "interchange", ids, corr[:, :-1])
    with pytest.raises(EdgePruneError, match="ablation"):
        ablated_states(ad, "resample", ids, corr)


def test_writer_buffers_are_freed_after_backward():
    """No reference cycle through autograd nodes: a training loop must not leak one buffer per step."""
    import gc

    from edgeprune.pruning.adapters.compiled import CompiledAdapter
    from edgeprune.pruning.disentangled import DisentangledForward, _WriterBuffer
    from tests.pruning_helpers import random_model

    adapter = CompiledAdapter(random_model(seed=1))
    fwd = DisentangledForward(adapter)
    ids = torch.tensor([[0, 1, 2, 1], [0, 2, 2, 1]])
    W, R = len(adapter.graph.writers), len(adapter.graph.readers)
    for per_example in (False, True):
        for _ in range(3):
            mask = torch.rand((2, W, R) if per_example else (W, R), requires_grad=True)
            fwd.output(ids, mask).sum().backward()
    gc.collect()
    assert not [o for o in gc.get_objects() if isinstance(o, _WriterBuffer)]


@settings(max_examples=12, deadline=None)
@given(
    model_args, st.integers(0, 10_000), st.sampled_from(["zero", "interchange"]), st.booleans(), st.floats(0.02, 0.6)
)
def test_live_writer_forward_equals_dense_forward_on_a_subset(kw, mask_seed, ablation, per_example, keep):
    """HAP's forward skips writers no kept edge reads; with masks 0 off the subset it is the dense forward,
    in value and in every gradient (edge masks and node masks)."""
    model = random_model(**kw)
    ad = CompiledAdapter(model)
    ids, corr = _inputs(kw["seed"])
    g = torch.Generator().manual_seed(mask_seed)
    edges = ad.graph.edges
    subset = [e for e in edges if torch.rand((), generator=g) < keep] or [edges[-1]]
    masks = MaskParameters(ad.graph, edge_subset=subset)
    live = torch.zeros(len(ad.graph.writers), dtype=torch.bool)
    live[masks.edge_writer] = True
    shape = (ids.shape[0], len(subset)) if per_example else (len(subset),)
    z = torch.rand(shape, generator=g).requires_grad_(True)
    zn = torch.rand(len(ad.graph.writers), generator=g).requires_grad_(True)
    A = ablated_states(ad, ablation, ids, corr)
    results = []
    for f in (DisentangledForward(ad), DisentangledForward(ad, live)):
        out = f.output(ids, masks.dense(z), zn, A)
        (gz, gn) = torch.autograd.grad(out.pow(2).sum(), (z, zn))
        results.append((out.detach(), gz, gn[live]))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, **TOL)
    assert DisentangledForward(ad, live).sparse == (not bool(live.all()))


def test_live_writers_must_name_every_writer():
    ad = CompiledAdapter(random_model(1))
    with pytest.raises(EdgePruneError, match="one flag per writer"):
        DisentangledForward(ad, torch.ones(len(ad.graph.writers) + 1, dtype=torch.bool))


def test_forwards_in_flight_never_share_a_pooled_buffer():
    """Two forwards before either backward get their own buffers (the pool hands a tensor out again only
    once its buffer is gone), so their mask gradients equal those of forwards run one at a time; a later
    forward of the same shape reuses a freed one."""
    ad = CompiledAdapter(random_model(seed=3, n_layers=2, n_heads=2, layer_norm=True))
    W, R = len(ad.graph.writers), len(ad.graph.readers)
    ids, corr = _inputs(3)
    ablated = ablated_states(ad, "interchange", ids, corr)
    torch.manual_seed(0)
    m1, m2 = (torch.rand(W, R, requires_grad=True) for _ in range(2))
    f = DisentangledForward(ad)
    (f(ids, m1, None, ablated).pow(2).sum() + 2 * f(ids, m2, None, ablated).pow(2).sum()).backward()
    together = m1.grad.clone(), m2.grad.clone()
    m1.grad = m2.grad = None
    for m, scale in ((m1, 1), (m2, 2)):
        (scale * DisentangledForward(ad)(ids, m, None, ablated).pow(2).sum()).backward()
    assert torch.allclose(together[0], m1.grad) and torch.allclose(together[1], m2.grad)
    seen = {t.data_ptr() for slots in f.pool._spare.values() for t, _ in slots}
    with torch.no_grad():
        f(ids, m1, None, ablated)
    again = {t.data_ptr() for slots in f.pool._spare.values() for t, _ in slots}
    assert again == seen  # reused, not reallocated

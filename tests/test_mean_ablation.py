"""Mean ablation (``mean``: per position, ``mean-all``: over every position) in the engine, the slow
references, attribution, ACDC, scoring, the ground truth and the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeprune.compiled.ground_truth import ground_truth, reference_inputs
from edgeprune.compiled.resolve import compile_registered
from edgeprune.core.errors import EdgePruneError
from edgeprune.core.options import ABLATIONS, MEAN_ABLATIONS, check_ablation
from edgeprune.pruning.adapters.compiled import CompiledAdapter
from edgeprune.pruning.disentangled import DisentangledForward, ablated_states, data_means, writer_means
from edgeprune.pruning.hard_concrete import MaskParameters
from edgeprune.pruning.train import PruneConfig, PruneData, Pruner
from edgeprune.verify.checker import Oracle
from edgeprune.verify.compare import compare
from edgeprune.verify.slow_forward import masked_forward, mean_outputs, writer_outputs
from tests.pruning_helpers import random_model

TOL = dict(atol=1e-4, rtol=1e-4)
PAD, BOS = 4, 3

model_args = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 10_000),
        "n_layers": st.integers(1, 3),
        "n_heads": st.integers(1, 3),
        "layer_norm": st.booleans(),
    }
)


def _ragged(seed: int, batch: int = 5, width: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """BOS-first inputs of lengths 1..width-1 (at least one full), right-padded, and their key mask."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 3, (batch, width), generator=g)
    ids[:, 0] = BOS
    lengths = torch.randint(2, width + 1, (batch,), generator=g)
    lengths[0] = width
    key_mask = torch.arange(width)[None, :] < lengths[:, None]
    ids[~key_mask] = PAD
    return ids, key_mask


def test_options_name_the_mean_ablations():
    assert set(MEAN_ABLATIONS) <= set(ABLATIONS)
    assert check_ablation("mean") == "mean" and check_ablation("mean-all") == "mean-all"
    with pytest.raises(EdgePruneError, match="mean-all"):
        check_ablation("token-mean")


def test_writer_means_average_each_position_over_the_inputs_that_have_it():
    model = random_model(7, n_layers=2, n_heads=2)
    ad = CompiledAdapter(model)
    ids, km = _ragged(7, batch=6)
    per_pos = writer_means(ad, ids, km, "mean")
    every = writer_means(ad, ids, km, "mean-all")
    W, T, D = per_pos.shape
    assert every.shape == (W, 1, D)
    # by hand: each input unpadded on its own, position by position
    rows = []
    for b in range(len(ids)):
        n = int(km[b].sum())
        outs = writer_outputs(model, ids[b : b + 1, :n])
        rows.append(torch.stack([outs[w][0] for w in ad.graph.writers]))  # (W, n, D)
    for t in range(T):
        have = [r[:, t] for r in rows if r.shape[1] > t]
        torch.testing.assert_close(per_pos[:, t], torch.stack(have).mean(0), **TOL)
    flat = torch.cat([r for r in rows], 1)  # (W, all valid positions, D)
    torch.testing.assert_close(every[:, 0], flat.mean(1), **TOL)
    # the slow reference computes the same means
    slow = mean_outputs(model, [(ids, km)], "mean")
    torch.testing.assert_close(torch.stack([slow[w] for w in ad.graph.writers]), per_pos, **TOL)


def test_a_writer_constant_at_a_position_gets_exactly_its_value_as_mean():
    """Sums in float64: the position embedding is the same in every input, so its mean is bitwise itself."""
    model = compile_registered("reverse")
    ad = CompiledAdapter(model)
    ids, km = model.encode_batch(reference_inputs(model))
    means = writer_means(ad, ids, km, "mean")
    pos = ad.graph.writer_index["pos"]
    _, pos_out = model.embed(ids[:1])
    assert torch.equal(means[pos], pos_out[0])


@settings(max_examples=10, deadline=None)
@given(model_args, st.integers(0, 10_000), st.sampled_from(MEAN_ABLATIONS))
def test_random_binary_masks_match_slow_forward_under_mean(kw, mask_seed, ablation):
    model = random_model(**kw)
    ad = CompiledAdapter(model)
    ids, km = _ragged(kw["seed"])
    ref, ref_km = _ragged(kw["seed"] + 1, batch=7)
    g = torch.Generator().manual_seed(mask_seed)
    z = (torch.rand(ad.graph.n_edges, generator=g) > 0.5).float()
    edges = [e for e, keep in zip(ad.graph.edges, z.tolist()) if keep]
    A = ablated_states(ad, ablation, ids, None, km, writer_means(ad, ref, ref_km, ablation))
    fast = DisentangledForward(ad)(ids, MaskParameters(ad.graph).dense(z), None, A, km)
    slow = masked_forward(model, ids, edges, ablation, None, km, means=mean_outputs(model, [(ref, ref_km)], ablation))
    torch.testing.assert_close(fast, slow, **TOL)


@settings(max_examples=6, deadline=None)
@given(model_args, st.sampled_from(MEAN_ABLATIONS))
def test_masks_all_one_are_the_model_and_all_zero_the_mean_ablated_run(kw, ablation):
    model = random_model(**kw)
    ad = CompiledAdapter(model)
    ids, km = _ragged(kw["seed"])
    means = writer_means(ad, ids, km, ablation)
    A = ablated_states(ad, ablation, ids, None, km, means)
    f = DisentangledForward(ad)
    ones = ad.graph.allowed_mask()
    torch.testing.assert_close(f(ids, ones, None, A, km)[km], model(ids, km)[km], **TOL)
    # every edge removed: out reads every writer's mean; the slow loop agrees
    empty = f(ids, torch.zeros_like(ones), None, A, km)
    torch.testing.assert_close(empty, means.sum(0).expand_as(empty), **TOL)
    slow = masked_forward(model, ids, [], ablation, None, km, means=mean_outputs(model, [(ids, km)], ablation))
    torch.testing.assert_close(empty, slow, **TOL)


def test_mean_ablation_without_means_is_refused_clearly():
    model = random_model(0)
    ad = CompiledAdapter(model)
    ids, km = _ragged(0)
    with pytest.raises(EdgePruneError, match="reference set"):
        ablated_states(ad, "mean", ids, None, km)
    with pytest.raises(ValueError, match="means="):
        masked_forward(model, ids, [], "mean", None, km)


def test_inputs_longer_than_every_reference_get_zero_means_past_them():
    ad = CompiledAdapter(random_model(2))
    ids, km = _ragged(2, width=5)
    short = writer_means(ad, ids[:, :3], km[:, :3], "mean")
    A = ablated_states(ad, "mean", ids, None, km, short)
    assert A is not None and A.states.shape[2] == 5
    assert torch.count_nonzero(A.states[:, :, 3:]) == 0


def test_pruner_averages_over_the_given_reference_set():
    model = compile_registered("xproportion")
    ad = CompiledAdapter(model)
    inputs = reference_inputs(model)
    ids, km = model.encode_batch(inputs[-64:])  # longest inputs only: other means than over every input
    ref, ref_km = model.encode_batch(inputs)
    own = PruneData(ids=ids, key_mask=km)
    given_ref = PruneData(ids=ids, key_mask=km, reference=ref, reference_key_mask=ref_km)
    assert own.fingerprint() != given_ref.fingerprint()
    cfg = PruneConfig(steps=3, ablation="mean", batch_size=16)
    p = Pruner(ad, given_ref, cfg)
    assert p.means is not None
    torch.testing.assert_close(p.means, writer_means(ad, ref, ref_km, "mean"))
    assert not torch.allclose(data_means(ad, own, "mean"), p.means)
    p.run(progress=False)
    assert data_means(ad, own, "zero") is None


def test_eap_scores_edges_of_position_only_writers_zero_under_per_position_mean():
    """pos writes the same at a position in every input: its output equals its mean, nothing to attribute."""
    from edgeprune.pruning.attribution import edge_scores

    model = compile_registered("reverse")
    ad = CompiledAdapter(model)
    ids, km = model.encode_batch(reference_inputs(model))
    data = PruneData(ids=ids, key_mask=km)
    g = ad.graph
    from_pos = torch.tensor([e[0] == "pos" for e in g.edges])
    per_pos = edge_scores(ad, data, "eap", "mean")
    assert torch.count_nonzero(per_pos.scores[from_pos]) == 0
    assert torch.count_nonzero(per_pos.scores[~from_pos]) > 0
    every = edge_scores(ad, data, "eap-ig", "mean-all", steps=2)
    assert torch.count_nonzero(every.scores[from_pos]) > 0


@pytest.mark.parametrize("name", ["reverse", "xproportion"])
def test_ground_truth_is_faithful_and_acdc_finds_it_under_mean(name):
    from edgeprune.pruning.acdc import acdc
    from edgeprune.pruning.scoring import CircuitScorer

    model = compile_registered(name)
    ad = CompiledAdapter(model)
    ids, km = model.encode_batch(reference_inputs(model))
    data = PruneData(ids=ids, key_mask=km)
    truth = ground_truth(model, "mean")
    scorer = CircuitScorer(ad, data, "mean")
    from edgeprune.pruning.attribution import circuit_mask

    assert scorer(circuit_mask(ad.graph, truth.edges)) < 1e-6 * scorer.empty()
    res = acdc(ad, data, "mean", threshold=1e-4, relative=True, evaluator=scorer)
    assert compare(res.circuit, truth).exact, compare(res.circuit, truth).summary()


def test_ground_truth_under_mean_keeps_the_length_path_only_when_lengths_vary():
    """Per-position means of references of one length equal every length-only value: then the rule is
    interchange's; with every length, reverse's length computation (a0.h0 -> m0 -> m1 -> m2) is needed."""
    model = compile_registered("reverse")
    one_length = [s for s in reference_inputs(model) if len(s) == model.metadata.max_seq_len]
    fixed = ground_truth(model, "mean", reference=one_length)
    assert set(fixed.edges) == set(ground_truth(model, "interchange").edges)
    varied = ground_truth(model, "mean")
    assert {("a0.h0", "m0"), ("m0", "m1"), ("m1", "m2"), ("m2", "a3.h0.q")} <= set(varied.edges)
    # the head reads nothing that varies at a position: a source of the length, kept by the dangling rule
    assert not [e for e in varied.edges if e[1].startswith("a0.h0.")]
    oracle = Oracle(model, "mean")
    assert oracle.sufficient(varied.edges)
    assert not oracle.sufficient(set(varied.edges) - {("a0.h0", "m0")})
    # compare() keeps the length path under mean: a circuit without it is not exact
    from edgeprune.core.circuit import Circuit

    cut = Circuit(sorted(set(varied.edges) - {("a0.h0", "m0")}), model=varied.model)
    assert not compare(cut, varied).exact
    assert compare(Circuit(varied.edges, model=varied.model), varied).exact


def test_recover_cli_under_mean(capsys):
    from edgeprune.cli import main

    assert main(["recover", "xproportion", "--ablation", "mean", "--json", "--no-progress"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["exact"] is True and doc["verdict"] == "exact"


def test_gpt2_adapter_under_mean_matches_the_slow_adapter_forward():
    pytest.importorskip("transformers")
    from edgeprune.pruning.adapters.gpt2 import GPT2Adapter
    from edgeprune.verify.slow_adapter_forward import masked_forward_adapter
    from tests.hf_helpers import tiny_gpt2

    adapter = GPT2Adapter(tiny_gpt2(vocab_size=20, n_positions=16).eval())
    g = adapter.graph
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 20, (3, 6), generator=gen)
    key_mask = torch.ones_like(ids, dtype=torch.bool)
    key_mask[1, 4:] = False
    ref = torch.randint(0, 20, (5, 6), generator=gen)
    ref_km = torch.ones_like(ref, dtype=torch.bool)
    ref_km[0, 3:] = False
    allowed = g.allowed_mask()
    for ablation in MEAN_ABLATIONS:
        A = ablated_states(adapter, ablation, ids, None, key_mask, writer_means(adapter, ref, ref_km, ablation))
        mask = allowed * (torch.rand(allowed.shape, generator=gen) < 0.6)
        kept = [(g.writers[w], g.readers[r]) for w, r in mask.nonzero().tolist()]
        with torch.no_grad():
            got = DisentangledForward(adapter).output(ids, mask, None, A, key_mask)
            empty = DisentangledForward(adapter).output(ids, torch.zeros_like(allowed), None, A, key_mask)
        want = masked_forward_adapter(adapter, ids, kept, ablation, None, key_mask, ref, ref_km)
        assert (got - want)[key_mask].abs().max() < 1e-4
        # every edge removed: the fully mean-ablated run, in the slow loop too
        want_empty = masked_forward_adapter(adapter, ids, [], ablation, None, key_mask, ref, ref_km)
        assert (empty - want_empty)[key_mask].abs().max() < 1e-4

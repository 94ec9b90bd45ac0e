"""The pruning loop: checkpoints, exact resume, metrics log, and clear errors on bad input."""

from __future__ import annotations

import json

import pytest
import torch

from edgeprune.core.errors import EdgePruneError
from edgeprune.pruning.adapters.compiled import CompiledAdapter
from edgeprune.pruning.data import build_data, shuffle_corruption
from edgeprune.pruning.objective import faithfulness_loss, lagrangian, lr_factor, target_at
from edgeprune.pruning.threshold import binarize, bisect_threshold
from edgeprune.pruning.train import CHECKPOINT_STATE, CHECKPOINT_TENSORS, METRICS, PruneConfig, PruneData, Pruner
from tests.pruning_helpers import random_model

INPUTS = [["a"], ["b", "c"], ["a", "b", "c"], ["c", "c", "a", "b"], ["b", "a"], ["c", "a", "b", "b"]]


def _setup(seed: int = 0, **cfg):
    model = random_model(seed)
    data = build_data(model, INPUTS, shuffle_corruption(INPUTS), seed=0)
    config = PruneConfig(steps=30, batch_size=4, seed=seed, checkpoint_every=10, log_every=5, **cfg)
    return model, data, config


def test_interrupted_run_resumes_to_the_same_circuit(tmp_path):
    model, data, config = _setup(ablation="interchange", per_example_masks=True)
    ad = CompiledAdapter(model)
    full = Pruner(ad, data, config)
    ref = full.run(progress=False)

    part = Pruner(ad, data, config)
    part.run(tmp_path, progress=False, stop_after=17)  # stops between checkpoints; the end-of-run save is at 17
    assert json.loads((tmp_path / CHECKPOINT_STATE).read_text())["step"] == 17
    resumed = Pruner(ad, data, config).run(tmp_path, resume=True, progress=False)
    assert resumed.steps == 30
    assert resumed.circuit == ref.circuit
    torch.testing.assert_close(resumed.masks.edge_log_alpha, ref.masks.edge_log_alpha, rtol=0, atol=0)
    lines = [json.loads(x) for x in (tmp_path / METRICS).read_text().splitlines()]
    assert [x["step"] for x in lines] == sorted({x["step"] for x in lines})
    assert lines[-1]["step"] == 30
    assert (tmp_path / "circuit.json").is_file() and (tmp_path / CHECKPOINT_TENSORS).is_file()


def test_checkpoint_from_another_model_is_refused(tmp_path):
    model, data, config = _setup()
    Pruner(CompiledAdapter(model), data, config).run(tmp_path, progress=False, stop_after=5)
    other = random_model(1)
    with pytest.raises(EdgePruneError, match="was made for model"):
        Pruner(CompiledAdapter(other), data, config).run(tmp_path, resume=True, progress=False)
    with pytest.raises(EdgePruneError, match="other settings"):
        Pruner(CompiledAdapter(model), data, PruneConfig(**{**config.to_dict(), "lr": 0.1})).run(
            tmp_path, resume=True, progress=False
        )


def test_resume_without_checkpoint_is_refused(tmp_path):
    model, data, config = _setup()
    with pytest.raises(EdgePruneError, match="no checkpoint"):
        Pruner(CompiledAdapter(model), data, config).run(tmp_path / "empty", resume=True, progress=False)


def test_nan_loss_raises_a_clear_error():
    model, data, config = _setup()
    with torch.no_grad():
        model.W_2[0, 0, 0] = float("nan")
    with pytest.raises(EdgePruneError, match="became nan"):
        Pruner(CompiledAdapter(model), data, PruneConfig(**{**config.to_dict(), "normalize_loss": False})).run(
            progress=False
        )


def test_corruption_of_different_length_is_refused():
    model = random_model(0)
    with pytest.raises(EdgePruneError, match="same-length corruptions"):
        build_data(model, INPUTS, lambda rng, clean: clean + ["a"])
    ids, _ = model.encode_batch(INPUTS)
    with pytest.raises(EdgePruneError, match="same"):
        PruneData(ids=ids, corrupted=ids[:, :-1])


def test_interchange_needs_corruptions_and_known_options():
    model = random_model(0)
    data = build_data(model, INPUTS)
    with pytest.raises(EdgePruneError, match="corrupted inputs"):
        Pruner(CompiledAdapter(model), data, PruneConfig(ablation="interchange"))
    with pytest.raises(EdgePruneError, match="ablation"):
        PruneConfig(ablation="resample")
    with pytest.raises(EdgePruneError, match="loss"):
        PruneConfig(loss="l1")


def test_schedules_and_lagrangian():
    assert target_at(0, 1.02, 100) == 0 and target_at(50, 1.02, 100) == pytest.approx(0.51)
    assert target_at(500, 1.02, 100) == 1.02
    assert lr_factor(0, 100, 10) == pytest.approx(0.1) and lr_factor(10, 100, 10) == pytest.approx(1.0)
    assert lr_factor(100, 100, 10) == 0.0
    s = torch.tensor(0.5)
    assert float(lagrangian(0.7, s, torch.tensor(2.0), torch.tensor(3.0))) == pytest.approx(2 * 0.2 + 3 * 0.04)


def test_kl_is_zero_for_identical_outputs_and_positive_otherwise():
    full = torch.randn(2, 4, 3)
    mask = torch.ones(2, 4, dtype=torch.bool)
    assert float(faithfulness_loss("kl", full, full, mask)) == pytest.approx(0.0, abs=1e-6)
    assert float(faithfulness_loss("kl", full, torch.randn(2, 4, 3), mask)) > 0
    vals = torch.rand(2, 4)
    assert float(faithfulness_loss("seq_kl", vals, vals + 3.0, mask)) == pytest.approx(0.0, abs=1e-6)  # shift-blind
    assert float(faithfulness_loss("mse", vals, vals + 1.0, mask)) == pytest.approx(4.0)


def test_threshold_bisection_keeps_the_rounded_mean_count():
    v = torch.tensor([0.9993, 0.99998, 0.9999, 1e-6, 0.0, 0.0])
    assert int(binarize(v).sum()) == 3
    assert int(binarize(v, sparsity=0.5).sum()) == 3
    assert int(binarize(torch.tensor([0.9, 0.8, 0.1, 0.05]), sparsity=0.75).sum()) == 1
    t = bisect_threshold(torch.tensor([0.2, 0.4, 0.6, 0.8]), 2)
    assert 0.4 <= t < 0.6


def test_score_term_needs_per_example_masks_and_leaves_the_loss_value_alone():
    with pytest.raises(EdgePruneError, match="per_example_masks"):
        PruneConfig(score_weight=0.1)
    model = random_model(seed=3)
    data = build_data(model, [[model.metadata.vocab[0]] * 3, [model.metadata.vocab[-1]] * 3], None, 0)
    values = []
    for weight in (0.0, 1.0):
        cfg = PruneConfig(steps=1, batch_size=2, per_example_masks=True, score_weight=weight)
        values.append(Pruner(CompiledAdapter(model), data, cfg).train_step()["loss"])
    assert values[0] == pytest.approx(values[1])


def test_faithful_cut_drops_ranked_edges_the_mean_cut_keeps(reference_dir):
    """Truth edges ranked first, a few idle edges still near 1: the mean rule keeps them, the faithful cut not."""
    from edgeprune.compiled.ground_truth import ground_truth
    from edgeprune.compiled.tracr_import import load_reference_dir, load_reference_samples
    from edgeprune.verify.compare import compare

    model = load_reference_dir(reference_dir / "reverse")[0]
    inputs = [s["input"] for s in load_reference_samples(reference_dir / "reverse")]
    data = build_data(model, inputs, None, seed=0)
    truth = ground_truth(model, "zero")
    circuits = {}
    for cut in ("mean", "faithful"):
        pruner = Pruner(CompiledAdapter(model), data, PruneConfig(cut=cut))
        with torch.no_grad():
            la = pruner.masks.edge_log_alpha
            la.fill_(-10.0)
            edges = pruner.adapter.graph.edges
            for i, e in enumerate(edges):
                if e in truth.edge_set:
                    la[i] = 9.0
            idle = [i for i, e in enumerate(edges) if e not in truth.edge_set][:5]
            la[idle] = 4.0
        circuits[cut] = pruner.circuit()
    assert compare(circuits["faithful"], truth).exact
    assert circuits["faithful"].meta["cut"]["relative_loss"] <= 1e-3
    assert not compare(circuits["mean"], truth).exact
    with pytest.raises(EdgePruneError, match="unknown cut"):
        PruneConfig(cut="median")


def test_exact_count_cut_returns_connected_edges_only():
    """A cut asked for k edges returns k edges on paths from an embedding to out, or says why it cannot."""
    from edgeprune.core.dangling import prune_dangling
    from edgeprune.core.graph import ComputationalGraph
    from edgeprune.pruning.threshold import connected_top_k

    g = ComputationalGraph(2, 1)
    edges = list(g.edges)
    score = torch.zeros(len(edges))
    # the best-ranked edges dangle: tok -> a0.h0.q with nothing read from a0.h0, and m0 -> out fed by nothing
    ranked = [("tok", "a0.h0.q"), ("m0", "out"), ("tok", "m0"), ("pos", "a1.h0.v"), ("a1.h0", "out")]
    for r, e in enumerate(ranked):
        score[edges.index(e)] = 10.0 - r
    keep, note = connected_top_k(edges, score, 2)
    chosen = {e for e, k in zip(edges, keep.tolist()) if k}
    assert note is None and len(chosen) == 2
    assert prune_dangling(chosen) == chosen  # nothing dangles
    assert chosen == {("m0", "out"), ("tok", "m0")}  # the best connected pair the ranking gives
    keep, note = connected_top_k(edges, score, 4)
    chosen = {e for e, k in zip(edges, keep.tolist()) if k}
    assert note is None and len(chosen) == 4 and prune_dangling(chosen) == chosen
    assert ("tok", "a0.h0.q") not in chosen  # the top-ranked edge dangles: left out, not counted
    # 3: the next ranked edge connects two at once (pos -> a1.h0.v needs a1.h0 -> out): the cut says so
    keep, note = connected_top_k(edges, score, 3)
    chosen = {e for e, k in zip(edges, keep.tolist()) if k}
    assert note is not None and "exactly 3" in note and prune_dangling(chosen) == chosen
    # only two edges may be taken and they cannot connect: the cut says so instead of counting dangling edges
    allowed = torch.zeros(len(edges), dtype=torch.bool)
    allowed[edges.index(("tok", "a0.h0.q"))] = allowed[edges.index(("a1.h0", "out"))] = True
    keep, note = connected_top_k(edges, score, 2, allowed)
    assert not keep.any() and note is not None and "connect" in note


def test_extract_circuit_counts_connected_edges(tmp_path):
    from edgeprune.core.dangling import prune_dangling
    from edgeprune.pruning.hard_concrete import MaskParameters
    from edgeprune.pruning.threshold import extract_circuit

    model = random_model(0)
    masks = MaskParameters(CompiledAdapter(model).graph, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        masks.edge_log_alpha.normal_(0.0, 3.0, generator=torch.Generator().manual_seed(1))
    for sparsity in (0.5, 0.8, 0.95):
        circuit = extract_circuit(masks, sparsity)
        want = round((1 - sparsity) * masks.graph.n_edges)
        assert len(circuit.edges) == want or "cut_note" in circuit.meta
        assert prune_dangling(circuit.edges) == set(circuit.edges)
        assert circuit.meta["cut_count"] == {"asked": want, "kept": len(circuit.edges)}


@pytest.mark.parametrize("ablation", ["zero", "interchange"])
@pytest.mark.parametrize("per_example", [True, False])
def test_support_forward_equals_the_writer_mix(ablation, per_example):
    """The per-direction mix of compiled models (``support_forward``) gives DisentangledForward's outputs and
    gradients up to rounding on a random model whose writers all share directions, and its outputs bit for bit
    on a compiled program (at most two writers per direction)."""
    from edgeprune.compiled.resolve import compile_spec, program_spec_for
    from edgeprune.pruning.disentangled import DisentangledForward, ablated_states
    from edgeprune.pruning.hard_concrete import MaskParameters
    from edgeprune.pruning.support_forward import SupportForward, compiled_supports

    spec = program_spec_for("hist", None, None)
    program = compile_spec(spec)
    for model, bitwise in ((random_model(0, d_model=8), False), (program, True)):
        inputs = INPUTS if not bitwise else spec.enumerate_inputs()[::7]
        data = build_data(model, inputs, shuffle_corruption(inputs), seed=0)
        ad = CompiledAdapter(model)
        supports = compiled_supports(ad)
        assert supports is not None and bool((supports.sum(0) > 1).any())  # shared directions: the extra columns
        gen = torch.Generator().manual_seed(0)
        masks = MaskParameters(ad.graph, generator=gen)
        with torch.no_grad():
            masks.edge_log_alpha.normal_(0.0, 2.0, generator=gen)
            masks.node_log_alpha.normal_(0.0, 2.0, generator=gen)
        ablated = ablated_states(ad, ablation, data.ids, data.corrupted, data.key_mask)
        edge_z, node_z = masks.sample(gen, len(data) if per_example else None)
        outs, grads = [], []
        for fwd in (DisentangledForward(ad), SupportForward(ad, supports)):
            masks.zero_grad()
            out = fwd.output(data.ids, masks.dense(edge_z), node_z, ablated, data.key_mask)
            out.pow(2).sum().backward(retain_graph=True)
            outs.append(out.detach())
            grads.append(masks.edge_log_alpha.grad.clone())
        if bitwise:
            assert torch.equal(outs[0], outs[1])
        torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-5)


def test_pruner_uses_the_support_forward_only_for_compiled_models():
    from edgeprune.pruning.disentangled import DisentangledForward
    from edgeprune.pruning.support_forward import SupportForward

    model, data, config = _setup()
    assert isinstance(Pruner(CompiledAdapter(model), data, config).forward, SupportForward)
    edges = list(CompiledAdapter(model).graph.edges)[:10]
    assert isinstance(Pruner(CompiledAdapter(model), data, config, edge_subset=edges).forward, DisentangledForward)

"""Reading out at the scored positions only: the same training as reading out everywhere.

A language-model task scores a few positions; ``Pruner`` then runs the vocabulary-wide
readout at those positions only (``ModelAdapter.readout_per_position``) and caches the
full model's targets there.  The loss is the same sum over the same positions, so masks,
losses and circuits must agree with the every-position run.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")

from edgeprune.pruning.adapter import at_positions  # noqa: E402
from edgeprune.pruning.adapters.hf_loading import adapter_for  # noqa: E402
from edgeprune.pruning.train import PruneConfig, PruneData, Pruner  # noqa: E402
from tests.hf_helpers import tiny_gpt2  # noqa: E402

torch.set_num_threads(1)


def test_at_positions_picks_each_examples_rows():
    x = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    got = at_positions(x, torch.tensor([[3, 0], [1, 1]]))
    assert torch.equal(got, torch.stack([x[0, [3, 0]], x[1, [1, 1]]]))
    assert at_positions(x, None) is x


def _data(scored: str):
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 40, (12, 7), generator=gen)
    corrupted = torch.randint(0, 40, (12, 7), generator=gen)
    mask = torch.zeros(12, 7, dtype=torch.bool)
    if scored == "last":
        mask[:, -1] = True
    else:  # a varying number of answer positions per example (1 to 3), as multi-token answers give
        for i in range(12):
            mask[i, 3 : 4 + i % 3] = True
    return PruneData(ids=ids, corrupted=corrupted, loss_mask=mask)


def _pruner(data, per_position: bool, ablation: str):
    adapter = adapter_for(tiny_gpt2(40, n_positions=16), freeze=True)
    adapter.readout_per_position = per_position  # instance override: the every-position path, for comparison
    return Pruner(adapter, data, PruneConfig(steps=8, batch_size=5, ablation=ablation, seed=3))


@pytest.mark.parametrize("scored", ["last", "ragged"])
@pytest.mark.parametrize("ablation", ["interchange", "zero"])
def test_training_at_scored_positions_equals_every_position(scored, ablation):
    data = _data(scored)
    fast, slow = _pruner(data, True, ablation), _pruner(data, False, ablation)
    assert fast.positions is not None and slow.positions is None
    k = int(data.loss_mask.sum(1).max())
    assert fast.full_out is not None and fast.full_out.shape[:2] == (12, k)  # targets cached at K slots
    for _ in range(8):
        a, b = fast.train_step(), slow.train_step()
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-7)
    assert torch.allclose(fast.masks.edge_log_alpha, slow.masks.edge_log_alpha, atol=1e-5)
    keep = fast.masks.edge_log_alpha.detach() > fast.masks.edge_log_alpha.detach().median()
    assert fast.binary_loss(keep) == pytest.approx(slow.binary_loss(keep), rel=1e-5, abs=1e-7)


def test_every_position_scored_keeps_the_full_readout():
    data = _data("last")
    data.loss_mask[:] = True
    assert _pruner(data, True, "zero").positions is None

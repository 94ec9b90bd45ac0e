"""Ablation, method, cut and loss: one list of names each, one check each, used by the engine and the CLI."""

from __future__ import annotations

import typing

import pytest

from edgeprune.core import options
from edgeprune.core.errors import EdgePruneError


@pytest.mark.parametrize(
    ("alias", "values", "check"),
    [
        (options.Ablation, options.ABLATIONS, options.check_ablation),
        (options.Method, options.METHODS, options.check_method),
        (options.Cut, options.CUTS, options.check_cut),
        (options.Loss, options.LOSSES, options.check_loss),
    ],
)
def test_each_name_is_typed_listed_and_checked(alias, values, check):
    assert typing.get_args(alias) == values  # the Literal and the tuple cannot drift apart
    for v in values:
        assert check(v) == v
    with pytest.raises(EdgePruneError) as err:
        check("nonsense")
    assert "nonsense" in str(err.value) and all(v in str(err.value) for v in values)


def test_engine_uses_the_one_check():
    from edgeprune.pruning.objective import faithfulness_loss
    from edgeprune.pruning.train import PruneConfig

    for field, bad in [("ablation", "resample"), ("loss", "l1"), ("cut", "half")]:
        with pytest.raises(EdgePruneError, match=f"unknown {field} '{bad}'; use one of"):
            PruneConfig(**{field: bad})
    import torch

    with pytest.raises(EdgePruneError, match="unknown loss 'l1'; use one of kl, seq_kl, mse"):
        faithfulness_loss("l1", torch.zeros(1, 2), torch.zeros(1, 2), torch.ones(1, 2, dtype=torch.bool))


def test_ranked_methods_are_methods():
    assert set(options.RANKED_METHODS) <= set(options.METHODS)

"""The named choices of the engine and the use cases: ablation, method, cut and loss, checked in one place.

Each choice is a ``Literal`` type (for type checkers and readers), a tuple of its
allowed values (for ``argparse`` choices and messages) and one ``check_*``
function that returns the value or raises :class:`EdgePruneError` naming the
allowed values.
"""

from __future__ import annotations

from typing import Literal, TypeVar, cast

from edgeprune.core.errors import EdgePruneError

Ablation = Literal["zero", "interchange", "mean", "mean-all"]
Method = Literal["ep", "hap", "eap", "eap-ig", "acdc"]
Cut = Literal["mean", "faithful", "minimal"]
Loss = Literal["kl", "seq_kl", "mse"]

#: what a removed edge carries instead of its writer's output: nothing (``zero``), the writer's output on the
#: corrupted input (``interchange``), or the writer's mean output over a reference set (the training inputs
#: unless one is given): per position (``mean``, over the references that have the position: auto-circuit's
#: token-wise mean) or over every example and position (``mean-all``: auto-circuit's batch mean)
ABLATIONS: tuple[Ablation, ...] = ("zero", "interchange", "mean", "mean-all")
#: ``--ablation``'s help, one text for every command
ABLATION_HELP = (
    "what a removed edge carries: zero; interchange (the writer's output on the corrupted input); "
    "mean (the writer's mean output at that position over the training inputs, over the inputs that have "
    "the position); mean-all (its mean over every training input and position)"
)
#: the ablations that need the writers' mean outputs over a reference set
MEAN_ABLATIONS: tuple[Ablation, ...] = ("mean", "mean-all")
#: every circuit-discovery method, in the order tables and plots list them
METHODS: tuple[Method, ...] = ("ep", "hap", "eap", "eap-ig", "acdc")
#: the methods that rank edges by attribution scores (HAP's attribution is one of them)
RANKED_METHODS: tuple[Method, ...] = ("eap", "eap-ig")
CUTS: tuple[Cut, ...] = ("mean", "faithful", "minimal")
LOSSES: tuple[Loss, ...] = ("kl", "seq_kl", "mse")

_T = TypeVar("_T", bound=str)


def _check(kind: str, value: object, allowed: tuple[_T, ...]) -> _T:
    if value not in allowed:
        raise EdgePruneError(f"unknown {kind} {value!r}; use one of {', '.join(allowed)}")
    return cast(_T, value)


def check_ablation(value: object) -> Ablation:
    return _check("ablation", value, ABLATIONS)


def is_mean(ablation: str) -> bool:
    """Whether ``ablation`` replaces removed edges by reference means (``mean`` or ``mean-all``)."""
    return ablation in MEAN_ABLATIONS


def check_method(value: object) -> Method:
    return _check("method", value, METHODS)


def check_cut(value: object) -> Cut:
    return _check("cut", value, CUTS)


def check_loss(value: object) -> Loss:
    return _check("loss", value, LOSSES)

"""The named choices of the engine and the use cases: ablation, method, cut and loss, checked in one place.

Each choice is a ``Literal`` type (for type checkers and readers), a tuple of its
allowed values (for ``argparse`` choices and messages) and one ``check_*``
function that returns the value or raises :class:`EdgePruneError` naming the
allowed values.
"""

from __future__ import annotations

from typing import Literal, TypeVar, cast

from edgeprune.core.errors import EdgePruneError

Ablation = Literal["zero", "interchange"]
Method = Literal["ep", "hap", "eap", "eap-ig", "acdc"]
Cut = Literal["mean", "faithful", "minimal"]
Loss = Literal["kl", "seq_kl", "mse"]

ABLATIONS: tuple[Ablation, ...] = ("zero", "interchange")
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


def check_method(value: object) -> Method:
    return _check("method", value, METHODS)


def check_cut(value: object) -> Cut:
    return _check("cut", value, CUTS)


def check_loss(value: object) -> Loss:
    return _check("loss", value, LOSSES)

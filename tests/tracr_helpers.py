"""Compare one program compiled by real Tracr and by the own compiler: refusals, weights, outputs.

The two programs are built by the same code, one with Tracr's ``rasp`` and one with
``edgeprune.programs.rasp``; their unnamed nodes carry different global ids, so Tracr's
residual labels are translated node for node before the weights are compared.
"""

from __future__ import annotations

import itertools
import random
import types
from typing import Any

import numpy as np
import torch

from edgeprune.compiled.model import RESIDUAL_AXIS

MAX_INPUTS = 2000
SAMPLE = 300


def exec_with_our_rasp(module_name: str, source: str, extra: dict) -> types.ModuleType:
    """Run Tracr's module source with only ``from tracr.rasp import rasp`` replaced by the project's rasp."""
    assert "from tracr.rasp import rasp" in source
    source = source.replace("from tracr.rasp import rasp", "from edgeprune.programs import rasp")
    mod = types.ModuleType(module_name)
    mod.__dict__.update(extra)
    exec(compile(source, f"<{module_name} with edgeprune.programs.rasp>", "exec"), mod.__dict__)
    return mod


def all_inputs(vocab, max_seq_len: int, seed: int) -> list[list]:
    """Every input up to max_seq_len, or a seeded sample when there are more than MAX_INPUTS."""
    vocab = sorted(vocab, key=str)
    total = sum(len(vocab) ** n for n in range(1, max_seq_len + 1))
    if total <= MAX_INPUTS:
        return [list(x) for n in range(1, max_seq_len + 1) for x in itertools.product(vocab, repeat=n)]
    rng = random.Random(seed)
    return [[rng.choice(vocab) for _ in range(rng.randint(1, max_seq_len))] for _ in range(SAMPLE)]


def name_map(theirs, ours, found: dict | None = None) -> dict:
    """Tracr node label -> own node label, walking the two programs (built by the same code) in step."""
    found = {} if found is None else found
    found[theirs.label] = ours.label
    for t_child, o_child in zip(theirs.children, ours.children):
        name_map(t_child, o_child, found)
    return found


def translate(label: str, names: dict) -> str:
    """Rename every node label inside a residual label: `x_12:3`, and also hidden spaces such as
    `x_12_selector_width_attn_output`, whose name embeds the node's label."""
    name, sep, value = label.partition(":")
    if name in names:
        return names[name] + sep + value
    for theirs in sorted(names, key=len, reverse=True):
        if name.startswith(theirs + "_"):
            return names[theirs] + name[len(theirs) :] + sep + value
    return label


def compile_both(t_program, o_program, vocab, max_seq_len: int, causal: bool = False) -> tuple[Any, Any]:
    """(Tracr's converted model or None if Tracr refuses, own model or None if the own compiler refuses)."""
    from edgeprune.compiled.compiler import compile_program
    from edgeprune.compiled.tracr_live import compile_with_tracr
    from edgeprune.core.errors import CompileError

    args = dict(vocab=vocab, max_seq_len=max_seq_len, causal=causal, compiler_bos="compiler_bos")
    try:
        tr = compile_with_tracr(t_program, **args)
    except CompileError:
        tr = None
    try:
        own = compile_program(o_program, **args)
    except CompileError:
        own = None
    return tr, own


def assert_same_weights(name: str, tr, own, t_program, o_program) -> None:
    """(2) the own compiler's weights == Tracr's, up to the residual order."""
    names = name_map(t_program, o_program)
    tr_labels = [translate(label, names) for label in tr.metadata.residual_labels]
    assert sorted(own.metadata.residual_labels) == sorted(tr_labels), name
    assert own.metadata.encoding_map == tr.metadata.encoding_map, name
    perm = torch.tensor([own.metadata.residual_labels.index(label) for label in tr_labels])
    permuted = {k: getattr(own, k).detach().index_select(ax, perm) for k, ax in RESIDUAL_AXIS.items()}
    for k in RESIDUAL_AXIS:
        assert permuted[k].shape == getattr(tr, k).shape, (name, k)
        if k not in ("W_1", "W_2"):
            assert torch.allclose(permuted[k], getattr(tr, k).detach(), atol=1e-6), (name, k)
    # MLP hidden units: equal up to their order within a layer, which follows the sorted names of
    # hidden directions, and those embed node ids that differ between the two programs (``x_9`` sorts
    # after ``x_10``), so a unit is compared by its input weights, bias and output weights together
    for layer in range(tr.W_1.shape[0]):
        theirs = _hidden_units(tr.W_1.detach()[layer], tr.b_1.detach()[layer], tr.W_2.detach()[layer])
        ours = _hidden_units(permuted["W_1"][layer], own.b_1.detach()[layer], permuted["W_2"][layer])
        assert torch.allclose(ours, theirs, atol=1e-6), (name, "MLP", layer)


def _hidden_units(w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
    """Rows (input weights, bias, output weights) of each hidden unit, in a canonical order."""
    units = torch.cat([w1.T, b1.unsqueeze(1), w2], dim=1)
    keys = torch.round(units * 1e4).tolist()
    return units[sorted(range(len(keys)), key=keys.__getitem__)]


def assert_same_outputs(name: str, tr, vocab, max_seq_len: int, causal: bool = False) -> int:
    """(1) Tracr's own forward == the converted model, per input length; returns how many inputs were run."""
    import jax.numpy as jnp  # type: ignore

    inputs = all_inputs(vocab, max_seq_len, seed=len(name))
    if causal:
        inputs = inputs[:200]
    by_len: dict[int, list] = {}
    for x in inputs:
        by_len.setdefault(len(x), []).append(x)
    for n, xs in by_len.items():
        ids = [tr.assembled.input_encoder.encode(["compiler_bos", *x]) for x in xs]
        ref = np.asarray(tr.assembled.forward(tr.assembled.params, jnp.array(ids)).transformer_output.output)
        got = tr(torch.tensor(ids)).detach().numpy()
        assert np.abs(got - ref).max() < 1e-4, (name, n)
    return len(inputs)

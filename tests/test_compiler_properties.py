"""Properties of the compiler on random well-formed RASP programs.

The generator builds programs step by step from ``tokens`` and ``indices`` and
tracks, for every SOp, what it knows about it, so that it only builds programs
whose compiled model is *meant* to be exact (Tracr's own preconditions):

* ``values``: the value set, to pick functions and aggregations that apply;
* ``total``: never None on any input (a categorical Aggregate may select
  nothing); only total SOps feed Selects and numerical means;
* ``exact``: the value set contains every value the SOp really takes (a
  numerical mean can take values outside Tracr's inferred set, e.g. 2/3), so
  only exact numerical SOps feed discretising MLPs;
* categorical Aggregates use selectors that select at most one key, or keys
  that all carry the same value; categorical -> numerical Maps are
  non-negative (Tracr's MLP has a ReLU there).
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiled.compiler import compile_program
from programs import rasp

MAX_SEQ_LEN = 4
VOCAB = [0, 1, 2]
# EDGEPRUNE_PROPERTY_EXAMPLES raises the example count for a long local run.
_EXAMPLES = int(os.environ.get("EDGEPRUNE_PROPERTY_EXAMPLES", "40"))
SETTINGS = dict(max_examples=_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass
class Item:
    sop: rasp.SOp
    numerical: bool
    values: set
    total: bool = True
    exact: bool = True
    uses_tokens: bool = False
    desc: str = ""  # how it was built, for readable counterexamples


def _apply(f: Callable, values: set) -> set:
    return {f(x) for x in values}


CAT_MAPS: list[tuple[str, Callable[[int], Callable[[Any], Any]]]] = [
    ("add_mod", lambda c: lambda x: (x + c) % 3),
    ("lt", lambda c: lambda x: x < c),
    ("eq", lambda c: lambda x: x == c),
    ("min", lambda c: lambda x: min(x, c)),
    ("absdiff", lambda c: lambda x: abs(x - c)),
]
SEQ_MAPS: list[tuple[str, Callable[[Any, Any], Any]]] = [
    ("add_mod", lambda x, y: (x + y) % 4),
    ("lt", lambda x, y: x < y),
    ("min", lambda x, y: min(x, y)),
    ("eq", lambda x, y: x == y),
    ("sub", lambda x, y: x - y),
]
NUM_MAPS: list[tuple[str, Callable[[int], Callable[[Any], Any]]]] = [  # non-negative, integer-valued
    ("mod", lambda c: lambda x: int(x) % (c + 2)),
    ("ge", lambda c: lambda x: int(x >= c)),
    ("scaled", lambda c: lambda x: abs(int(x)) * (c + 1)),
]
COMPARISONS = [c for c in rasp.Comparison]


def _from_categorical_aggregate(sop: rasp.RASPExpr) -> bool:
    if isinstance(sop, rasp.Aggregate) and rasp.is_categorical(sop):
        return True
    return any(_from_categorical_aggregate(c) for c in sop.children if isinstance(c, rasp.SOp))


@st.composite
def programs(draw, mean_comparisons: tuple = tuple(COMPARISONS), clean_keys: bool = False) -> Item:
    """``clean_keys``: no attention reads a categorical Aggregate or anything computed from one."""
    pool: list[Item] = [
        Item(rasp.tokens, False, set(VOCAB), uses_tokens=True),
        Item(rasp.indices, False, set(range(MAX_SEQ_LEN))),
    ]
    n_ops = draw(st.integers(1, 4))
    for _ in range(n_ops):
        cats = [it for it in pool if not it.numerical]
        total_cats = [it for it in cats if it.total]
        key_cats = [it for it in total_cats if not (clean_keys and _from_categorical_aggregate(it.sop))]
        attn_cats = [it for it in cats if not (clean_keys and _from_categorical_aggregate(it.sop))]
        nums = [it for it in pool if it.numerical]
        exact_nums = [it for it in nums if it.exact]
        kinds = ["cat_map", "seq_map", "cat_to_num", "selector_width", "agg_move", "agg_same", "num_mean"]
        if exact_nums:
            kinds += ["num_to_num", "num_to_cat"]
        if len(nums) >= 2:
            kinds += ["linear"]
        kind = draw(st.sampled_from(kinds))
        pick = lambda xs: draw(st.sampled_from(xs))  # noqa: E731
        c = draw(st.integers(0, 2))
        if kind == "cat_map":
            a = pick(cats)
            _, mk = pick(CAT_MAPS)
            f = mk(c)
            new = Item(rasp.Map(f, a.sop), False, _apply(f, a.values), a.total, True, a.uses_tokens)
        elif kind == "seq_map":
            a, b = pick(cats), pick(cats)
            if a is b:
                b = pool[0] if a is not pool[0] else pool[1]
            _, f = pick(SEQ_MAPS)
            vals = {f(x, y) for x, y in itertools.product(a.values, b.values)}
            new = Item(rasp.SequenceMap(f, a.sop, b.sop), False, vals, a.total and b.total, True,
                       a.uses_tokens or b.uses_tokens)
        elif kind == "cat_to_num":
            a = pick(cats)
            _, mk = pick(NUM_MAPS)
            f = mk(c)
            new = Item(rasp.numerical(rasp.Map(f, a.sop)), True, _apply(f, a.values), a.total, True, a.uses_tokens)
        elif kind == "num_to_num":
            a = pick(exact_nums)
            _, mk = pick(NUM_MAPS)
            f = mk(c)
            new = Item(rasp.numerical(rasp.Map(f, a.sop)), True, _apply(f, a.values), a.total, True, a.uses_tokens)
        elif kind == "num_to_cat":
            a = pick(exact_nums)
            f = (lambda k: lambda x: int(x) % 2 + k)(c)
            new = Item(rasp.Map(f, a.sop), False, _apply(f, a.values), a.total, True, a.uses_tokens)
        elif kind == "linear":
            a, b = pick(nums), pick(nums)
            if a is b:
                continue
            fa, fb = pick([1, 2, -1]), pick([1, -1, 0])
            vals = {fa * x + fb * y for x, y in itertools.product(a.values, b.values)}
            new = Item(rasp.numerical(rasp.LinearSequenceMap(a.sop, b.sop, fa, fb)), True, vals,
                       a.total and b.total, a.exact and b.exact, a.uses_tokens or b.uses_tokens)
        elif kind == "selector_width":
            k, q = pick(key_cats), pick(key_cats)
            sel = rasp.Select(k.sop, q.sop, pick(COMPARISONS))
            sw = rasp.SelectorWidth(sel)
            numerical = draw(st.booleans())
            new = Item(rasp.numerical(sw) if numerical else sw, numerical, set(range(MAX_SEQ_LEN + 1)), True, True,
                       k.uses_tokens or q.uses_tokens)
        elif kind == "agg_move":
            # keys are the (distinct) indices: at most one key selected; queries may point outside -> None.
            q = pick(key_cats)
            src = pick(attn_cats)
            shift = draw(st.booleans())
            if shift:  # max(i - c, 0) is always a valid index: the aggregate is total
                query = rasp.Map((lambda k: lambda i: max(i - k, 0))(c), rasp.indices)
                total = src.total
            else:
                query, total = q.sop, False
            sel = rasp.Select(rasp.indices, query, rasp.Comparison.EQ)
            new = Item(rasp.Aggregate(sel, src.sop), False, set(src.values), total, True,
                       src.uses_tokens or (not shift and q.uses_tokens))
        elif kind == "agg_same":
            # every selected key carries the query's value, so averaging one-hots is exact
            k, q = pick(key_cats), pick(key_cats)
            sel = rasp.Select(k.sop, q.sop, rasp.Comparison.EQ)
            new = Item(rasp.Aggregate(sel, k.sop), False, set(k.values), False, True, k.uses_tokens or q.uses_tokens)
        else:  # num_mean: mean of a 0/1 numerical SOp over any selector
            base = pick(key_cats)
            vals = sorted(base.values, key=repr)
            chosen = vals[c % len(vals)]
            bools = rasp.numerical(rasp.Map((lambda v: lambda x: int(x == v))(chosen), base.sop))
            bool_vals = {int(x == chosen) for x in base.values}
            if bool_vals != {0, 1}:
                continue
            k, q = pick(key_cats), pick(key_cats)
            sel = rasp.Select(k.sop, q.sop, pick(list(mean_comparisons)))
            agg = rasp.numerical(rasp.Aggregate(sel, bools, default=0))
            means = {v / n for v in (0, 1) for n in range(1, MAX_SEQ_LEN + 1)}
            new = Item(agg, True, means, True, False, base.uses_tokens or k.uses_tokens or q.uses_tokens)
        new.desc = f"{kind}(c={c}) -> {new.sop.label}: " + ", ".join(
            f"{ch.label}" for ch in new.sop.children)
        pool.append(new)
    out = pool[-1]
    trace = "; ".join(it.desc for it in pool[2:])
    if len(pool) == 2:
        out = Item(rasp.Map(lambda x: x, rasp.tokens), False, set(VOCAB), uses_tokens=True)
    if not out.uses_tokens:  # the compiler needs tokens in the graph; a no-op dependency adds it
        if out.numerical:
            zero = rasp.numerical(rasp.Map(lambda x: 0, rasp.tokens))
            out = Item(rasp.numerical(rasp.LinearSequenceMap(out.sop, zero, 1, 1)), True, out.values, out.total,
                       out.exact, True)
        else:
            out = Item(rasp.SequenceMap(lambda x, y: x, out.sop, rasp.tokens), False, out.values, out.total, True, True)
    out.desc = trace + (f"; wrapped -> {out.sop.label}" if out is not pool[-1] else "")
    return out


inputs = st.lists(st.lists(st.sampled_from(VOCAB), min_size=1, max_size=MAX_SEQ_LEN), min_size=1, max_size=12)


def _agree(expected: Any, got: Any, numerical: bool) -> bool:
    if expected is None:  # undefined (an Aggregate selected nothing): no output to compare
        return True
    if numerical:
        return abs(float(got) - float(expected)) <= 1e-3 + 1e-3 * abs(float(expected))
    return got == expected


@settings(**SETTINGS)
@given(item=programs(), xs=inputs)
def test_compiled_model_equals_evaluator(item: Item, xs: list[list[int]]):
    model = compile_program(item.sop, VOCAB, MAX_SEQ_LEN)
    outs = model.run(xs)
    for x, out in zip(xs, outs):
        expected = rasp.evaluate(item.sop, x)
        assert len(out) == len(expected)
        for pos, (e, g) in enumerate(zip(expected, out)):
            assert _agree(e, g, item.numerical), f"input {x} position {pos}: evaluator {e!r}, model {g!r}"


@settings(**SETTINGS)
@given(item=programs())
def test_metadata_is_consistent_with_weights(item: Item):
    """Every node is described; every block's node is an SOp with a layer; residual labels are unique."""
    model = compile_program(item.sop, VOCAB, MAX_SEQ_LEN)
    meta = model.metadata
    labels = meta.residual_labels
    assert len(set(labels)) == len(labels) == model.config.d_model
    nodes = meta.node_by_label
    assert meta.output_sop in nodes and set(nodes) == set(model.rasp_graph.nodes)
    for head, label in meta.blocks.heads.items():
        layer = int(head[1:].split(".")[0])
        assert nodes[label].layer == layer and nodes[label].expr_type in ("Aggregate", "SelectorWidth")
        assert nodes[label].block_type in ("attention_head", "selector_width_attn_mlp_pair")
        assert nodes[nodes[label].selector].expr_type == "Select"
    for mlp, labels_in in meta.blocks.mlps.items():
        for label in labels_in:
            assert nodes[label].layer == int(mlp[1:])
    for n in nodes.values():
        if n.encoding is not None:
            assert n.value_set and n.output_basis
            assert all(b in labels for b in n.output_basis) or n.label not in _used_labels(meta)
    # unused weights are exactly zero: heads/MLP columns beyond what the program allocates
    for layer in range(model.config.n_layers):
        for h in range(model.config.n_heads):
            if f"a{layer}.h{h}" not in meta.blocks.heads:
                assert float(model.W_Q[layer, h].abs().sum() + model.W_O[layer, h].abs().sum()) == 0.0
        if f"m{layer}" not in meta.blocks.mlps:
            assert float(model.W_1[layer].abs().sum() + model.W_2[layer].abs().sum()) == 0.0


def _used_labels(meta) -> set:
    used = {meta.output_sop}
    for n in meta.nodes:
        used.update(n.operands)
    return used


# Left out of the random programs, pinned by the two regression tests below instead: a numerical
# mean over a TRUE selector, and attention inputs computed from a categorical Aggregate.
_NONTRIVIAL = tuple(c for c in COMPARISONS if c is not rasp.Comparison.TRUE)


def _ground_truth_available() -> bool:
    try:
        from compiled.ground_truth import ground_truth  # noqa: F401
        from verify.checker import check_ground_truth  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _ground_truth_available(), reason="compiled.ground_truth / verify.checker not available")
@settings(max_examples=max(5, _EXAMPLES // 2), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(item=programs(mean_comparisons=_NONTRIVIAL, clean_keys=True), xs=inputs, ablation=st.sampled_from(["zero", "interchange"]))
def test_ground_truth_is_sufficient(item: Item, xs: list[list[int]], ablation: str):
    """With every edge outside the ground truth ablated, the model's outputs do not change."""
    from compiled.ground_truth import ground_truth
    from verify.checker import check_ground_truth

    model = compile_program(item.sop, VOCAB, MAX_SEQ_LEN)
    circuit = ground_truth(model, ablation)
    if ablation == "interchange":
        rng_pairs = [(x, list(reversed(x))) for x in xs] + [(x, x[1:] + x[:1]) for x in xs]
        report = check_ground_truth(model, circuit, ablation, pairs=rng_pairs, necessity=False)
    else:
        report = check_ground_truth(model, circuit, ablation, inputs=xs, necessity=False)
    assert report.sufficient, report.summary()


@pytest.mark.skipif(not _ground_truth_available(), reason="compiled.ground_truth / verify.checker not available")
@pytest.mark.xfail(strict=True, reason=(
    "known gap in compiled.ground_truth: for a TRUE selector it keeps no q/k edges, but a numerical mean "
    "needs the SOp directions of both sides to keep BOS out of the average; zero-ablated, the head averages "
    "over BOS too (n/(n+1) of the mean). Programs that only test such a mean against 0 do not need them, so "
    "adding them would break necessity there (is_sorted, palindrome, majority_token)"))
def test_ground_truth_numerical_mean_over_true_selector():
    comparison = rasp.Comparison.TRUE
    from compiled.ground_truth import ground_truth
    from verify.checker import check_ground_truth

    bools = rasp.numerical(rasp.Map(lambda x: int(x == 0), rasp.tokens))
    prog = rasp.numerical(rasp.Aggregate(rasp.Select(rasp.tokens, rasp.tokens, comparison), bools, default=0))
    model = compile_program(prog, VOCAB, MAX_SEQ_LEN)
    report = check_ground_truth(model, ground_truth(model, "zero"), "zero", inputs=[[0], [0, 1], [1, 0, 0]],
                                necessity=False)
    assert report.sufficient, report.summary()


@pytest.mark.skipif(not _ground_truth_available(), reason="compiled.ground_truth / verify.checker not available")
@pytest.mark.xfail(strict=True, reason=(
    "known gap in compiled.ground_truth: it drops a categorical Aggregate's BOS fallback, but at the BOS "
    "position that fallback keeps the Aggregate's output zero, and a later head using it as keys attends BOS "
    "differently without it; including the fallback whenever later attention reads the SOp over-includes "
    "edges in palindrome"))
def test_ground_truth_categorical_aggregate_used_as_keys():
    from compiled.ground_truth import ground_truth
    from verify.checker import check_ground_truth

    moved = rasp.Aggregate(rasp.Select(rasp.indices, rasp.Map(lambda i: max(i, 0), rasp.indices),
                                       rasp.Comparison.EQ), rasp.tokens)
    prog = rasp.SelectorWidth(rasp.Select(moved, rasp.tokens, rasp.Comparison.EQ))
    model = compile_program(prog, VOCAB, MAX_SEQ_LEN)
    assert model.run([[0], [0, 1], [1, 0, 0]]) == [rasp.evaluate(prog, x) for x in ([0], [0, 1], [1, 0, 0])]
    report = check_ground_truth(model, ground_truth(model, "zero"), "zero", inputs=[[0], [0, 1], [1, 0, 0]],
                                necessity=False)
    assert report.sufficient, report.summary()

"""Random well-formed RASP programs, each described by a JSON recipe that rebuilds it.

A recipe is ``{"vocab": [...], "max_seq_len": N, "steps": [...]}``. The pool of
SOps starts as ``[tokens, indices]``; every step appends one SOp built from
earlier pool entries (referred to by index), and the program's output is the
last one. Recipes are plain JSON so that a failing program can be stored in a
regression corpus and rebuilt exactly (``build``); the hypothesis strategy
``programs`` draws recipes and builds them with the very same code.

The generator tracks, for every SOp, what it knows about it, so that it only
builds programs whose compiled model is *meant* to be exact (Tracr's own
preconditions):

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
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from edgeprune.core.errors import EdgePruneError
from edgeprune.programs import rasp

MAX_SEQ_LEN = 4
VOCAB = [0, 1, 2]
MAX_OPS = 4


@dataclass
class Item:
    sop: rasp.SOp
    numerical: bool
    values: set
    total: bool = True
    exact: bool = True
    uses_tokens: bool = False
    desc: str = ""  # how it was built, for readable counterexamples
    from_cat_aggregate: bool = False  # computed from a categorical Aggregate (see ``clean_keys``)
    recipe: dict = field(default_factory=dict)  # set on the program's output item: rebuilds the program


def _apply(f: Callable, values: set) -> set:
    return {f(x) for x in values}


CAT_MAPS: dict[str, Callable[[int], Callable[[Any], Any]]] = {
    "add_mod": lambda c: lambda x: (x + c) % 3,
    "lt": lambda c: lambda x: x < c,
    "eq": lambda c: lambda x: x == c,
    "min": lambda c: lambda x: min(x, c),
    "absdiff": lambda c: lambda x: abs(x - c),
}
SEQ_MAPS: dict[str, Callable[[Any, Any], Any]] = {
    "add_mod": lambda x, y: (x + y) % 4,
    "lt": lambda x, y: x < y,
    "min": lambda x, y: min(x, y),
    "eq": lambda x, y: x == y,
    "sub": lambda x, y: x - y,
}
NUM_MAPS: dict[str, Callable[[int], Callable[[Any], Any]]] = {  # non-negative, integer-valued
    "mod": lambda c: lambda x: int(x) % (c + 2),
    "ge": lambda c: lambda x: int(x >= c),
    "scaled": lambda c: lambda x: abs(int(x)) * (c + 1),
}
COMPARISONS = [c for c in rasp.Comparison]
# Left out of generated programs where the ground truth must be exact (see tests/test_compiler_properties.py):
# a numerical mean over a TRUE selector.
NONTRIVIAL_COMPARISONS = tuple(c for c in COMPARISONS if c is not rasp.Comparison.TRUE)
KINDS = (
    "cat_map",
    "seq_map",
    "cat_to_num",
    "num_to_num",
    "num_to_cat",
    "linear",
    "selector_width",
    "agg_move",
    "agg_same",
    "num_mean",
)


def _bad(step: dict, why: str) -> EdgePruneError:
    return EdgePruneError(f"random-program recipe step {json.dumps(step)}: {why}; fix the recipe (or regenerate it)")


def initial_pool(vocab: Sequence[Any] = VOCAB, max_seq_len: int = MAX_SEQ_LEN) -> list[Item]:
    return [
        Item(rasp.tokens, False, set(vocab), uses_tokens=True, desc="tokens"),
        Item(rasp.indices, False, set(range(max_seq_len)), desc="indices"),
    ]


def apply_step(pool: list[Item], step: dict, max_seq_len: int = MAX_SEQ_LEN) -> Item | None:
    """The Item one recipe step builds from ``pool``; None when the step is degenerate (the generator skips it).

    Raises ``EdgePruneError`` for a step that breaks the generator's preconditions,
    so a hand-edited or shrunk recipe cannot silently build an ill-formed program.
    """

    def ref(key: str, *, numerical: bool | None = None, total: bool = False, exact: bool = False) -> Item:
        i = step.get(key)
        if not isinstance(i, int) or not 0 <= i < len(pool):
            raise _bad(step, f"{key!r} must index an earlier SOp (0..{len(pool) - 1})")
        it = pool[i]
        if numerical is not None and it.numerical != numerical:
            raise _bad(step, f"{key!r} must be {'numerical' if numerical else 'categorical'}")
        if total and not it.total:
            raise _bad(step, f"{key!r} may be None on some input; it cannot feed a Select or a mean")
        if exact and not it.exact:
            raise _bad(step, f"{key!r} has an inexact value set; it cannot feed a discretising MLP")
        return it

    def const() -> int:
        c = step.get("c", 0)
        if not isinstance(c, int) or not 0 <= c <= 2:
            raise _bad(step, "'c' must be an integer 0..2")
        return c

    def fn(table: dict, key: str = "f"):
        if step.get(key) not in table:
            raise _bad(step, f"{key!r} must be one of {sorted(table)}")
        return table[step[key]]

    def comparison(key: str = "cmp") -> rasp.Comparison:
        try:
            return rasp.Comparison[step.get(key)]
        except KeyError:
            raise _bad(step, f"{key!r} must be one of {[c.name for c in rasp.Comparison]}") from None

    kind = step.get("op")
    if kind == "cat_map":
        a = ref("a", numerical=False)
        f = fn(CAT_MAPS)(const())
        new = Item(
            rasp.Map(f, a.sop),
            False,
            _apply(f, a.values),
            a.total,
            True,
            a.uses_tokens,
            from_cat_aggregate=a.from_cat_aggregate,
        )
    elif kind == "seq_map":
        a, b = ref("a", numerical=False), ref("b", numerical=False)
        if step["a"] == step["b"]:
            raise _bad(step, "'a' and 'b' must differ")
        f = fn(SEQ_MAPS)
        vals = {f(x, y) for x, y in itertools.product(a.values, b.values)}
        new = Item(
            rasp.SequenceMap(f, a.sop, b.sop),
            False,
            vals,
            a.total and b.total,
            True,
            a.uses_tokens or b.uses_tokens,
            from_cat_aggregate=a.from_cat_aggregate or b.from_cat_aggregate,
        )
    elif kind in ("cat_to_num", "num_to_num"):
        a = ref("a", numerical=kind == "num_to_num", exact=kind == "num_to_num")
        f = fn(NUM_MAPS)(const())
        new = Item(
            rasp.numerical(rasp.Map(f, a.sop)),
            True,
            _apply(f, a.values),
            a.total,
            True,
            a.uses_tokens,
            from_cat_aggregate=a.from_cat_aggregate,
        )
    elif kind == "num_to_cat":
        a = ref("a", numerical=True, exact=True)
        f = (lambda k: lambda x: int(x) % 2 + k)(const())
        new = Item(
            rasp.Map(f, a.sop),
            False,
            _apply(f, a.values),
            a.total,
            True,
            a.uses_tokens,
            from_cat_aggregate=a.from_cat_aggregate,
        )
    elif kind == "linear":
        a, b = ref("a", numerical=True), ref("b", numerical=True)
        if step["a"] == step["b"]:
            return None
        fa, fb = step.get("fa"), step.get("fb")
        if fa not in (1, 2, -1) or fb not in (1, -1, 0):
            raise _bad(step, "'fa' must be 1, 2 or -1 and 'fb' 1, -1 or 0")
        vals = {fa * x + fb * y for x, y in itertools.product(a.values, b.values)}
        new = Item(
            rasp.numerical(rasp.LinearSequenceMap(a.sop, b.sop, fa, fb)),
            True,
            vals,
            a.total and b.total,
            a.exact and b.exact,
            a.uses_tokens or b.uses_tokens,
            from_cat_aggregate=a.from_cat_aggregate or b.from_cat_aggregate,
        )
    elif kind == "selector_width":
        k, q = ref("k", numerical=False, total=True), ref("q", numerical=False, total=True)
        sw = rasp.SelectorWidth(rasp.Select(k.sop, q.sop, comparison()))
        numerical = bool(step.get("numerical", False))
        new = Item(
            rasp.numerical(sw) if numerical else sw,
            numerical,
            set(range(max_seq_len + 1)),
            True,
            True,
            k.uses_tokens or q.uses_tokens,
            from_cat_aggregate=k.from_cat_aggregate or q.from_cat_aggregate,
        )
    elif kind == "agg_move":
        # keys are the (distinct) indices: at most one key selected; queries may point outside -> None.
        src = ref("src", numerical=False)
        if step.get("shift"):  # max(i - c, 0) is always a valid index: the aggregate is total
            query = rasp.Map((lambda k: lambda i: max(i - k, 0))(const()), rasp.indices)
            total, q_tokens = src.total, False
        else:
            q = ref("q", numerical=False, total=True)
            query, total, q_tokens = q.sop, False, q.uses_tokens
        sel = rasp.Select(rasp.indices, query, rasp.Comparison.EQ)
        new = Item(
            rasp.Aggregate(sel, src.sop),
            False,
            set(src.values),
            total,
            True,
            src.uses_tokens or q_tokens,
            from_cat_aggregate=True,
        )
    elif kind == "agg_same":
        # every selected key carries the query's value, so averaging one-hots is exact
        k, q = ref("k", numerical=False, total=True), ref("q", numerical=False, total=True)
        sel = rasp.Select(k.sop, q.sop, rasp.Comparison.EQ)
        new = Item(
            rasp.Aggregate(sel, k.sop),
            False,
            set(k.values),
            False,
            True,
            k.uses_tokens or q.uses_tokens,
            from_cat_aggregate=True,
        )
    elif kind == "num_mean":  # mean of a 0/1 numerical SOp over any selector
        base = ref("base", numerical=False, total=True)
        ordered = sorted(base.values, key=repr)
        chosen = ordered[const() % len(ordered)]
        bool_vals = {int(x == chosen) for x in base.values}
        if bool_vals != {0, 1}:
            return None
        bools = rasp.numerical(rasp.Map((lambda v: lambda x: int(x == v))(chosen), base.sop))
        k, q = ref("k", numerical=False, total=True), ref("q", numerical=False, total=True)
        agg = rasp.numerical(rasp.Aggregate(rasp.Select(k.sop, q.sop, comparison()), bools, default=0))
        means = {v / n for v in (0, 1) for n in range(1, max_seq_len + 1)}
        new = Item(
            agg,
            True,
            means,
            True,
            False,
            base.uses_tokens or k.uses_tokens or q.uses_tokens,
            from_cat_aggregate=base.from_cat_aggregate or k.from_cat_aggregate or q.from_cat_aggregate,
        )
    else:
        raise _bad(step, f"unknown op; use one of {list(KINDS)}")
    new.desc = f"{kind}(c={step.get('c', 0)}) -> {new.sop.label}: " + ", ".join(
        f"{ch.label}" for ch in new.sop.children
    )
    return new


def _finish(pool: list[Item], recipe: dict) -> Item:
    """The output item: the last SOp, made to depend on tokens (the compiler needs tokens in the graph)."""
    out = pool[-1]
    trace = "; ".join(it.desc for it in pool[2:])
    if len(pool) == 2:
        out = Item(rasp.Map(lambda x: x, rasp.tokens), False, set(recipe["vocab"]), uses_tokens=True)
    if not out.uses_tokens:
        if out.numerical:
            zero = rasp.numerical(rasp.Map(lambda x: 0, rasp.tokens))
            out = Item(
                rasp.numerical(rasp.LinearSequenceMap(out.sop, zero, 1, 1)),
                True,
                out.values,
                out.total,
                out.exact,
                True,
            )
        else:
            out = Item(rasp.SequenceMap(lambda x, y: x, out.sop, rasp.tokens), False, out.values, out.total, True, True)
    out.desc = trace + (f"; wrapped -> {out.sop.label}" if out is not pool[-1] else "")
    out.recipe = recipe
    return out


def build(recipe: dict) -> Item:
    """Rebuild the program a recipe describes (fresh RASP objects on every call)."""
    if not isinstance(recipe, dict) or not isinstance(recipe.get("steps"), list):
        raise EdgePruneError("a random-program recipe is a JSON object with 'vocab', 'max_seq_len' and a 'steps' list")
    vocab, max_seq_len = recipe.get("vocab", VOCAB), recipe.get("max_seq_len", MAX_SEQ_LEN)
    recipe = {"vocab": list(vocab), "max_seq_len": max_seq_len, "steps": [dict(s) for s in recipe["steps"]]}
    pool = initial_pool(vocab, max_seq_len)
    for step in recipe["steps"]:
        new = apply_step(pool, step, max_seq_len)
        if new is None:
            raise _bad(step, "it builds nothing (a degenerate step the generator would have skipped)")
        pool.append(new)
    return _finish(pool, recipe)


def recipe_json(recipe: dict) -> str:
    """Canonical one-line JSON: equal programs give equal strings."""
    return json.dumps(recipe, sort_keys=True, separators=(",", ":"))


def _generate(
    choose: Callable[[Sequence[Any]], Any],
    mean_comparisons: Sequence[rasp.Comparison],
    clean_keys: bool,
    max_ops: int,
    vocab: Sequence[Any],
    max_seq_len: int,
    skip_constant: bool = False,
) -> Item:
    """Draw a recipe step by step with ``choose`` (one value from a sequence) and build it."""
    pool = initial_pool(vocab, max_seq_len)
    steps: list[dict] = []
    n_ops = choose(range(1, max_ops + 1))
    for _ in range(n_ops):
        idx = range(len(pool))
        cats = [i for i in idx if not pool[i].numerical]
        total_cats = [i for i in cats if pool[i].total]
        key_cats = [i for i in total_cats if not (clean_keys and pool[i].from_cat_aggregate)]
        attn_cats = [i for i in cats if not (clean_keys and pool[i].from_cat_aggregate)]
        nums = [i for i in idx if pool[i].numerical]
        exact_nums = [i for i in nums if pool[i].exact]
        kinds = ["cat_map", "seq_map", "cat_to_num", "selector_width", "agg_move", "agg_same", "num_mean"]
        if exact_nums:
            kinds += ["num_to_num", "num_to_cat"]
        if len(nums) >= 2:
            kinds += ["linear"]
        kind = choose(kinds)
        c = choose(range(3))
        if kind == "cat_map":
            step = {"op": kind, "a": choose(cats), "f": choose(sorted(CAT_MAPS)), "c": c}
        elif kind == "seq_map":
            a, b = choose(cats), choose(cats)
            if a == b:
                b = 0 if a != 0 else 1
            step = {"op": kind, "a": a, "b": b, "f": choose(sorted(SEQ_MAPS))}
        elif kind == "cat_to_num":
            step = {"op": kind, "a": choose(cats), "f": choose(sorted(NUM_MAPS)), "c": c}
        elif kind == "num_to_num":
            step = {"op": kind, "a": choose(exact_nums), "f": choose(sorted(NUM_MAPS)), "c": c}
        elif kind == "num_to_cat":
            step = {"op": kind, "a": choose(exact_nums), "c": c}
        elif kind == "linear":
            step = {
                "op": kind,
                "a": choose(nums),
                "b": choose(nums),
                "fa": choose([1, 2, -1]),
                "fb": choose([1, -1, 0]),
            }
        elif kind == "selector_width":
            step = {
                "op": kind,
                "k": choose(key_cats),
                "q": choose(key_cats),
                "cmp": choose([x.name for x in COMPARISONS]),
                "numerical": choose([False, True]),
            }
        elif kind == "agg_move":
            shift = choose([False, True])
            step = {"op": kind, "src": choose(attn_cats), "shift": shift, "c": c}
            if not shift:
                step["q"] = choose(key_cats)
        elif kind == "agg_same":
            step = {"op": kind, "k": choose(key_cats), "q": choose(key_cats)}
        else:
            step = {
                "op": kind,
                "base": choose(key_cats),
                "c": c,
                "k": choose(key_cats),
                "q": choose(key_cats),
                "cmp": choose([x.name for x in mean_comparisons]),
            }
        new = apply_step(pool, step, max_seq_len)
        if new is None or (skip_constant and len(new.values) < 2):
            continue
        pool.append(new)
        steps.append(step)
    return _finish(pool, {"vocab": list(vocab), "max_seq_len": max_seq_len, "steps": steps})


def programs(
    mean_comparisons: Sequence[rasp.Comparison] = tuple(COMPARISONS),
    clean_keys: bool = False,
    max_ops: int = MAX_OPS,
    vocab: Sequence[Any] = tuple(VOCAB),
    max_seq_len: int = MAX_SEQ_LEN,
    skip_constant: bool = False,
):
    """Hypothesis strategy of random programs (``Item`` with ``.recipe``).

    ``clean_keys``: no attention reads a categorical Aggregate or anything computed from one.
    ``skip_constant``: no step whose value set has one value (e.g. ``min(indices, 0)``): its circuit is
    degenerate (nothing upstream matters), which recovery checks have no use for.
    """
    from hypothesis import strategies as st

    @st.composite
    def strategy(draw) -> Item:
        return _generate(
            lambda xs: draw(st.sampled_from(list(xs))),
            tuple(mean_comparisons),
            clean_keys,
            max_ops,
            list(vocab),
            max_seq_len,
            skip_constant,
        )

    return strategy()


def random_program(
    rng,
    mean_comparisons: Sequence[rasp.Comparison] = tuple(COMPARISONS),
    clean_keys: bool = False,
    max_ops: int = MAX_OPS,
    vocab: Sequence[Any] = tuple(VOCAB),
    max_seq_len: int = MAX_SEQ_LEN,
    skip_constant: bool = False,
) -> Item:
    """One program drawn with a ``random.Random`` (no hypothesis needed: scripts, benchmarks)."""
    return _generate(
        lambda xs: rng.choice(list(xs)),
        tuple(mean_comparisons),
        clean_keys,
        max_ops,
        list(vocab),
        max_seq_len,
        skip_constant,
    )


def all_inputs(recipe: dict) -> list[list[Any]]:
    """Every input of length 1..max_seq_len over the recipe's vocab (small by construction)."""
    vocab, n = list(recipe.get("vocab", VOCAB)), recipe.get("max_seq_len", MAX_SEQ_LEN)
    return [list(x) for k in range(1, n + 1) for x in itertools.product(vocab, repeat=k)]


_REFS = ("a", "b", "k", "q", "src", "base")


def recipe_size(recipe: dict) -> tuple[int, int, int]:
    """What shrinking lowers: steps, then references to computed SOps, then constants (every candidate is smaller)."""
    steps = recipe["steps"]
    derived = sum(1 for s in steps for r in _REFS if isinstance(s.get(r), int) and s[r] >= 2)
    return len(steps), derived, sum(s.get("c", 0) for s in steps)


def shrink_candidates(recipe: dict) -> list[dict]:
    """Smaller recipes to try when minimising a failure: end the program at an earlier step, drop one step
    (re-indexing later references), read tokens/indices instead of an earlier step, or set a constant to 0."""
    steps = recipe["steps"]
    out: list[dict] = []
    refs = _REFS

    def drop(i: int) -> list[dict] | None:
        new = []
        for s in steps[:i] + steps[i + 1 :]:
            s = dict(s)
            for r in refs:
                if r in s:
                    if s[r] == i + 2:
                        return None
                    if s[r] > i + 2:
                        s[r] -= 1
            new.append(s)
        return new

    for end in range(len(steps) - 1):  # end earlier: whole tails go at once
        out.append({**recipe, "steps": [dict(s) for s in steps[: end + 1]]})
    for i in range(len(steps)):
        new = drop(i)
        if new is not None:
            out.append({**recipe, "steps": new})
    for i, s in enumerate(steps):  # read tokens or indices instead of an earlier step (frees it to be dropped)
        for r in refs:
            if isinstance(s.get(r), int) and s[r] >= 2:
                for base in (0, 1):
                    out.append(
                        {**recipe, "steps": [dict(t, **{r: base}) if j == i else dict(t) for j, t in enumerate(steps)]}
                    )
    for i, s in enumerate(steps):
        if s.get("c", 0) != 0:
            out.append({**recipe, "steps": [dict(t, c=0) if j == i else dict(t) for j, t in enumerate(steps)]})
    valid = []
    for cand in out:
        try:
            build(cand)
        except EdgePruneError:
            continue
        valid.append(cand)
    return valid


def minimize(recipe: dict, fails: Callable[[dict], bool], budget: int = 30) -> dict:
    """Greedy shrink: keep taking the first smaller recipe that still ``fails`` (at most ``budget`` tries)."""
    tries = 0
    improved = True
    while improved and tries < budget:
        improved = False
        for cand in shrink_candidates(recipe):
            tries += 1
            if fails(cand):
                recipe, improved = cand, True
                break
            if tries >= budget:
                break
    return recipe


__all__ = [
    "COMPARISONS",
    "Item",
    "MAX_SEQ_LEN",
    "NONTRIVIAL_COMPARISONS",
    "VOCAB",
    "all_inputs",
    "apply_step",
    "build",
    "minimize",
    "programs",
    "random_program",
    "recipe_json",
    "recipe_size",
    "shrink_candidates",
]

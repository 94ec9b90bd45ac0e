"""The program library and registry: hand-worked outputs, Tracr reference agreement, samplers, CLI, compilation."""

from __future__ import annotations

import json
import random
import re
from collections import defaultdict
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeprune.compiled.resolve import compile_registered
from edgeprune.core.errors import EdgePruneError, InputError
from edgeprune.programs import library as lib
from edgeprune.programs import rasp
from edgeprune.programs.registry import (
    ProgramSpec,
    get_program,
    list_programs,
    outputs_equal,
    program_names,
    values_equal,
)
from tests.conftest import REFERENCE_DIR, REFERENCE_PROGRAMS
from tests.test_library_extra import EXTRA_COUNTS, HAND_WORKED_EXTRA  # programs/library_extra.py's programs

REQUIRED = [
    "reverse",
    "xproportion",
    "length",
    "hist",
    "sort_unique",
    "sort",
    "sort_freq",
    "pair_balance",
    "shuffle_dyck",
    "shuffle_dyck2",
    "count_less_freq",
    "detect_pattern",
    "shift_by",
    "nary_sequencemap",
    "count",
]
SPECS = list_programs()
SPEC_IDS = [s.name for s in SPECS]
T, F = True, False

# ----------------------------------------------------------------------------- hand-worked outputs

# (registry name, input, expected output), each worked out by hand from the task's definition.
HAND_WORKED: list[tuple[str, list[Any], list[Any]]] = [
    ("reverse", [1, 2, 3], [3, 2, 1]),
    ("reverse", [2], [2]),
    ("reverse", [1, 1, 2, 3, 3], [3, 3, 2, 1, 1]),
    ("reverse", [3, 1], [1, 3]),
    ("xproportion", list("wxxy"), [0, 1 / 2, 2 / 3, 2 / 4]),
    ("xproportion", ["x"], [1]),
    ("xproportion", list("xwwwx"), [1, 1 / 2, 1 / 3, 1 / 4, 2 / 5]),
    ("length", list("abcb"), [4, 4, 4, 4]),
    ("length", ["c"], [1]),
    ("length", list("aaaaa"), [5] * 5),
    ("hist", list("abac"), [2, 1, 2, 1]),
    ("hist", list("dddd"), [4, 4, 4, 4]),
    ("hist", list("abcda"), [2, 1, 1, 1, 2]),
    ("sort_unique", [2, 4, 3, 1], [1, 2, 3, 4]),
    ("sort_unique", [5, 1], [1, 5]),
    ("sort_unique", [3], [3]),
    ("sort_unique", [5, 4, 3, 2, 1], [1, 2, 3, 4, 5]),
    ("sort", [2, 4, 1, 2], [1, 2, 2, 4]),
    ("sort", [3, 3, 3], [3, 3, 3]),
    ("sort", [4, 1, 3, 1, 2], [1, 1, 2, 3, 4]),
    ("sort_freq", [2, 4, 2, 1], [2, 2, 4, 1]),
    # counts 1:1, 2:2, 3:2 -> the 2s (first seen) then the 3s, then the single 1
    ("sort_freq", [1, 2, 2, 3, 3], [2, 2, 3, 3, 1]),
    ("sort_freq", [4, 3], [4, 3]),
    ("pair_balance", list("(()"), [1, 1, 1 / 3]),
    ("pair_balance", list(")("), [-1, 0]),
    ("pair_balance", list("()()()"), [1, 0, 1 / 3, 0, 1 / 5, 0]),
    ("shuffle_dyck", list("()"), [T, T]),
    ("shuffle_dyck", list("(())"), [T] * 4),
    ("shuffle_dyck", list("()()()"), [T] * 6),
    ("shuffle_dyck", list(")("), [F, F]),
    ("shuffle_dyck", list("(()"), [F, F, F]),
    ("shuffle_dyck", list("())("), [F] * 4),
    ("shuffle_dyck", ["("], [F]),
    ("shuffle_dyck2", list("({)}"), [T] * 4),
    ("shuffle_dyck2", list("{(})"), [T] * 4),
    ("shuffle_dyck2", list("(){)}"), [F] * 5),
    ("shuffle_dyck2", list("{}("), [F] * 3),
    ("shuffle_dyck2", list("(}"), [F, F]),
    ("count_less_freq", list("aaab"), [1] * 4),  # a x3 is too frequent, b x1 counts
    ("count_less_freq", list("aabbc"), [5] * 5),
    ("count_less_freq", list("ddd"), [0] * 3),
    ("count_less_freq", list("dddcc"), [2] * 5),
    ("detect_pattern", list("abcabc"), [None, None, T, F, F, T]),
    ("detect_pattern", list("ab"), [None, None]),
    ("detect_pattern", list("cabc"), [None, None, F, T]),
    ("detect_pattern", list("aabcc"), [None, None, F, T, F]),
    ("shift_by", list("abcd"), [None, "a", "b", "c"]),
    ("shift_by", ["d"], [None]),
    ("shift_by", list("ddcba"), [None, "d", "d", "c", "b"]),
    ("nary_sequencemap", [1, 2, 3], [2, 3, 4]),  # x + x - i
    ("nary_sequencemap", [3, 1], [6, 1]),
    ("nary_sequencemap", [1, 1, 1, 1, 1], [2, 1, 0, -1, -2]),
    ("count", list("caba"), [2, 2, 2, 2]),
    ("count", list("bbc"), [0, 0, 0]),
    ("count", list("aaaaa"), [5] * 5),
]


@pytest.mark.parametrize(
    "name,tokens,expected", HAND_WORKED, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(HAND_WORKED)]
)
def test_hand_worked_outputs(name: str, tokens: list, expected: list) -> None:
    spec = get_program(name)
    got = spec.evaluate(tokens)
    assert outputs_equal(got, expected), f"{name}({tokens}) = {got}, expected {expected}"
    # None must stay None (no-output positions), never 0/False
    assert [g is None for g in got] == [e is None for e in expected]


def test_every_registered_program_has_hand_worked_cases() -> None:
    assert {n for n, _, _ in HAND_WORKED + HAND_WORKED_EXTRA} == set(program_names())


def test_library_constructors_beyond_the_registry() -> None:
    """Parameters the registry does not use, from Tracr's docstrings and tests, worked by hand."""
    t = rasp.tokens
    assert lib.make_frac_prevs(t == "l")(list("hello")) == pytest.approx([0, 0, 1 / 3, 1 / 2, 2 / 5])
    assert lib.make_pair_balance(t, "(", ")")(list("a()b(c))")) == pytest.approx(
        [0, 1 / 2, 0, 0, 1 / 5, 1 / 6, 0, -1 / 8]
    )
    assert lib.shift_by(2, t)(list("abcd")) == [None, None, "a", "b"]
    assert lib.detect_pattern(t, "a")(list("bacd")) == [F, T, F, F]
    assert lib.detect_pattern(t, "ab")(list("aaba")) == [None, F, T, F]
    assert lib.make_count_less_freq(2)(list("aacbbc")) == [6] * 6
    assert lib.make_sort_unique(t, 1 - rasp.indices)(list("abcd")) == list("dcba")
    assert lib.make_sort(t, 1 - rasp.indices, max_seq_len=5, min_key=1)(list("abcd")) == list("dcba")
    assert [bool(x) for x in lib.make_shuffle_dyck(["()", "{}", "[]"])(list("({)[}]"))] == [T] * 6
    assert [bool(x) for x in lib.make_shuffle_dyck(["()", "{}", "[]"])(list("{}[(]"))] == [F] * 5
    assert lib.make_nary_sequencemap(lambda x, y, z: x * y / z, rasp.indices, rasp.indices, t)([1, 2, 3]) == (
        pytest.approx([0, 1 / 2, 4 / 3])
    )
    assert lib.make_nary_sequencemap(lambda x: x * 10, t)([1, 2]) == [10, 20]
    assert lib.make_length()(list("abcdefg")) == [7] * 7
    with pytest.raises(ValueError):
        lib.detect_pattern(t, "")
    with pytest.raises(ValueError):
        lib.make_shuffle_dyck([])


def test_constructors_build_fresh_graphs() -> None:
    """Two builds share no nodes (besides tokens/indices), so their labels never collide."""

    def nodes(expr: rasp.RASPExpr) -> set[int]:
        seen: dict[int, rasp.RASPExpr] = {}
        stack = [expr]
        while stack:
            e = stack.pop()
            if id(e) not in seen:
                seen[id(e)] = e
                stack.extend(e.children)
        return {k for k, e in seen.items() if not isinstance(e, (rasp.TokensType, rasp.IndicesType))}

    for spec in SPECS:
        a, b = spec.build(), spec.build()
        assert a is not b
        assert not (nodes(a) & nodes(b)), spec.name


# ----------------------------------------------------------------------------- registry basics


def test_required_programs_registered() -> None:
    assert set(REQUIRED) <= set(program_names())
    assert len(program_names()) == len(set(program_names()))
    for spec in SPECS:
        assert isinstance(spec, ProgramSpec)
        assert get_program(spec.name) is spec
        assert spec.description and "\n" not in spec.description
        assert list(spec.vocab) == sorted(spec.vocab), f"{spec.name}: vocab must be sorted (enumeration order)"
        assert isinstance(spec.pruning, dict)


def test_unknown_program_error_names_known_programs_and_fix() -> None:
    with pytest.raises(EdgePruneError) as exc:
        get_program("revrse")
    msg = str(exc.value)
    assert "revrse" in msg and "reverse" in msg and "xproportion" in msg and "edgeprune programs" in msg


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_declared_output_encoding_matches_program(spec: ProgramSpec) -> None:
    assert rasp.get_encoding(spec.build()).value == spec.output_encoding


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_small_enough_for_exhaustive_checks(spec: ProgramSpec) -> None:
    assert spec.count_inputs() < 5000


# ----------------------------------------------------------------------------- Tracr reference agreement


def _ref(name: str, what: str) -> dict:
    return json.loads((REFERENCE_DIR / name / what).read_text())


@pytest.mark.parametrize("name", REFERENCE_PROGRAMS)
def test_registry_matches_tracr_reference(name: str) -> None:
    spec = get_program(name)
    model = _ref(name, "model.json")
    assert list(spec.vocab) == model["vocab"]
    assert spec.max_seq_len == model["max_seq_len"]
    assert spec.construction == model["construction"]
    assert spec.output_encoding == model["output_encoding"]


@pytest.mark.parametrize("name", REFERENCE_PROGRAMS)
def test_evaluator_matches_tracr_reference_samples(name: str) -> None:
    spec = get_program(name)
    samples = _ref(name, "samples.json")["samples"]
    assert samples
    for s in samples:
        got = spec.evaluate(s["input"])
        assert outputs_equal(got, s["rasp_eval"]), (s["input"], got, s["rasp_eval"])


_TYPE_NAMES = {rasp.TokensType: "tokens", rasp.IndicesType: "indices"}


def _expr_type(e: rasp.RASPExpr) -> str:
    return _TYPE_NAMES.get(type(e), type(e).__name__)


@pytest.mark.parametrize("name", REFERENCE_PROGRAMS)
def test_program_graph_matches_tracr_reference(name: str) -> None:
    """Same RASP graph as Tracr: node types, names, encodings, operands, and every function/predicate table."""
    spec = get_program(name)
    model = _ref(name, "model.json")
    ref_nodes = {n["label"]: n for n in model["nodes"]}
    pairs: dict[str, rasp.RASPExpr] = {}

    def walk(expr: rasp.RASPExpr, label: str) -> None:
        ref = ref_nodes[label]
        if label in pairs:
            assert pairs[label] is expr, f"{label}: shared in Tracr's graph but not in ours"
            return
        pairs[label] = expr
        assert _expr_type(expr) == ref["expr_type"], label
        assert expr.name == ref["name"], label
        if isinstance(expr, rasp.SOp):
            assert rasp.get_encoding(expr).value == ref["encoding"], label
        assert len(expr.children) == len(ref["operands"]), label
        table = ref.get("function_table")
        if isinstance(expr, rasp.SequenceMap) and table:
            for x, y, fxy in table:
                if fxy is not None:
                    assert values_equal(expr.f(x, y), fxy), (label, x, y)
        elif isinstance(expr, rasp.Map) and table:
            for x, fx in table:
                assert values_equal(expr.f(x), fx), (label, x)
        if isinstance(expr, rasp.LinearSequenceMap):
            assert (expr.fst_fac, expr.snd_fac) == (ref["fst_fac"], ref["snd_fac"])
        if isinstance(expr, rasp.Aggregate):
            assert expr.default == ref["default"], label
        ptable = ref.get("predicate_table")
        if isinstance(expr, rasp.Select) and ptable:
            for r, q in enumerate(ptable["rows_query_values"]):
                for c, k in enumerate(ptable["cols_key_values"]):
                    assert bool(expr.predicate(k, q)) == bool(ptable["matrix"][r][c]), (label, k, q)
        for child, child_label in zip(expr.children, ref["operands"]):
            walk(child, child_label)

    walk(spec.build(), model["sink"])
    assert set(pairs) == set(ref_nodes)


# ----------------------------------------------------------------------------- enumeration


EXPECTED_COUNTS = {
    "reverse": 3 + 9 + 27 + 81 + 243,
    "xproportion": 4 + 16 + 64 + 256 + 1024,
    "length": 363,
    "hist": 1364,
    "sort_unique": 5 + 20 + 60 + 120 + 120,  # 5!/(5-n)! distinct sequences of length n
    "pair_balance": 2 + 4 + 8 + 16 + 32 + 64,
    "shuffle_dyck": 126,
    "shuffle_dyck2": 1364,
    "sort": 1364,
    "sort_freq": 1364,
    "count_less_freq": 1364,
    "detect_pattern": 3 + 9 + 27 + 81 + 243 + 729,
    "shift_by": 1364,
    "nary_sequencemap": 363,
    "count": 363,
}
EXPECTED_COUNTS.update(EXTRA_COUNTS)  # the programs of programs/library_extra.py


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_enumerate_inputs(spec: ProgramSpec) -> None:
    inputs = spec.enumerate_inputs()
    assert len(inputs) == EXPECTED_COUNTS[spec.name] == spec.count_inputs()
    assert sum(spec.count_inputs(n) for n in range(1, spec.max_seq_len + 1)) == len(inputs)
    assert len({tuple(x) for x in inputs}) == len(inputs)
    assert all(spec.is_valid(x) for x in inputs)
    # length first, then lexicographic in vocab order
    rank = {v: i for i, v in enumerate(spec.vocab)}
    keys = [(len(x), [rank[t] for t in x]) for x in inputs]
    assert keys == sorted(keys)
    assert inputs[0] == [spec.vocab[0]]
    assert spec.enumerate_inputs(limit=7) == inputs[:7]
    assert spec.enumerate_inputs(limit=0) == []


def test_enumeration_matches_reference_exhaustive_samples() -> None:
    for name in REFERENCE_PROGRAMS:
        samples = _ref(name, "samples.json")
        if samples["sampling"].startswith("exhaustive"):
            assert get_program(name).enumerate_inputs() == [s["input"] for s in samples["samples"]], name


def test_sort_unique_enumeration_respects_constraint() -> None:
    spec = get_program("sort_unique")
    assert spec.input_constraint == "distinct"
    assert all(len(set(x)) == len(x) for x in spec.enumerate_inputs())


# ----------------------------------------------------------------------------- samplers


def _rngs(seed: int) -> list:
    return [np.random.default_rng(seed), random.Random(seed)]


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1))
def test_sampler_properties(spec: ProgramSpec, seed: int) -> None:
    for rng in _rngs(seed):
        xs = spec.sample_inputs(rng, 20)
        assert len(xs) == 20
        for x in xs:
            assert 1 <= len(x) <= spec.max_seq_len
            assert all(t in spec.vocab for t in x)
            assert spec.satisfies_constraint(x)
            spec.check_input(x)
            y = spec.corrupt(rng, x)
            assert len(y) == len(x)
            assert spec.is_valid(y)
    for n in range(1, spec.max_valid_len + 1):
        assert all(len(x) == n for x in spec.sample_inputs(np.random.default_rng(seed), 5, length=n))


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_samplers_deterministic_for_seeded_rng(spec: ProgramSpec) -> None:
    for make in (np.random.default_rng, random.Random):
        a, b = make(123), make(123)
        xa, xb = spec.sample_inputs(a, 30), spec.sample_inputs(b, 30)
        assert xa == xb
        assert [spec.corrupt(a, x) for x in xa] == [spec.corrupt(b, x) for x in xb]
        assert spec.corrupt_pairs(make(5), 10) == spec.corrupt_pairs(make(5), 10)


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_sampler_covers_every_length(spec: ProgramSpec) -> None:
    lengths = {len(x) for x in spec.sample_inputs(np.random.default_rng(0), 300)}
    assert lengths == set(range(1, spec.max_valid_len + 1))


def _output_key(out: list) -> tuple:
    return tuple(None if v is None else (round(float(v), 6) if not isinstance(v, str) else v) for v in out)


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_corruption_changes_output_whenever_possible(spec: ProgramSpec) -> None:
    """If some same-length input has another output, the corruption finds one (seeded, so deterministic)."""
    outputs_by_len: dict[int, set] = defaultdict(set)
    for x in spec.enumerate_inputs():
        outputs_by_len[len(x)].add(_output_key(spec.evaluate(x)))
    rng = np.random.default_rng(7)
    missed = []
    for x in spec.sample_inputs(rng, 40):
        y = spec.corrupt(rng, x)
        possible = len(outputs_by_len[len(x)]) > 1
        changed = not outputs_equal(spec.evaluate(x), spec.evaluate(y))
        if possible and not changed:
            missed.append((x, y))
        if not possible and spec.count_inputs(len(x)) > 1:
            assert y != x, "with nothing to change in the output, still resample the tokens"
    assert not missed, missed


def test_length_corruption_cannot_change_output_but_resamples() -> None:
    spec = get_program("length")
    rng = random.Random(0)
    y = spec.corrupt(rng, ["a", "b"])
    assert len(y) == 2 and y != ["a", "b"]


def test_dyck_sampler_produces_balanced_inputs() -> None:
    """Uniform inputs are rarely balanced; the Dyck samplers mix balanced ones in."""
    for name in ("shuffle_dyck", "shuffle_dyck2"):
        spec = get_program(name)
        xs = spec.sample_inputs(np.random.default_rng(1), 200, length=4)
        balanced = [x for x in xs if spec.evaluate(x)[0]]
        assert len(balanced) >= 60, name


# ----------------------------------------------------------------------------- bad input


def test_check_input_errors_name_problem_and_fix() -> None:
    spec = get_program("reverse")
    with pytest.raises(InputError, match="unknown token"):
        spec.check_input([1, 4])
    with pytest.raises(InputError, match="typed"):
        spec.check_input(["1"])
    with pytest.raises(InputError, match="max_seq_len 5"):
        spec.check_input([1] * 6)
    with pytest.raises(InputError, match="empty"):
        spec.check_input([])
    with pytest.raises(InputError, match="distinct"):
        get_program("sort_unique").check_input([1, 1])
    with pytest.raises(InputError):
        spec.corrupt(random.Random(0), [1, 9])
    with pytest.raises(InputError):
        spec.sample_inputs(random.Random(0), 1, length=6)
    with pytest.raises(InputError):
        get_program("sort_unique").evaluate([2, 2])


def test_values_equal_treats_bool_means_as_numbers() -> None:
    assert values_equal(True, 1.0) and values_equal(False, 0)
    assert not values_equal(None, 0) and values_equal(None, None)
    assert not values_equal("a", "b") and values_equal(0.1 + 0.2, 0.3)
    assert not outputs_equal([1, 2], [1])


# ----------------------------------------------------------------------------- CLI


def test_programs_command_json(capsys: pytest.CaptureFixture) -> None:
    from edgeprune.cli import main

    assert main(["programs", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == program_names()
    rev = rows[0]
    assert rev["vocab"] == [1, 2, 3] and rev["max_seq_len"] == 5 and rev["output_encoding"] == "categorical"
    assert {"description", "num_inputs", "input_constraint", "construction"} <= set(rev)


def test_programs_command_table(capsys: pytest.CaptureFixture) -> None:
    from edgeprune.cli import main

    assert main(["programs"]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert lines[0].split()[:4] == ["name", "vocab", "max_len", "encoding"]
    assert len(lines) == 1 + len(SPECS)
    assert re.search(r"^xproportion\s+\{w,x,y,z\}\s+5\s+numerical", out, re.M)


# ----------------------------------------------------------------------------- compiled model == evaluator

# Programs whose compilation is known to fail in someone else's code: name -> reason (xfail, not skip).
COMPILE_XFAIL: dict[str, str] = {}

# Numerical outputs of compiled models are approximate (Tracr's MLPs); same rule as tracr-reference's "agree".
NUM_ABS, NUM_REL = 1e-4, 0.005


def _compiled_agrees(expected: list, got: list, numerical: bool) -> bool:
    for e, g in zip(expected, got):
        if e is None:  # no defined output (an Aggregate that selects nothing)
            continue
        if numerical:
            if abs(float(g) - float(e)) > NUM_ABS + NUM_REL * abs(float(e)):
                return False
        elif not values_equal(g, e):
            return False
    return True


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_compiled_model_matches_evaluator(spec: ProgramSpec) -> None:
    """Exhaustive over every valid input; the whole set (50 programs) takes ~45 s on CPU, so it is not marked slow."""
    pytest.importorskip("edgeprune.compiled.compiler", reason="compiled/compiler.py not available yet")
    if spec.name in COMPILE_XFAIL:
        pytest.xfail(COMPILE_XFAIL[spec.name])
    model = compile_registered(spec.name)
    cfg = model.config
    assert cfg.d_model < 200 and cfg.n_layers <= 8, f"{spec.name}: model too big ({cfg})"
    inputs = spec.enumerate_inputs()
    numerical = spec.output_encoding == "numerical"
    assert model.is_categorical == (not numerical)
    bad = []
    for start in range(0, len(inputs), 512):
        batch = inputs[start : start + 512]
        for x, got in zip(batch, model.run(batch)):
            expected = spec.evaluate(x)
            if not _compiled_agrees(expected, got, numerical):
                bad.append((x, expected, got))
    assert not bad, f"{spec.name}: {len(bad)}/{len(inputs)} disagree, e.g. {bad[:3]}"

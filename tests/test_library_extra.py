"""The extra programs (programs/library_extra.py): hand-worked outputs, registry entries, input counts.

Compilation of every registered program against its evaluator is in
tests/test_library.py (test_compiled_model_matches_evaluator), which picks
these programs up from the registry.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edgeprune.programs import library_extra as libx
from edgeprune.programs import rasp
from edgeprune.programs.registry import get_program, list_programs, outputs_equal, program_names

T, F = True, False
N = None
UP, DOWN, SAME = "up", "down", "same"

# (registry name, input, expected output), each worked out by hand from the task's definition.
HAND_WORKED_EXTRA: list[tuple[str, list[Any], list[Any]]] = [
    # fraction of 'b' so far
    ("frac_b", list("abba"), [0, 1 / 2, 2 / 3, 2 / 4]),
    ("frac_b", list("bcb"), [1, 1 / 2, 2 / 3]),
    ("frac_b", ["c"], [0]),
    # mean of tokens so far
    ("mean_so_far", [2, 0, 1], [2, 1, 1]),
    ("mean_so_far", [0, 1, 2, 2], [0, 1 / 2, 1, 5 / 4]),
    ("mean_so_far", [1, 1, 1, 1, 0], [1, 1, 1, 1, 4 / 5]),
    # 'a' more than half of the input
    ("majority_a", list("aab"), [T] * 3),
    ("majority_a", list("abab"), [F] * 4),  # exactly half is not a majority
    ("majority_a", ["a"], [T]),
    ("majority_a", list("bca"), [F] * 3),
    ("running_max", [1, 2, 1, 3], [1, 2, 2, 3]),
    ("running_max", [3, 1, 1], [3, 3, 3]),
    ("running_max", [1, 1, 2, 1, 1], [1, 1, 2, 2, 2]),
    ("running_min", [3, 2, 3, 1], [3, 2, 2, 1]),
    ("running_min", [2, 3, 1, 3, 3], [2, 2, 1, 1, 1]),
    ("running_min", [3, 3], [3, 3]),
    ("first_a_index", list("bbab"), [2] * 4),
    ("first_a_index", list("abc"), [0] * 3),
    ("first_a_index", list("bcb"), [N] * 3),  # no 'a'
    ("first_a_index", list("cbaa"), [2] * 4),
    # prefix balances in brackets
    ("balanced_prefix", list("()("), [F, T, F]),  # 1 0 1
    ("balanced_prefix", list("(())()"), [F, F, F, T, F, T]),  # 1 2 1 0 1 0
    ("balanced_prefix", list(")()"), [F, F, F]),  # -1 0 -1: negative from the start
    ("balanced_prefix", list("())(()"), [F, T, F, F, F, F]),  # 1 0 -1 0 1 0: negative at 2 spoils the rest
    ("palindrome", list("abba"), [T] * 4),
    ("palindrome", list("abca"), [F] * 4),
    ("palindrome", ["c"], [T]),
    ("palindrome", list("aba"), [T] * 3),
    ("palindrome", list("ab"), [F] * 2),
    ("is_sorted", [1, 1, 3], [T] * 3),
    ("is_sorted", [1, 3, 2], [F] * 3),
    ("is_sorted", [2], [T]),
    ("is_sorted", [1, 2, 2, 3, 3], [T] * 5),
    ("is_sorted", [3, 1, 1, 1, 1], [F] * 5),
    ("shift_by_2", list("abcab"), [N, N, "a", "b", "c"]),
    ("shift_by_2", list("ca"), [N, N]),
    ("next_token", list("abc"), ["b", "c", N]),
    ("next_token", ["a"], [N]),
    ("next_token", list("ccab"), ["c", "a", "b", N]),
    ("first_token", list("cab"), ["c"] * 3),
    ("first_token", ["b"], ["b"]),
    ("last_token", list("cab"), ["b"] * 3),
    ("last_token", list("aaac"), ["c"] * 4),
    ("last_token", ["b"], ["b"]),
    ("swap_first_last", list("abcc"), list("cbca")),
    ("swap_first_last", list("abc"), list("cba")),
    ("swap_first_last", ["b"], ["b"]),
    ("swap_first_last", list("ab"), list("ba")),
    ("swap_first_last", list("aabbc"), list("cabba")),
    ("rotate_left", list("abc"), list("bca")),
    ("rotate_left", list("aabc"), list("abca")),
    ("rotate_left", ["b"], ["b"]),
    ("copy_even", list("abcab"), list("aaccb")),
    ("copy_even", list("ba"), list("bb")),
    ("max_token", [2, 4, 1, 4], [4] * 4),
    ("max_token", [1], [1]),
    ("max_token", [3, 1, 2], [3] * 3),
    ("majority_token", [1, 2, 2, 1], [1] * 4),  # tie: 1 occurs first
    ("majority_token", [3, 1, 1], [1] * 3),
    ("majority_token", [2, 3, 1], [2] * 3),  # all once: the first token
    ("majority_token", [3, 2, 2, 2], [2] * 4),
    ("sort_desc", [2, 4, 1, 2], [4, 2, 2, 1]),
    ("sort_desc", [1, 3, 1, 3, 4], [4, 3, 3, 1, 1]),
    ("sort_desc", [1], [1]),
    ("count_other", list("abca"), [2] * 4),
    ("count_other", list("aaa"), [0] * 3),
    ("count_other", list("bc"), [2, 2]),
    ("count_smaller", [3, 1, 3, 2], [2, 0, 2, 1]),
    ("count_smaller", [4, 4], [0, 0]),
    ("count_smaller", [1, 2, 3, 4, 1], [0, 2, 3, 4, 0]),
    ("count_eq_first", list("abaa"), [3] * 4),
    ("count_eq_first", list("cab"), [1] * 3),
    ("count_eq_first", list("bbbbb"), [5] * 5),
    ("occurrence_index", list("abab"), [0, 0, 1, 1]),
    ("occurrence_index", list("aaaca"), [0, 1, 2, 0, 3]),
    ("first_occurrence", list("abab"), [T, T, F, F]),
    ("first_occurrence", list("cbacc"), [T, T, T, F, F]),
    ("last_occurrence", list("abab"), [F, F, T, T]),
    ("last_occurrence", list("cbacc"), [F, T, T, F, T]),
    ("count_a_so_far", list("abaa"), [1, 1, 2, 3]),
    ("count_a_so_far", list("bcbab"), [0, 0, 0, 1, 1]),
    ("freq_class", list("aabaa"), ["common", "common", "rare", "common", "common"]),
    ("freq_class", list("abcab"), ["mid", "mid", "rare", "mid", "mid"]),
    ("inc_mod4", [0, 3, 2], [1, 0, 3]),
    ("inc_mod4", [1, 1, 3, 0], [2, 2, 0, 1]),
    ("double", [1, 3], [2, 6]),
    ("double", [2, 2, 1, 3], [4, 4, 2, 6]),
    ("a_at_even", list("aaba"), [T, F, F, F]),
    ("a_at_even", list("baaca"), [F, F, T, F, T]),
    ("trend", [1, 3, 3, 2], [N, UP, SAME, DOWN]),
    ("trend", [2, 1], [N, DOWN]),
    ("eq_prev", list("aab"), [N, T, F]),
    ("eq_prev", list("cbbbc"), [N, F, T, T, F]),
    ("sum_prev", [1, 2, 3], [N, 3, 5]),
    ("sum_prev", [3, 3, 1, 2], [N, 6, 4, 3]),
    ("detect_ab", list("abcab"), [N, T, F, F, T]),
    ("detect_ab", list("ba"), [N, F]),
    ("detect_aba", list("ababa"), [N, N, T, F, T]),
    ("detect_aba", list("aabab"), [N, N, F, T, F]),
]

EXTRA_NAMES = sorted({n for n, _, _ in HAND_WORKED_EXTRA})

# Number of valid inputs: sum of |vocab|^n for n = 1..max_seq_len.
_V3L5, _V4L5 = 3 + 9 + 27 + 81 + 243, 4 + 16 + 64 + 256 + 1024
_V2L6, _V3L4, _V4L4 = 2 + 4 + 8 + 16 + 32 + 64, 3 + 9 + 27 + 81, 4 + 16 + 64 + 256
EXTRA_COUNTS = {name: _V3L5 for name in EXTRA_NAMES}
EXTRA_COUNTS.update(
    balanced_prefix=_V2L6,
    detect_aba=_V2L6,
    palindrome=_V3L4,
    majority_token=_V3L4,
    double=_V3L4,
    max_token=_V4L5,
    sort_desc=_V4L5,
    count_smaller=_V4L5,
    inc_mod4=_V4L4,
)


@pytest.mark.parametrize(
    "name,tokens,expected", HAND_WORKED_EXTRA, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(HAND_WORKED_EXTRA)]
)
def test_hand_worked_outputs_extra(name: str, tokens: list, expected: list) -> None:
    spec = get_program(name)
    got = spec.evaluate(tokens)
    assert outputs_equal(got, expected), f"{name}({tokens}) = {got}, expected {expected}"
    assert [g is None for g in got] == [e is None for e in expected]


def test_at_least_forty_programs_and_two_cases_each() -> None:
    assert len(program_names()) >= 40
    assert len(EXTRA_NAMES) >= 25
    assert set(EXTRA_NAMES) <= set(program_names())
    for name in EXTRA_NAMES:
        assert sum(n == name for n, _, _ in HAND_WORKED_EXTRA) >= 2, name


@pytest.mark.parametrize("name", EXTRA_NAMES)
def test_extra_spec_entry(name: str) -> None:
    spec = get_program(name)
    assert spec.description and "\n" not in spec.description
    assert spec.count_inputs() == EXTRA_COUNTS[name] <= 1500
    assert rasp.get_encoding(spec.build()).value == spec.output_encoding


def test_extra_programs_name_their_nodes_uniquely() -> None:
    """Two nodes with one label would collide in the compiler's graph (e.g. two frac_prevs)."""
    for spec in list_programs():
        if spec.name not in EXTRA_NAMES:
            continue
        seen: dict[str, int] = {}
        stack = [spec.build()]
        while stack:
            e = stack.pop()
            if e.label in seen:
                assert seen[e.label] == id(e), f"{spec.name}: two nodes labelled {e.label!r}"
                continue
            seen[e.label] = id(e)
            stack.extend(e.children)


def test_special_samplers_mix_in_rare_positive_inputs() -> None:
    for name in ("palindrome", "is_sorted", "balanced_prefix"):
        spec = get_program(name)
        xs = spec.sample_inputs(np.random.default_rng(3), 200, length=4)
        assert all(len(x) == 4 and spec.is_valid(x) for x in xs)
        positive = [x for x in xs if spec.evaluate(x)[-1]]
        assert len(positive) >= 60, name


def test_constructors_with_other_parameters() -> None:
    t = list("xyzx")
    assert libx.make_frac_token("x")(t) == pytest.approx([1, 1 / 2, 1 / 3, 1 / 2])
    assert libx.make_count_other("x")(t) == [2] * 4
    assert libx.make_count_so_far("x")(t) == [1, 1, 1, 2]
    assert libx.make_first_index_of("z")(t) == [2] * 4
    assert libx.make_first_index_of("w")(t) == [None] * 4
    assert libx.make_majority("x")(list("xxyx")) == [True] * 4
    assert libx.make_map_inc_mod(3)([0, 1, 2]) == [1, 2, 0]
    assert libx.make_shift_by(3)(list("abcd")) == [None, None, None, "a"]
    assert libx.make_balanced_prefix("[", "]")(list("[]")) == [False, True]
    assert libx.make_flag_at_even("z")(list("zzz")) == [True, False, True]

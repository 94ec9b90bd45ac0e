"""More program constructors for the suite, in the spirit of the Tracr benchmark suites (InterpBench, TracrBench).

``programs.library`` holds Tracr's own ``lib`` functions; this module holds the
extra tasks registered in ``programs.registry``. Every constructor builds a
fresh graph on each call and names its nodes, so residual labels read well and
never collide inside one program (two ``make_frac_prevs`` in one program would
both be called ``frac_prevs``; they are renamed here).

Only constructs the compiler supports are used: a categorical Aggregate selects
one key, or keys that all hold the same value; a numerical Aggregate averages a
numerical SOp whose values are 0 and 1; Selects combine keys and queries of one
SOp pair (a (token, index) pair SOp stands in for "same token and earlier").

Selector predicates are called as ``predicate(key, query)`` (Tracr's order).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edgeprune.programs import library as lib
from edgeprune.programs import rasp

# ----------------------------------------------------------------------------- helpers


def _select_all() -> rasp.Select:
    return rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.TRUE).named("select_all")


def _select_first() -> rasp.Select:
    return rasp.Select(rasp.indices, rasp.indices, lambda k, q: k == 0).named("select_first")


def _token_index_pair() -> rasp.SOp:
    """(token, index) at every position: one categorical SOp to compare token and position in a single Select."""
    return rasp.SequenceMap(lambda t, i: (t, i), rasp.tokens, rasp.indices).named("tok_idx")


def _frac(bools: rasp.SOp, name: str) -> rasp.SOp:
    """``lib.make_frac_prevs`` under a program-unique name."""
    return lib.make_frac_prevs(bools).named(name)


def _mean_all(bools01: rasp.SOp, name: str) -> rasp.SOp:
    """Fraction of all positions where the numerical 0/1 SOp ``bools01`` is 1 (same value everywhere)."""
    return rasp.numerical(rasp.Aggregate(_select_all(), bools01, default=0)).named(name)


def _is_zero(sop: rasp.SOp, name: str) -> rasp.SOp:
    """Categorical ``sop == 0`` of a numerical SOp."""
    return rasp.categorical(rasp.Map(lambda x: x == 0, sop)).named(name)


def _indicator(sop: rasp.SOp, name: str) -> rasp.SOp:
    """Numerical 1 where ``sop`` is truthy (or a positive count), else 0."""
    return rasp.numerical(rasp.Map(lambda x: 1 if x else 0, sop)).named(name)


# ----------------------------------------------------------------------------- numerical attention


def make_frac_token(token: Any) -> rasp.SOp:
    """Fraction of ``token`` among tokens[0..i] (numerical mean Aggregate).

    make_frac_token("b")(list("abba")) == [0, 1/2, 2/3, 1/2]
    """
    return _frac(rasp.tokens == token, f"frac_{token}")


def make_mean_so_far() -> rasp.SOp:
    """Mean of the numeric tokens (values 0, 1, 2) in tokens[0..i].

    The mean of a value x in {0, 1, 2} is the mean of [x >= 1] plus the mean of
    [x >= 2], two 0/1 means that a numerical Aggregate can compute.
    make_mean_so_far()([2, 0, 1]) == [2, 1, 1]
    """
    ge1 = _frac(rasp.tokens >= 1, "frac_ge1")
    ge2 = _frac(rasp.tokens >= 2, "frac_ge2")
    return rasp.numerical(rasp.LinearSequenceMap(ge1, ge2, 1, 1)).named("mean_so_far")


def make_majority(token: Any) -> rasp.SOp:
    """True everywhere iff ``token`` fills more than half of the input: 2 * count > length.

    (Not ``mean > 1/2`` through a numerical Aggregate: the compiler, like Tracr,
    takes a mean's value set to be {0} and {1/n}, so a Map thresholding at 1/2
    would misread means such as 2/3.)
    make_majority("a")(list("aab")) == [True] * 3
    """
    sel = rasp.Select(rasp.tokens, rasp.tokens, lambda k, q: k == token).named(f"select_{token}")
    count = rasp.SelectorWidth(sel).named(f"count_{token}")
    length = lib.make_length()
    return rasp.SequenceMap(lambda c, n: 2 * c > n, count, length).named(f"majority_{token}")


def make_running_max() -> rasp.SOp:
    """max(tokens[0..i]) for tokens in {1, 2, 3}: has a 3 been seen, else has a value >= 2 been seen.

    make_running_max()([1, 2, 1, 3]) == [1, 2, 2, 3]
    """
    has3 = rasp.categorical(rasp.Map(lambda x: x > 0, _frac(rasp.tokens == 3, "frac_3"))).named("seen_3")
    has2 = rasp.categorical(rasp.Map(lambda x: x > 0, _frac(rasp.tokens >= 2, "frac_ge2"))).named("seen_ge2")
    return rasp.SequenceMap(lambda a, b: 3 if a else (2 if b else 1), has3, has2).named("running_max")


def make_running_min() -> rasp.SOp:
    """min(tokens[0..i]) for tokens in {1, 2, 3}: has a 1 been seen, else has a value <= 2 been seen.

    make_running_min()([3, 2, 3, 1]) == [3, 2, 2, 1]
    """
    has1 = rasp.categorical(rasp.Map(lambda x: x > 0, _frac(rasp.tokens == 1, "frac_1"))).named("seen_1")
    has2 = rasp.categorical(rasp.Map(lambda x: x > 0, _frac(rasp.tokens <= 2, "frac_le2"))).named("seen_le2")
    return rasp.SequenceMap(lambda a, b: 1 if a else (2 if b else 3), has1, has2).named("running_min")


def make_first_index_of(token: Any) -> rasp.SOp:
    """Index of the first ``token`` at every position (None when there is none).

    Marks the ``token`` with no ``token`` before it (a Select on (token, index)
    pairs), then reads the index of that one marked position.
    (Not a width over "no token yet" flags from a prefix mean: such a flag is
    also set at the compiler's BOS position, which then spoils the width.)
    make_first_index_of("a")(list("bbab")) == [2] * 4
    """
    pair = _token_index_pair()
    before = rasp.Select(pair, pair, lambda k, q: k[0] == token and k[1] < q[1]).named(f"{token}_before")
    n_before = rasp.SelectorWidth(before).named(f"n_{token}_before")
    is_first = rasp.SequenceMap(lambda t, w: t == token and w == 0, rasp.tokens, n_before).named(f"is_first_{token}")
    sel = rasp.Select(is_first, is_first, lambda k, q: k).named(f"select_first_{token}")
    return rasp.Aggregate(sel, rasp.indices).named(f"first_index_{token}")


def make_balanced_prefix(open_token: str = "(", close_token: str = ")") -> rasp.SOp:
    """True at i iff tokens[0..i] is a balanced bracket string (balance 0 now, never negative before).

    make_balanced_prefix()(list("()(")) == [False, True, False]
    """
    bal = lib.make_pair_balance(rasp.tokens, open_token, close_token).named("balance")
    negative = rasp.numerical(rasp.Map(lambda x: 1 if x < 0 else 0, bal)).named("negative")
    prevs = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ).named("prevs")
    neg_so_far = rasp.numerical(rasp.Aggregate(prevs, negative, default=0)).named("neg_so_far")
    never_neg = _is_zero(neg_so_far, "never_negative")
    closed = _is_zero(bal, "balance_zero")
    return rasp.SequenceMap(lambda a, b: bool(a and b), never_neg, closed).named("balanced_prefix")


def make_palindrome() -> rasp.SOp:
    """True everywhere iff the input reads the same backwards.

    make_palindrome()(list("abba")) == [True] * 4
    """
    rev = lib.make_reverse(rasp.tokens)
    mirror_eq = rasp.SequenceMap(lambda x, y: x == y, rasp.tokens, rev).named("mirror_eq")
    mismatch = rasp.numerical(rasp.Map(lambda e: 0 if e else 1, mirror_eq)).named("mismatch")
    frac = _mean_all(mismatch, "frac_mismatch")
    return _is_zero(frac, "palindrome")


def make_is_sorted() -> rasp.SOp:
    """True everywhere iff the tokens are non-decreasing.

    Per position the number of earlier, larger tokens (a Select on (token,
    index) pairs), then whether any position has one (numerical mean over all).
    make_is_sorted()([1, 1, 3]) == [True] * 3
    """
    pair = _token_index_pair()
    larger_before = rasp.Select(pair, pair, lambda k, q: k[1] < q[1] and k[0] > q[0]).named("larger_before")
    n_larger = rasp.SelectorWidth(larger_before).named("n_larger_before")
    bad = _indicator(n_larger, "out_of_order")
    frac_bad = _mean_all(bad, "frac_out_of_order")
    return _is_zero(frac_bad, "is_sorted")


# ----------------------------------------------------------------------------- categorical attention (moves)


def make_shift_by(offset: int) -> rasp.SOp:
    """tokens[i - offset] (None at the first ``offset`` positions), Tracr's ``shift_by``."""
    return lib.shift_by(offset, rasp.tokens)


def make_next_token() -> rasp.SOp:
    """tokens[i + 1] (None at the last position).

    make_next_token()(list("abc")) == ["b", "c", None]
    """
    sel = rasp.Select(rasp.indices, rasp.indices, lambda k, q: k == q + 1).named("select_next")
    return rasp.Aggregate(sel, rasp.tokens).named("next_token")


def make_first_token() -> rasp.SOp:
    """tokens[0] at every position.

    make_first_token()(list("cab")) == ["c"] * 3
    """
    return rasp.Aggregate(_select_first(), rasp.tokens).named("first_token")


def make_last_token() -> rasp.SOp:
    """tokens[n - 1] at every position.

    make_last_token()(list("cab")) == ["b"] * 3
    """
    length = lib.make_length()
    last_idx = (length - 1).named("last_idx")
    sel = rasp.Select(rasp.indices, last_idx, rasp.Comparison.EQ).named("select_last")
    return rasp.Aggregate(sel, rasp.tokens).named("last_token")


def make_swap_first_last() -> rasp.SOp:
    """The input with its first and last tokens swapped.

    make_swap_first_last()(list("abcd")) == list("dbca")
    """
    length = lib.make_length()

    def target(i: int, n: int) -> int:
        if i == 0:
            return n - 1
        if i == n - 1:
            return 0
        return i

    src = rasp.SequenceMap(target, rasp.indices, length).named("swap_src")
    sel = rasp.Select(rasp.indices, src, rasp.Comparison.EQ).named("select_swap")
    return rasp.Aggregate(sel, rasp.tokens).named("swap_first_last")


def make_rotate_left() -> rasp.SOp:
    """tokens[(i + 1) mod n]: the input rotated left by one.

    ``% n`` is guarded for n == 0: length's value set includes 0 (a SelectorWidth's
    does), and Tracr builds a SequenceMap's table on every operand value, refusing
    one that raises. A real input never has length 0, so the guard changes nothing.
    make_rotate_left()(list("abcd")) == list("bcda")
    """
    length = lib.make_length()
    src = rasp.SequenceMap(lambda i, n: (i + 1) % n if n else 0, rasp.indices, length).named("rotate_src")
    sel = rasp.Select(rasp.indices, src, rasp.Comparison.EQ).named("select_rotate")
    return rasp.Aggregate(sel, rasp.tokens).named("rotate_left")


def make_copy_even() -> rasp.SOp:
    """tokens[i - i mod 2]: every odd position copies the even position before it.

    make_copy_even()(list("abcde")) == list("aacce")
    """
    sel = rasp.Select(rasp.indices, rasp.indices, lambda k, q: k == q - q % 2).named("select_even")
    return rasp.Aggregate(sel, rasp.tokens).named("copy_even")


def make_max_token() -> rasp.SOp:
    """The largest token, at every position (numeric tokens).

    A position holds the maximum when no token is larger; the Aggregate then
    selects every such position, and they all hold the same value.
    make_max_token()([2, 4, 1, 4]) == [4] * 4
    """
    n_larger = rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.GT)).named("n_larger")
    is_max = rasp.categorical(rasp.Map(lambda w: w == 0, n_larger)).named("is_max")
    sel = rasp.Select(is_max, is_max, lambda k, q: k).named("select_max")
    return rasp.Aggregate(sel, rasp.tokens).named("max_token")


def make_majority_token(max_seq_len: int) -> rasp.SOp:
    """The most frequent token at every position; ties go to the token that occurs first.

    Reads position 0 of ``make_sort_freq``.
    make_majority_token(4)([1, 2, 2, 1]) == [1] * 4
    """
    by_freq = lib.make_sort_freq(max_seq_len)
    return rasp.Aggregate(_select_first(), by_freq).named("majority_token")


def make_sort_desc(max_seq_len: int) -> rasp.SOp:
    """Numeric tokens sorted descending, repeats allowed (``make_sort`` on negated keys).

    make_sort_desc(5)([2, 4, 1, 2]) == [4, 2, 2, 1]
    """
    neg = rasp.Map(lambda x: -x, rasp.tokens).named("neg_tokens")
    return lib.make_sort(rasp.tokens, neg, max_seq_len=max_seq_len, min_key=1).named("sort_desc")


# ----------------------------------------------------------------------------- selector width


def make_count_other(token: Any) -> rasp.SOp:
    """How many positions hold a token other than ``token`` (same value everywhere).

    make_count_other("a")(list("abca")) == [2] * 4
    """
    sel = rasp.Select(rasp.tokens, rasp.tokens, lambda k, q: k != token).named(f"select_not_{token}")
    return rasp.SelectorWidth(sel).named(f"count_not_{token}")


def make_count_smaller() -> rasp.SOp:
    """How many tokens are smaller than tokens[i].

    make_count_smaller()([3, 1, 3, 2]) == [2, 0, 2, 1]
    """
    sel = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.LT).named("smaller")
    return rasp.SelectorWidth(sel).named("count_smaller")


def make_count_eq_first() -> rasp.SOp:
    """How many tokens equal the first token (same value everywhere).

    make_count_eq_first()(list("abaa")) == [3] * 4
    """
    first = rasp.Aggregate(_select_first(), rasp.tokens).named("first_token")
    sel = rasp.Select(rasp.tokens, first, rasp.Comparison.EQ).named("same_as_first")
    return rasp.SelectorWidth(sel).named("count_eq_first")


def make_occurrence_index() -> rasp.SOp:
    """How many earlier positions hold the same token as position i.

    make_occurrence_index()(list("abab")) == [0, 0, 1, 1]
    """
    pair = _token_index_pair()
    sel = rasp.Select(pair, pair, lambda k, q: k[0] == q[0] and k[1] < q[1]).named("same_before")
    return rasp.SelectorWidth(sel).named("occurrence_index")


def make_first_occurrence() -> rasp.SOp:
    """True at i iff tokens[i] does not occur before i.

    make_first_occurrence()(list("abab")) == [True, True, False, False]
    """
    pair = _token_index_pair()
    sel = rasp.Select(pair, pair, lambda k, q: k[0] == q[0] and k[1] < q[1]).named("same_before")
    n_before = rasp.SelectorWidth(sel).named("n_same_before")
    return rasp.Map(lambda w: w == 0, n_before).named("first_occurrence")


def make_last_occurrence() -> rasp.SOp:
    """True at i iff tokens[i] does not occur after i.

    make_last_occurrence()(list("abab")) == [False, False, True, True]
    """
    pair = _token_index_pair()
    sel = rasp.Select(pair, pair, lambda k, q: k[0] == q[0] and k[1] > q[1]).named("same_after")
    n_after = rasp.SelectorWidth(sel).named("n_same_after")
    return rasp.Map(lambda w: w == 0, n_after).named("last_occurrence")


def make_count_so_far(token: Any) -> rasp.SOp:
    """How many ``token`` occur in tokens[0..i] (a count, not a fraction).

    make_count_so_far("a")(list("abaa")) == [1, 1, 2, 3]
    """
    pair = _token_index_pair()
    sel = rasp.Select(pair, pair, lambda k, q: k[0] == token and k[1] <= q[1]).named(f"{token}_so_far")
    return rasp.SelectorWidth(sel).named(f"count_{token}_so_far")


def make_freq_class() -> rasp.SOp:
    """How common tokens[i] is: 'rare' (once), 'mid' (twice) or 'common' (3+ times).

    make_freq_class()(list("aabaa")) == ["common", "common", "rare", "common", "common"]
    """
    hist = lib.make_hist()
    return rasp.Map(lambda h: "rare" if h <= 1 else ("mid" if h == 2 else "common"), hist).named("freq_class")


# ----------------------------------------------------------------------------- sequence maps


def make_map_inc_mod(k: int) -> rasp.SOp:
    """(tokens[i] + 1) mod k (a categorical MLP).

    make_map_inc_mod(4)([0, 3, 2]) == [1, 0, 3]
    """
    return rasp.Map(lambda x: (x + 1) % k, rasp.tokens).named(f"inc_mod{k}")


def make_double() -> rasp.SOp:
    """2 * tokens[i] as a number (categorical -> numerical MLP).

    make_double()([1, 3]) == [2, 6]
    """
    return rasp.numerical(rasp.Map(lambda x: 2 * x, rasp.tokens)).named("double")


def make_flag_at_even(token: Any) -> rasp.SOp:
    """True at i iff tokens[i] == ``token`` and i is even (a SequenceMap of tokens and indices).

    make_flag_at_even("a")(list("aaba")) == [True, False, False, False]
    """
    return rasp.SequenceMap(lambda t, i: t == token and i % 2 == 0, rasp.tokens, rasp.indices).named(f"{token}_at_even")


def _prev_token() -> rasp.SOp:
    return lib.shift_by(1, rasp.tokens).named("prev_token")


def make_trend() -> rasp.SOp:
    """'up', 'down' or 'same': tokens[i] against tokens[i-1] (None at position 0).

    make_trend()([1, 3, 3, 2]) == [None, "up", "same", "down"]
    """

    def trend(x: Any, p: Any) -> Any:
        if x is None or p is None:
            return None
        return "up" if x > p else ("down" if x < p else "same")

    return rasp.SequenceMap(trend, rasp.tokens, _prev_token()).named("trend")


def make_eq_prev() -> rasp.SOp:
    """True at i iff tokens[i] == tokens[i-1] (None at position 0).

    make_eq_prev()(list("aab")) == [None, True, False]
    """
    return rasp.SequenceMap(lambda x, p: x == p, rasp.tokens, _prev_token()).named("eq_prev")


def make_sum_prev() -> rasp.SOp:
    """tokens[i] + tokens[i-1] (None at position 0).

    make_sum_prev()([1, 2, 3]) == [None, 3, 5]
    """

    def add(x: Any, p: Any) -> Any:
        return None if x is None or p is None else x + p

    return rasp.SequenceMap(add, rasp.tokens, _prev_token()).named("sum_prev")


def make_detect(pattern: Sequence[Any]) -> rasp.SOp:
    """Tracr's ``detect_pattern`` on the tokens."""
    return lib.detect_pattern(rasp.tokens, pattern)


__all__ = [
    "make_balanced_prefix",
    "make_copy_even",
    "make_count_eq_first",
    "make_count_other",
    "make_count_smaller",
    "make_count_so_far",
    "make_detect",
    "make_double",
    "make_eq_prev",
    "make_first_index_of",
    "make_first_occurrence",
    "make_first_token",
    "make_flag_at_even",
    "make_frac_token",
    "make_freq_class",
    "make_is_sorted",
    "make_last_occurrence",
    "make_last_token",
    "make_majority",
    "make_majority_token",
    "make_map_inc_mod",
    "make_max_token",
    "make_mean_so_far",
    "make_next_token",
    "make_occurrence_index",
    "make_palindrome",
    "make_rotate_left",
    "make_running_max",
    "make_running_min",
    "make_shift_by",
    "make_sort_desc",
    "make_sum_prev",
    "make_swap_first_last",
    "make_trend",
]

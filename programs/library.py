"""Program constructors: the usual Tracr ``lib`` programs, written against ``programs.rasp``.

Every constructor builds a *fresh* expression graph on each call (Tracr's lib
shares one module-level ``length``; here each program gets its own), so two
programs never share nodes and a program's labels depend only on its own
construction. Names given with ``.named`` are Tracr's, because the reference
data, the compiler's residual labels and the ground-truth circuits all speak
in those names (``length``, ``opp_idx``, ``opp_idx-1``, ``reverse_selector``,
...).

Selector predicates are called as ``predicate(key, query)`` (Tracr's order).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from edgeprune.programs import rasp

# ----------------------------------------------------------------------------- non-causal programs


def make_length() -> rasp.SOp:
    """``length``: every position holds the sequence length, via SelectorWidth of an all-true selector.

    make_length()("abcd") == [4, 4, 4, 4]
    """
    all_true_selector = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE).named("all_true_selector")
    return rasp.SelectorWidth(all_true_selector).named("length")


def make_reverse(sop: rasp.SOp) -> rasp.SOp:
    """``sop`` reversed: position i reads position ``length - i - 1``.

    make_reverse(tokens)([1, 2, 3]) == [3, 2, 1]
    """
    length = make_length()
    opp_idx = (length - rasp.indices).named("opp_idx")
    opp_idx = (opp_idx - 1).named("opp_idx-1")
    reverse_selector = rasp.Select(rasp.indices, opp_idx, rasp.Comparison.EQ).named("reverse_selector")
    return rasp.Aggregate(reverse_selector, sop).named("reverse")


def make_pair_balance(sop: rasp.SOp, open_token: Any, close_token: Any) -> rasp.SOp:
    """Fraction of ``open_token`` minus fraction of ``close_token`` in each prefix (numerical).

    make_pair_balance(tokens, "(", ")")(list("(()")) == [1, 1, 1/3]
    """
    bools_open = rasp.numerical(sop == open_token).named("bools_open")
    opens = rasp.numerical(make_frac_prevs(bools_open)).named("opens")
    bools_close = rasp.numerical(sop == close_token).named("bools_close")
    closes = rasp.numerical(make_frac_prevs(bools_close)).named("closes")
    pair_balance = rasp.numerical(rasp.LinearSequenceMap(opens, closes, 1, -1))
    return pair_balance.named("pair_balance")


def make_shuffle_dyck(pairs: Sequence[str]) -> rasp.SOp:
    """1 at every position when each bracket pair is balanced (shuffle-Dyck), else 0.

    Balanced means: no prefix has more closes than opens of any pair, and the
    whole sequence has as many closes as opens of every pair. ``pairs`` is a
    list of two-character strings such as ``["()", "{}"]``.

    make_shuffle_dyck(["()"])(list("()")) == [True, True]
    """
    if len(pairs) < 1:
        raise ValueError("make_shuffle_dyck needs at least one bracket pair, e.g. ['()']")
    balances = []
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(f"bracket pair {pair!r} must be two characters, an open and a close token")
        open_token, close_token = pair[0], pair[1]
        balance = make_pair_balance(rasp.tokens, open_token=open_token, close_token=close_token)
        balances.append(balance.named(f"balance_{pair}"))

    # Negative balance anywhere: a close came before its open.
    any_negative = balances[0] < 0
    for balance in balances[1:]:
        any_negative = any_negative | (balance < 0)
    any_negative = rasp.numerical(rasp.Map(lambda x: x, any_negative)).named("any_negative")

    select_all = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.TRUE).named("select_all")
    has_neg = rasp.numerical(rasp.Aggregate(select_all, any_negative, default=0)).named("has_neg")

    # Every balance zero at the last position: all brackets closed.
    all_zero = balances[0] == 0
    for balance in balances[1:]:
        all_zero = all_zero & (balance == 0)

    length = make_length()
    select_last = rasp.Select(rasp.indices, length - 1, rasp.Comparison.EQ).named("select_last")
    last_zero = rasp.Aggregate(select_last, all_zero).named("last_zero")

    not_has_neg = (~has_neg).named("not_has_neg")
    return (last_zero & not_has_neg).named("shuffle_dyck")


def make_shuffle_dyck2() -> rasp.SOp:
    """Shuffle-Dyck with the two pairs ``()`` and ``{}``."""
    return make_shuffle_dyck(pairs=["()", "{}"]).named("shuffle_dyck2")


def make_hist() -> rasp.SOp:
    """How often each position's token occurs in the whole input.

    make_hist()(list("abac")) == [2, 1, 2, 1]
    """
    same_tok = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ).named("same_tok")
    return rasp.SelectorWidth(same_tok).named("hist")


def make_sort_unique(vals: rasp.SOp, keys: rasp.SOp) -> rasp.SOp:
    """``vals`` ordered by ascending ``keys``; correct only when the keys are pairwise distinct.

    Position p receives the value whose key has exactly p smaller keys.
    make_sort_unique(tokens, tokens)([2, 4, 3, 1]) == [1, 2, 3, 4]
    """
    smaller = rasp.Select(keys, keys, rasp.Comparison.LT).named("smaller")
    target_pos = rasp.SelectorWidth(smaller).named("target_pos")
    sel_new = rasp.Select(target_pos, rasp.indices, rasp.Comparison.EQ)
    return rasp.Aggregate(sel_new, vals).named("sort")


def make_sort(vals: rasp.SOp, keys: rasp.SOp, *, max_seq_len: int, min_key: float) -> rasp.SOp:
    """``vals`` sorted by ``keys`` that may repeat; ties keep input order.

    Keys are made unique as ``key + min_key * i / max_seq_len`` (numbers only),
    which never reorders distinct keys when ``min_key`` is the smallest key gap.
    make_sort(tokens, tokens, max_seq_len=5, min_key=1)([2, 4, 1, 2]) == [1, 2, 2, 4]
    """
    keys = rasp.SequenceMap(lambda x, i: x + min_key * i / max_seq_len, keys, rasp.indices)
    return make_sort_unique(vals, keys)


def make_sort_freq(max_seq_len: int) -> rasp.SOp:
    """Tokens sorted by descending frequency; equally frequent tokens keep input order.

    make_sort_freq(5)([2, 4, 2, 1]) == [2, 2, 4, 1]
    """
    hist = -1 * make_hist().named("hist")
    return make_sort(rasp.tokens, hist, max_seq_len=max_seq_len, min_key=1).named("sort_freq")


# ----------------------------------------------------------------------------- causal and non-causal


def make_frac_prevs(bools: rasp.SOp) -> rasp.SOp:
    """Fraction of positions j <= i where ``bools`` is true (numerical).

    make_frac_prevs(tokens == "l")(list("hello")) == [0, 0, 1/3, 1/2, 2/5]

    Note: ``bools`` is annotated numerical in place (``programs.rasp.annotate``
    mutates), so pass a fresh SOp such as ``tokens == "x"``, never
    ``rasp.tokens`` itself.
    """
    bools = rasp.numerical(bools)
    prevs = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ)
    return rasp.numerical(rasp.Aggregate(prevs, bools, default=0)).named("frac_prevs")


def shift_by(offset: int, /, sop: rasp.SOp) -> rasp.SOp:
    """``sop`` shifted right by ``offset`` positions; the first ``offset`` positions are None.

    shift_by(1, tokens)(list("abcd")) == [None, "a", "b", "c"]
    """
    select_off_by_offset = rasp.Select(rasp.indices, rasp.indices, lambda k, q: q == k + offset)
    out = rasp.Aggregate(select_off_by_offset, sop, default=None)
    return out.named(f"shift_by({offset})")


def detect_pattern(sop: rasp.SOp, pattern: Sequence[Any]) -> rasp.SOp:
    """True at the last position of each occurrence of ``pattern``; the first len-1 positions are None.

    detect_pattern(tokens, "abc")(list("abcabc")) == [None, None, True, False, False, True]
    """
    if len(pattern) < 1:
        raise ValueError(f"detect_pattern needs a pattern of at least one element, got {pattern!r}")
    # detectors[i] is true at position j iff pattern[-1 - i] sits at position j - i.
    detectors = []
    for i, element in enumerate(reversed(pattern)):
        detector = sop == element
        if i != 0:
            detector = shift_by(i, detector)
        detectors.append(detector)
    pattern_detected = detectors.pop()
    while detectors:
        pattern_detected = pattern_detected & detectors.pop()
    return pattern_detected.named(f"detect_pattern({pattern})")


def make_count_less_freq(n: int) -> rasp.SOp:
    """How many positions hold a token that occurs at most ``n`` times (same value everywhere).

    make_count_less_freq(2)(list("aaabbc")) == [3] * 6
    """
    hist = make_hist().named("hist")
    select_less = rasp.Select(hist, hist, lambda x, y: x <= n).named("select_less")
    return rasp.SelectorWidth(select_less).named("count_less_freq")


def make_count(sop: rasp.SOp, token: Any) -> rasp.SOp:
    """How many positions of ``sop`` equal ``token`` (same value everywhere).

    make_count(tokens, "a")(list("caba")) == [2, 2, 2, 2]
    """
    return rasp.SelectorWidth(rasp.Select(sop, sop, lambda k, q: k == token)).named(f"count_{token}")


def make_nary_sequencemap(f: Callable[..., Any], *sops: rasp.SOp) -> rasp.SOp:
    """``f(x_1, ..., x_n)`` position-wise, from binary SequenceMaps building tuples and a final Map.

    The intermediate tuple SOps are categorical over the product of the value
    sets, so compiled models grow quickly with n.
    make_nary_sequencemap(lambda x, y, z: x + y - z, tokens, tokens, indices)([1, 2, 3]) == [2, 3, 4]
    """
    if not sops:
        raise ValueError("make_nary_sequencemap needs at least one SOp")
    values, *rest = sops
    if not rest:
        return rasp.Map(f, values)
    for sop in rest:
        # the first step pairs two plain values; later steps extend a tuple
        values = rasp.SequenceMap(lambda x, y: (*x, y) if isinstance(x, tuple) else (x, y), values, sop)
    return rasp.Map(lambda args: f(*args), values)


__all__ = [
    "detect_pattern",
    "make_count",
    "make_count_less_freq",
    "make_frac_prevs",
    "make_hist",
    "make_length",
    "make_nary_sequencemap",
    "make_pair_balance",
    "make_reverse",
    "make_shuffle_dyck",
    "make_shuffle_dyck2",
    "make_sort",
    "make_sort_freq",
    "make_sort_unique",
    "shift_by",
]

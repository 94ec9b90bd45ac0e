"""Programs the compiler cannot handle fail with a CompileError that names the problem and the fix."""

from __future__ import annotations

import pytest

from edgeprune.compiled.compiler import compile_program
from edgeprune.core.errors import CompileError, EdgePruneError
from edgeprune.programs import library as lib
from edgeprune.programs import rasp

VOCAB = {1, 2, 3}


def _compile(program, vocab=VOCAB, max_seq_len=4, **kw):
    return compile_program(program, vocab, max_seq_len, **kw)


def _raises(program, *needles, **kw) -> str:
    with pytest.raises(CompileError) as info:
        _compile(program, **kw)
    msg = str(info.value)
    for n in needles:
        assert n in msg, msg
    return msg


def test_compile_error_is_a_user_error():
    assert issubclass(CompileError, EdgePruneError) and issubclass(CompileError, ValueError)


def test_numerical_aggregate_of_a_categorical_sop():
    sel = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ)
    bools = rasp.Map(lambda x: x == 1, rasp.tokens)  # categorical
    prog = rasp.numerical(rasp.Aggregate(sel, bools, default=0))
    _raises(prog, "numerical Aggregate", "categorical SOp", "rasp.numerical")


def test_categorical_aggregate_of_a_numerical_sop():
    sel = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.EQ)
    num = rasp.numerical(rasp.Map(lambda x: x, rasp.tokens))
    _raises(rasp.Aggregate(sel, num), "categorical Aggregate", "numerical SOp")


def test_numerical_mean_of_a_non_binary_sop():
    sel = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ)
    prog = rasp.numerical(rasp.Aggregate(sel, rasp.numerical(rasp.Map(lambda x: x * 2, rasp.tokens)), default=0))
    _raises(prog, "0/1")


def test_aggregate_defaults():
    sel = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.EQ)
    _raises(rasp.Aggregate(sel, rasp.tokens, default=1), "default=None")
    num = rasp.numerical(rasp.Map(lambda x: x == 1, rasp.tokens))
    _raises(rasp.numerical(rasp.Aggregate(sel, num, default=1)), "default=0")


def test_custom_predicate_that_cannot_be_evaluated_on_the_value_sets():
    # keys are strings, queries are ints: '<' between them raises TypeError.
    sel = rasp.Select(rasp.tokens, rasp.indices, lambda k, q: k < q)
    _raises(rasp.Aggregate(sel, rasp.tokens), "predicate", "TypeError", vocab={"a", "b"})


def test_custom_predicate_that_works_compiles():
    sel = rasp.Select(rasp.tokens, rasp.indices, lambda k, q: (k + q) % 2 == 0 and k <= q)
    model = _compile(rasp.SelectorWidth(sel))
    assert model.metadata.node(sel.label).predicate == "custom"


def test_function_failing_on_a_reachable_value():
    _raises(rasp.Map(lambda x: x.upper(), rasp.tokens), "AttributeError", "value sets")


def test_numerical_map_with_non_numeric_values():
    prog = rasp.numerical(rasp.Map(lambda x: f"v{x}", rasp.tokens))
    _raises(prog, "numerical SOp", "non-numeric", "rasp.categorical")


def test_numerical_select_keys_or_queries():
    num = rasp.numerical(rasp.Map(lambda x: x, rasp.tokens))
    sel = rasp.Select(num, rasp.tokens, rasp.Comparison.EQ)
    _raises(rasp.SelectorWidth(sel), "numerical keys", "categorical")
    sel2 = rasp.Select(rasp.tokens, num, rasp.Comparison.EQ)
    _raises(rasp.SelectorWidth(sel2), "numerical queries")


def test_numerical_tokens():
    # rasp.numerical annotates in place (as in Tracr), so restore the shared tokens SOp afterwards.
    try:
        _raises(rasp.Map(lambda x: x, rasp.numerical(rasp.tokens)), "categorical")
    finally:
        rasp.categorical(rasp.tokens)


def test_sequence_map_with_numerical_operand():
    num = rasp.numerical(rasp.Map(lambda x: x, rasp.tokens))
    _raises(rasp.SequenceMap(lambda x, y: x + y, num, rasp.indices), "SequenceMap", "LinearSequenceMap")


def test_linear_sequence_map_with_categorical_operand():
    _raises(rasp.LinearSequenceMap(rasp.tokens, rasp.indices, 1, 1), "LinearSequenceMap", "rasp.numerical")


def test_composite_selector():
    a = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)
    b = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ)
    _raises(rasp.SelectorWidth(a & b), "composite selector")
    _raises(rasp.Aggregate(~(a | b), rasp.tokens), "composite selector")


def test_unsupported_sops():
    _raises(rasp.SequenceMap(lambda x, y: x, rasp.tokens, rasp.length), "make_length")
    _raises(rasp.SequenceMap(lambda x, y: x, rasp.tokens, rasp.Full(1)), "cannot be compiled")
    _raises(rasp.SequenceMap(lambda x, y: x, rasp.tokens, rasp.ConstantSOp([1, 2])), "cannot be compiled")


def test_empty_value_set():
    _raises(rasp.Map(lambda x: None, rasp.tokens), "empty value set")
    _raises(rasp.Map(lambda x: 1 / 0, rasp.tokens), "empty value set")
    _raises(rasp.Map(lambda x: x, rasp.tokens), "vocab is empty", vocab=set())


def test_too_many_layers():
    prog = lib.make_reverse(rasp.tokens)  # needs 4 layers
    msg = _raises(prog, "needs 4 layers", "max_layers=2", max_layers=2)
    assert "raise max_layers" in msg
    assert _compile(lib.make_reverse(rasp.tokens), max_layers=4).config.n_layers == 4


def test_program_without_tokens_or_operations():
    _raises(rasp.Map(lambda x: x + 1, rasp.indices), "rasp.tokens")
    _raises(rasp.tokens, "computes nothing")


def test_not_an_sop():
    _raises(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ), "must be an SOp")


def test_bad_compiler_arguments():
    _raises(rasp.tokens + 1, "compiler_bos", vocab={1, "BOS"})
    _raises(rasp.tokens + 1, "compiler_pad", vocab={1, "compiler_pad"})
    _raises(rasp.tokens + 1, "max_seq_len", max_seq_len=0)


def test_duplicate_labels():
    a = rasp.Map(lambda x: x + 1, rasp.tokens).named("same")
    b = rasp.Map(lambda x: x + 2, rasp.tokens).named("same")
    a._unique_id = b._unique_id = 10**9  # force a clash, as two programs built from reset counters could
    _raises(rasp.SequenceMap(lambda x, y: x + y, a, b), "share the label")


def test_arithmetic_error_in_a_categorical_lookup_table():
    # value sets drop arithmetic errors, but the MLP table of a categorical operand covers every value (Tracr)
    length = lib.make_length()  # its value set includes 0
    src = rasp.SequenceMap(lambda i, n: (i + 1) % n, rasp.indices, length)
    _raises(
        rasp.Aggregate(rasp.Select(rasp.indices, src, rasp.Comparison.EQ), rasp.tokens),
        "SequenceMap",
        "ZeroDivisionError",
        "(0, 0)",
        "if n else 0",
    )
    _raises(rasp.Map(lambda x: 6 // (x - 1), rasp.tokens), "categorical Map", "ZeroDivisionError", "on 1")
    _raises(rasp.numerical(rasp.Map(lambda x: 6 / (x - 1), rasp.tokens)), "numerical Map", "ZeroDivisionError")
    _raises(rasp.numerical(rasp.Map(lambda x: None if x == 1 else x, rasp.tokens)), "returns None on 1")


def test_arithmetic_error_on_a_numerical_operand_is_dropped():
    # a numerical Map's discretising MLP skips the values where f fails (as Tracr's does)
    shifted = rasp.numerical(rasp.Map(lambda x: x - 1, rasp.tokens))
    model = _compile(rasp.numerical(rasp.Map(lambda x: 1 / x, shifted, simplify=False)))  # 1 / 0 dropped
    assert model.run([[2, 3]])[0] == pytest.approx([1.0, 0.5], abs=1e-3)


def test_numerical_mean_of_a_constant_compiles():
    sel = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ)
    for c in (0, 1):
        prog = rasp.numerical(rasp.Aggregate(sel, rasp.numerical(rasp.Map(lambda x, c=c: c, rasp.tokens)), default=0))
        assert _compile(prog).run([[1, 2, 3]])[0] == pytest.approx([c] * 3, abs=1e-3)

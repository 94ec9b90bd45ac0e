"""Task dataset builders, offline: tokenizers are built locally with the `tokenizers` library."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")
from transformers import PreTrainedTokenizerFast  # noqa: E402

from edgeprune.core.errors import EdgePruneError  # noqa: E402
from edgeprune.pruning.tasks import TASK_NAMES, build_task, encode_examples, greater_than, vocab  # noqa: E402  # noqa: E402
from edgeprune.pruning.tasks import boolean_expressions as be  # noqa: E402
from edgeprune.pruning.tasks.base import TaskExample  # noqa: E402
from tests.hf_helpers import bpe_tokenizer, task_tokenizer  # noqa: E402

# ----------------------------------------------------------------------------------------------
# local tokenizers


@pytest.fixture(scope="module")
def word_tok() -> PreTrainedTokenizerFast:
    """Word-level tokenizer over the template tasks' own vocabulary (every name is one token)."""
    return task_tokenizer()


@pytest.fixture(scope="module")
def bpe_tok() -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on a few sentences, so rare words split into several tokens."""
    return bpe_tokenizer()


# ----------------------------------------------------------------------------------------------
# generated tasks


@pytest.mark.parametrize("name", TASK_NAMES)
def test_splits_sized_disjoint_and_seeded(name: str, word_tok) -> None:
    ds = build_task(name, word_tok, n=(6, 4, 5), seed=3)
    assert [len(ds.train), len(ds.validation), len(ds.test)] == [6, 4, 5]
    texts = [set(e.clean for e in ds.splits[s]) for s in ("train", "validation", "test")]
    assert sum(map(len, texts)) == 15  # unique within and across splits
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    assert all(e.split == s for s in ds.splits for e in ds.splits[s])
    again = build_task(name, word_tok, n=(6, 4, 5), seed=3)
    assert [e.clean for e in again.train] == [e.clean for e in ds.train]
    other = build_task(name, word_tok, n=(6, 4, 5), seed=4)
    assert [e.clean for e in other.train] != [e.clean for e in ds.train]


@pytest.mark.parametrize("name", TASK_NAMES)
def test_batches_same_length_and_loss_at_answer(name: str, word_tok) -> None:
    ds = build_task(name, word_tok, n=8, seed=0)
    b = ds.batch("validation")
    assert b.clean_ids.shape == b.corrupted_ids.shape
    assert not bool((b.clean_ids == word_tok.unk_token_id).any())
    lengths = b.attention_mask.sum(-1)
    for i, ex in enumerate(ds.validation):
        n = int(lengths[i])
        assert b.attention_mask[i, :n].all() and not b.attention_mask[i, n:].any()  # right padding
        assert (b.clean_ids[i, n:] == word_tok.pad_token_id).all()
        pos = b.loss_mask[i].nonzero().flatten().tolist()
        assert pos and pos[0] == int(b.positions[i])
        if ex.clean_answer:  # the position predicts the answer's token(s)
            answer_ids = word_tok(ex.clean_answer, add_special_tokens=False)["input_ids"]
            assert [int(b.clean_ids[i, p + 1]) for p in pos] == answer_ids
            assert [int(b.labels[i, p]) for p in pos] == answer_ids
            assert int(b.target_ids[i]) == answer_ids[0]
            assert pos[-1] == n - 2
        else:  # Greater-Than: last prompt token
            assert pos == [n - 1]
        assert int((b.labels[i] != -100).sum()) == (len(pos) if ex.clean_answer else 0)


def test_ioi_structure(word_tok) -> None:
    ds = build_task("ioi", word_tok, n=30, seed=1)
    templates_seen = set()
    for ex in ds.train + ds.validation:
        io = ex.clean_answer.strip()
        s = ex.distractor.strip()
        assert io != s and io in vocab.NAMES and s in vocab.NAMES
        words = ex.clean_prompt.replace(",", " ").replace(".", " ").split()
        assert words.count(io) == 1 and words.count(s) == 2  # IO once, subject twice before the answer
        c_words = ex.corrupted_prompt.replace(",", " ").replace(".", " ").split()
        names = [w for w in c_words if w in vocab.NAMES]
        assert len(names) == 3 and len(set(names)) == 3  # ABC corruption
        templates_seen.add(len(words))
        order_baba = words.index(s) < words.index(io)
        templates_seen.add("BABA" if order_baba else "ABBA")
    assert {"BABA", "ABBA"} <= templates_seen
    t1 = build_task("ioi-t1", word_tok, n=10, seed=1)
    assert all(e.clean_prompt.startswith("Friends ") and e.clean_prompt.endswith(" gave it to") for e in t1.test)


def test_greater_than(word_tok) -> None:
    ds = build_task("gt", word_tok, n=10, seed=2)
    b = ds.batch("train")
    assert b.class_ids is not None and b.class_ids.shape == (100,)
    assert word_tok.convert_ids_to_tokens(b.class_ids[[0, 7, 99]].tolist()) == ["00", "07", "99"]
    for i, ex in enumerate(ds.train):
        yy = ex.label
        assert 2 <= yy <= 98 and int(b.class_labels[i]) == yy
        assert f"{yy:02d} " in ex.clean_prompt and "01 " in ex.corrupted_prompt
        assert ex.clean_prompt.replace(f"{yy:02d} ", "01 ", 1) == ex.corrupted_prompt
        n = int(b.attention_mask[i].sum())
        century = ex.clean_prompt.split()[-1]
        assert word_tok.convert_ids_to_tokens(int(b.clean_ids[i, n - 1])) == century
    fixed = greater_than.build(word_tok, n=5, seed=0, century=17)
    assert all(e.clean_prompt.endswith("the year 17") for e in fixed.train)


def test_gendered_pronoun(word_tok) -> None:
    ds = build_task("gp", word_tok, n=20, seed=0)
    for ex in ds.train:
        name = ex.clean_prompt.split()[1]
        male = name in vocab.MALE_NAMES
        assert ex.clean_answer == (" he" if male else " she")
        assert ex.distractor == ex.corrupted_answer == (" she" if male else " he")
        assert ex.corrupted_prompt.split()[1] in (vocab.FEMALE_NAMES if male else vocab.MALE_NAMES)
    b = ds.batch("train")
    assert (b.target_ids != b.distractor_ids).all()


# ----------------------------------------------------------------------------------------------
# boolean expressions


@pytest.mark.parametrize(
    "text, expected",
    [
        ("True and False", False),
        ("not True or True", True),
        ("not (True or True)", False),
        ("((not not True) and False) or True", True),  # the paper's Appendix E instance
        ("(True and False) or (False and True)", False),
        ("(True or (not True)) and False", False),
        ("(not (True and False)) or (False and True)", True),
        ("True or False and False", True),  # and binds tighter than or
        ("not False and not not False", False),
        ("(False or (True and (not False))) and not (False or False)", True),
    ],
)
def test_boolean_evaluates_hand_worked(text: str, expected: bool) -> None:
    assert be.evaluate(text) is expected


def test_boolean_malformed() -> None:
    for bad in ["True and", "(True or False", "True False", "maybe"]:
        with pytest.raises(EdgePruneError):
            be.evaluate(bad)


def test_boolean_generator_constraints() -> None:
    rng = random.Random(0)
    for _ in range(300):
        e = be.sample_expression(rng)
        text = be.render(e)
        n_lit = sum(tok in ("True", "False") for tok in be._tokens(text))
        assert 3 <= n_lit <= 6
        assert be.paren_depth(text) <= 3 and be.max_consecutive_nots(text) <= 2
        assert be.evaluate(text) == be.value(e)
        assert be.evaluate(text) == eval(text)  # Python agrees (test-only cross-check on our own strings)
        for cand in be.corruption_candidates(e)[:5]:
            assert be.value(cand) != be.value(e)


def test_boolean_prompts(word_tok) -> None:
    ip = build_task("boolean-ip", word_tok, n=5, seed=0)
    fs = build_task("boolean-fs", word_tok, n=5, seed=0)
    for ex in ip.train:
        assert ex.clean_prompt.startswith("[INST] <<SYS>>\nEvaluate the following boolean expression")
        assert ex.clean_prompt.endswith(" [/INST] '")
        assert ex.clean_answer in ("True", "False")
        assert ex.corrupted_answer != ex.clean_answer  # the corruption flips the answer
        expr = ex.clean_prompt.split("\n\n")[1][: -len(" [/INST] '")]
        assert be.evaluate(expr) == (ex.clean_answer == "True") == bool(ex.label)
    for ex in fs.train:
        assert ex.clean_prompt.count("[INST]") == 4 and ex.clean_prompt.endswith(" is [/INST]")
        assert ex.clean_answer in (" True", " False") and ex.corrupted_answer != ex.clean_answer


# ----------------------------------------------------------------------------------------------
# custom JSONL and errors


def _write(tmp_path: Path, rows: list, name: str = "task.jsonl") -> Path:
    p = tmp_path / name
    p.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return p


def test_custom_jsonl(tmp_path: Path, bpe_tok) -> None:
    path = _write(
        tmp_path,
        [
            {"clean": "1 + 2 = <predict>3</predict>", "corrupted": "1 + 5 = <predict>6</predict>"},
            {
                "clean": "2 + 2 = <predict>4</predict>",
                "corrupted": "5 + 1 = <predict>6</predict>",
                "split": "validation",
            },
            {
                "clean": "The cat sat on the<predict> mat</predict>",
                "corrupted": "The dog sat on the<predict> mat</predict>",
                "split": "test",
            },
        ],
    )
    ds = build_task(str(path), bpe_tok)
    assert [len(ds.train), len(ds.validation), len(ds.test)] == [1, 1, 1]
    assert ds.train[0].clean_prompt == "1 + 2 = " and ds.train[0].clean_answer == "3"
    assert ds.train[0].source.endswith("task.jsonl:1")
    for split in ("train", "validation", "test"):
        b = ds.batch(split)
        ex = ds.splits[split][0]
        full = bpe_tok(ex.clean)["input_ids"]
        pos = b.loss_mask[0].nonzero().flatten().tolist()
        # The positions predicting the tokens covering the span: GPT-2-style " 3" although the space
        # belongs to the prompt text.
        assert pos == list(range(pos[0], len(full) - 1))
        assert bpe_tok.decode(b.clean_ids[0, pos[0] + 1 : pos[-1] + 2].tolist()).strip() == ex.clean_answer.strip()
        assert bpe_tok.decode(b.clean_ids[0, : pos[0] + 1].tolist()).strip() == ex.clean_prompt.strip()
        assert b.clean_ids[0, : len(full)].tolist() == full
    # Without split fields, train lines are reused for validation/test (the reference's custom setup).
    row = {"clean": "1 + 2 = <predict>3</predict>", "corrupted": "1 + 5 = <predict>6</predict>"}
    plain = _write(tmp_path, [row], "p.jsonl")
    ds2 = build_task(plain, bpe_tok)
    assert ds2.validation == ds2.train and ds2.notes


def test_multi_token_answer_scores_all_positions(bpe_tok) -> None:
    ex = TaskExample("The cat sat on the", " zebra", "The dog sat on the", " zebra")
    answer = bpe_tok(" zebra", add_special_tokens=False)["input_ids"]
    assert len(answer) > 1  # unseen word: several byte-level tokens
    b = encode_examples([ex], bpe_tok)
    pos = b.loss_mask[0].nonzero().flatten().tolist()
    assert len(pos) == len(answer)
    assert [int(b.labels[0, p]) for p in pos] == answer
    assert int(b.target_ids[0]) == answer[0]


@pytest.mark.parametrize(
    "row, needle",
    [
        ({"clean": "1 + 2 = 3", "corrupted": "1 + 5 = 6"}, "no <predict>"),
        ({"clean": "1 + 2 = <predict>3", "corrupted": "1 + 5 = 6"}, "unclosed"),
        ({"clean": "1 + 2 = <predict>3</predict> done", "corrupted": "1 + 5 = 6"}, "after </predict>"),
        ({"clean": "<predict>1</predict> + <predict>2</predict>", "corrupted": "x"}, "2 <predict> spans"),
        ({"clean": "1 + 2 = <predict></predict>", "corrupted": "1 + 5 = 6"}, "empty"),
        ({"clean": "1 + 2 = <predict>3</predict>"}, '"corrupted"'),
        ({"clean": "1 + 2 = <predict>3</predict>", "corrupted": "1 = <predict>1</predict>", "split": "dev2"}, "split"),
        ("{not json", "not valid JSON"),
    ],
)
def test_custom_jsonl_errors_name_the_line(tmp_path: Path, row, needle: str) -> None:
    good = {"clean": "1 + 2 = <predict>3</predict>", "corrupted": "1 + 5 = <predict>6</predict>"}
    path = _write(tmp_path, [good, row])
    with pytest.raises(EdgePruneError) as err:
        build_task(path)
    assert needle in str(err.value) and "task.jsonl:2" in str(err.value)


def test_different_lengths_refused(tmp_path: Path, bpe_tok) -> None:
    path = _write(
        tmp_path,
        [
            {
                "clean": "The cat sat on the<predict> mat</predict>",
                "corrupted": "The hippopotamus sat on the<predict> mat</predict>",
            }
        ],
    )
    ds = build_task(path, bpe_tok)
    with pytest.raises(EdgePruneError) as err:
        ds.batch("train")
    msg = str(err.value)
    assert "task.jsonl:1" in msg and "same number of tokens" in msg and "tokens but corrupted" in msg


def test_answer_merging_into_prompt_refused(bpe_tok) -> None:
    # "ca" + "t" merges into the token "cat": the answer has no token boundary of its own.
    ex = TaskExample("The ca", "t", "The ca", "t")
    with pytest.raises(EdgePruneError, match="does not tokenize separately"):
        encode_examples([ex], bpe_tok)


def test_other_errors(word_tok, tmp_path: Path) -> None:
    with pytest.raises(EdgePruneError, match="unknown task"):
        build_task("nope", word_tok)
    with pytest.raises(EdgePruneError, match="does not exist"):
        build_task(tmp_path / "missing.jsonl", word_tok)
    with pytest.raises(EdgePruneError, match="distinct"):
        build_task("gp", word_tok, n=1000)  # more than the name lists allow
    ds = build_task("ioi-t1", word_tok, n=2)
    with pytest.raises(EdgePruneError, match="max_length"):
        ds.batch("train", max_length=3)
    with pytest.raises(EdgePruneError, match="unknown split"):
        ds.batch("dev")


def test_batch_select_and_minibatches(word_tok) -> None:
    b = build_task("ioi", word_tok, n=5, seed=0).batch("train")
    parts = list(b.minibatches(2))
    assert [len(p) for p in parts] == [2, 2, 1]
    assert torch.equal(torch.cat([p.clean_ids for p in parts]), b.clean_ids)
    assert parts[1].examples == b.examples[2:4]


# ----------------------------------------------------------------------------------------------
# bad task files: one message naming the file, line and fix (issue 15)

GOOD = {"clean": "1 + 2 = <predict>3</predict>", "corrupted": "1 + 5 = <predict>6</predict>"}


def test_non_utf8_task_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "task.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b"\n" + b'{"clean": "caf\xe9 <predict>3</predict>"}\n')
    with pytest.raises(
        EdgePruneError, match=r"task.jsonl:2: byte 0xe9 at column 15 is not UTF-8.*save the task file as UTF-8"
    ):
        build_task(path)


@pytest.mark.parametrize(
    "row, needle",
    [
        ({"corrupted": "1 + 5 = <predict>6</predict>"}, 'the field "clean" is missing'),
        ({"clean": "1 + 2 = <predict>3</predict>"}, 'the field "corrupted" is missing'),
        ({"clean": 3, "corrupted": "x"}, 'the field "clean" must be a string, not int'),
        ({**GOOD, "split": 1}, '"split" must be a string'),
        ('["clean", "corrupted"]', "not a list"),
        ('{"clean": "a", ', "not valid JSON"),
        ("[" * 100000, "JSON"),
    ],
)
def test_task_line_problems_named(tmp_path: Path, row, needle: str) -> None:
    path = _write(tmp_path, [GOOD, row])
    with pytest.raises(EdgePruneError) as err:
        build_task(path)
    assert needle in str(err.value) and "task.jsonl:2" in str(err.value)


@pytest.mark.parametrize("content", [b"", b"\n\n   \n", b"\xef\xbb\xbf\n"])
def test_empty_task_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "task.jsonl"
    path.write_bytes(content)
    with pytest.raises(EdgePruneError, match="has no examples; write one JSON object per line"):
        build_task(path)


def test_example_longer_than_the_model_context(tmp_path: Path) -> None:
    tok = task_tokenizer()
    tok.model_max_length = 6  # what language_models.load_model records for a 6-position model
    long_row = {"clean": "1 + 2 + 3 + 4 = <predict>9</predict>", "corrupted": "1 + 2 + 3 + 5 = <predict>9</predict>"}
    ds = build_task(_write(tmp_path, [GOOD, long_row]), tok)
    with pytest.raises(EdgePruneError) as err:
        ds.batch("train")
    msg = str(err.value)
    assert "task.jsonl:2" in msg and "9 tokens exceed the model's context of 6 positions" in msg
    tok.model_max_length = 9
    assert ds.batch("train").clean_ids.shape[1] == 9


hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=5,
)
_TEXT = st.sampled_from(
    ["1 + 2 = <predict>3</predict>", "1 + 5 = <predict>6</predict>", "1 + 2 =", "<predict>3</predict>", "1 <predict>2"]
) | st.text(max_size=30)


@st.composite
def _task_line(draw) -> bytes:
    kind = draw(st.sampled_from(["good", "fields", "json", "bytes", "blank"]))
    if kind == "good":
        return json.dumps(GOOD).encode()
    if kind == "fields":
        row = {"clean": draw(_TEXT), "corrupted": draw(_TEXT)}
        if draw(st.booleans()):
            row[draw(st.sampled_from(["clean", "corrupted", "split"]))] = draw(_JSON)
        if draw(st.booleans()):
            row.pop(draw(st.sampled_from(["clean", "corrupted"])))
        return json.dumps(row).encode()
    if kind == "json":
        return json.dumps(draw(_JSON)).encode()
    if kind == "bytes":
        good = json.dumps(GOOD).encode()
        cut = draw(st.integers(0, len(good)))
        return good[:cut] + draw(st.binary(max_size=4)) + good[cut:]
    return b"   "


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(_task_line(), max_size=5))
def test_fuzz_task_jsonl(tmp_path_factory, lines) -> None:
    """A task file either builds and batches, or is refused with an EdgePruneError naming it."""
    tok = task_tokenizer()
    tok.model_max_length = 12
    path = tmp_path_factory.mktemp("task") / "t.jsonl"
    path.write_bytes(b"\n".join(lines))
    try:
        ds = build_task(path, tok)
        for split in ("train", "validation", "test"):
            ds.batch(split)
    except EdgePruneError as err:
        assert str(err).strip() and ("t.jsonl" in str(err) or "example" in str(err)), str(err)

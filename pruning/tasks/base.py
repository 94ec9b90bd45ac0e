"""Task examples, seeded split generation and tokenisation into padded clean/corrupted tensors.

Every task is a list of :class:`TaskExample` (a prompt plus the continuation the model should
predict, and a same-template corruption).  Tokenisation turns them into a :class:`TaskBatch` whose
``loss_mask`` marks the positions *predicting* the answer, which is where the KL objective and the
paper's metrics are read (method-facts §4 and §6).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from edgeprune.core.errors import EdgePruneError

SPLITS: tuple[str, ...] = ("train", "validation", "test")


@dataclass(frozen=True)
class TaskExample:
    """One clean/corrupted pair.

    ``*_prompt`` is the text up to the answer, ``*_answer`` the continuation scored by the loss
    (all of its tokens).  An empty answer means "score the prediction at the last prompt token"
    (Greater-Than, where the answer is a distribution over 00..99 rather than one string).
    """

    clean_prompt: str
    clean_answer: str
    corrupted_prompt: str
    corrupted_answer: str
    split: str = "train"
    distractor: str | None = None  # misleading continuation (IOI: the subject; GP: the other pronoun)
    label: int | None = None  # task-specific integer target (GT: YY; boolean: 1 for True)
    source: str = ""  # where the example came from (file:line), used in error messages

    @property
    def clean(self) -> str:
        return self.clean_prompt + self.clean_answer

    @property
    def corrupted(self) -> str:
        return self.corrupted_prompt + self.corrupted_answer

    def describe(self) -> str:
        where = f" ({self.source})" if self.source else ""
        return f"example{where} {self.clean!r}"


@dataclass
class TaskBatch:
    """Right-padded tensors for a set of examples.

    ``labels`` hold the clean next-token ids at the loss positions (-100 elsewhere) like the
    reference; ``target_ids``/``distractor_ids`` are the *first* token of the answer/distractor at
    ``positions`` (the first loss position), which is what logit difference reads.  ``class_ids``
    restricts predictions to a class set (GT: the tokens 00..99) and ``class_labels`` is the
    integer label (GT: YY), -1 where absent.
    """

    clean_ids: torch.Tensor  # (N, T) long
    corrupted_ids: torch.Tensor  # (N, T) long
    attention_mask: torch.Tensor  # (N, T) bool, True on real tokens (the key mask)
    loss_mask: torch.Tensor  # (N, T) bool, True on positions predicting the answer
    labels: torch.Tensor  # (N, T) long, next clean token at loss positions, -100 elsewhere
    positions: torch.Tensor  # (N,) long, first loss position
    target_ids: torch.Tensor  # (N,) long, -1 when the task has no single target token
    distractor_ids: torch.Tensor  # (N,) long, -1 when none
    class_labels: torch.Tensor  # (N,) long, -1 when none
    class_ids: torch.Tensor | None = None  # (K,) long
    examples: tuple[TaskExample, ...] = ()

    def __len__(self) -> int:
        return int(self.clean_ids.shape[0])

    @property
    def corrupted_attention_mask(self) -> torch.Tensor:
        """Same as the clean mask: pairs are checked to tokenize to the same length."""
        return self.attention_mask

    def select(self, index: Sequence[int] | torch.Tensor | slice) -> TaskBatch:
        """A sub-batch (rows ``index``), e.g. for minibatching during training."""
        if isinstance(index, slice):
            rows = list(range(len(self)))[index]
        else:
            rows = [int(i) for i in index]
        idx = torch.tensor(rows, dtype=torch.long)

        def pick(t: torch.Tensor) -> torch.Tensor:
            return t.index_select(0, idx)

        return TaskBatch(
            clean_ids=pick(self.clean_ids),
            corrupted_ids=pick(self.corrupted_ids),
            attention_mask=pick(self.attention_mask),
            loss_mask=pick(self.loss_mask),
            labels=pick(self.labels),
            positions=pick(self.positions),
            target_ids=pick(self.target_ids),
            distractor_ids=pick(self.distractor_ids),
            class_labels=pick(self.class_labels),
            class_ids=self.class_ids,
            examples=tuple(self.examples[i] for i in rows) if self.examples else (),
        )

    def minibatches(self, size: int) -> Iterator[TaskBatch]:
        if size <= 0:
            raise EdgePruneError(f"batch size must be positive, got {size}")
        for start in range(0, len(self), size):
            yield self.select(slice(start, start + size))

    def to(self, device: torch.device | str) -> TaskBatch:

        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device)

        return TaskBatch(
            clean_ids=move(self.clean_ids),
            corrupted_ids=move(self.corrupted_ids),
            attention_mask=move(self.attention_mask),
            loss_mask=move(self.loss_mask),
            labels=move(self.labels),
            positions=move(self.positions),
            target_ids=move(self.target_ids),
            distractor_ids=move(self.distractor_ids),
            class_labels=move(self.class_labels),
            class_ids=None if self.class_ids is None else move(self.class_ids),
            examples=self.examples,
        )


# --------------------------------------------------------------------------------------------------
# tokenisation helpers


def _encode(tokenizer: Any, text: str, special: bool = True) -> list[int]:
    """Token ids of ``text`` with the tokenizer's leading special tokens (e.g. Llama's BOS) but no
    trailing ones, so a prompt's ids are a prefix of prompt+answer's ids."""
    enc = tokenizer(text, add_special_tokens=special, return_special_tokens_mask=True)
    ids = list(enc["input_ids"])
    mask = list(enc.get("special_tokens_mask") or [0] * len(ids))
    while ids and mask and mask[-1] == 1 and len(ids) > 1:
        ids.pop()
        mask.pop()
    return ids


def _encode_pair(tokenizer: Any, prompt: str, answer: str, ex: TaskExample, which: str) -> tuple[list[int], int]:
    """(ids of prompt+answer, number of prompt tokens).

    With a fast tokenizer the answer tokens are those whose character span reaches into the
    answer, so "1 + 2 = <predict>3</predict>" scores GPT-2's " 3" token although the space sits
    in the prompt; a token that swallows real prompt text (e.g. "ca"+"t" -> "cat") is refused.
    Slow tokenizers fall back to "the prompt's ids are a prefix of prompt+answer's ids".
    """
    text = prompt + answer
    if not answer:
        full = _encode(tokenizer, text)
        return full, len(full)
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=True, return_special_tokens_mask=True, return_offsets_mapping=True)
        ids, special, offsets = list(enc["input_ids"]), list(enc["special_tokens_mask"]), list(enc["offset_mapping"])
        while len(ids) > 1 and special[-1] == 1:
            ids.pop(), special.pop(), offsets.pop()
        cut = len(prompt)
        first = next((i for i, ((a, b), sp) in enumerate(zip(offsets, special)) if not sp and b > cut), None)
        if first is not None and offsets[first][0] < cut and text[offsets[first][0] : cut].strip():
            raise EdgePruneError(
                f"{ex.describe()}: the {which} answer {answer!r} does not tokenize separately from its prompt "
                f"(token {text[offsets[first][0] : offsets[first][1]]!r} spans both); put a boundary (e.g. a "
                "leading space) before the answer or use a tokenizer that splits there"
            )
        if first is None or first == 0:
            raise EdgePruneError(
                f"{ex.describe()}: no {which} prompt token precedes the answer {answer!r}; the prompt must "
                "contain at least one token"
            )
        return ids, first
    full = _encode(tokenizer, text)
    head = _encode(tokenizer, prompt)
    if full[: len(head)] != head or len(full) == len(head):
        raise EdgePruneError(
            f"{ex.describe()}: the {which} answer {answer!r} does not tokenize separately from its prompt "
            f"(prompt tokens {head[-3:]}, prompt+answer tokens {full[len(head) - 3 :]}); put a boundary "
            "(e.g. a leading space) before the answer or use a tokenizer that splits there"
        )
    return full, len(head)


#: ``transformers`` sets ``model_max_length`` to a huge sentinel when a tokenizer knows no limit
_NO_LIMIT = 10**9


def model_context(tokenizer: Any) -> int | None:
    """The model's number of positions as recorded on its tokenizer (``model_max_length``), if any.

    Why on the tokenizer: ``language_models.load_model`` writes the model's positions there, so
    a too-long example is refused by name here instead of an IndexError in the position embedding.
    """
    value = getattr(tokenizer, "model_max_length", None)
    return value if isinstance(value, int) and 0 < value < _NO_LIMIT else None


def pad_token_id(tokenizer: Any) -> int:
    """Pad id: the tokenizer's pad token, else EOS (the reference pads GPT-2 with EOS), else 0."""
    for attr in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, attr, None)
        if value is not None:
            return int(value)
    return 0


def class_token_ids(tokenizer: Any, classes: Sequence[str]) -> torch.Tensor:
    """First token of each class string (the reference's GT convention); refuses collisions."""
    ids = []
    for c in classes:
        toks = _encode(tokenizer, c, special=False)
        if not toks:
            raise EdgePruneError(f"class string {c!r} tokenizes to nothing")
        ids.append(toks[0])
    if len(set(ids)) != len(ids):
        clash = sorted({c for c, i in zip(classes, ids) if ids.count(i) > 1})[:6]
        raise EdgePruneError(
            f"class strings {clash} share their first token in this tokenizer; the task needs one distinct "
            "token per class (e.g. GPT-2's two-digit tokens 00..99)"
        )
    return torch.tensor(ids, dtype=torch.long)


def encode_examples(
    examples: Sequence[TaskExample],
    tokenizer: Any,
    classes: Sequence[str] | None = None,
    max_length: int | None = None,
    pad_to: int | None = None,
) -> TaskBatch:
    """Tokenize and right-pad ``examples``.

    The loss positions are those predicting each answer token (for <predict> spans: every
    position covering the span, as the reference does).  Clean and corrupted texts must have the
    same number of tokens because interchange ablation swaps activations position by position.
    """
    if not examples:
        raise EdgePruneError("no examples to encode; the split is empty (ask for more examples with n=...)")
    rows: list[tuple[list[int], list[int], int, int]] = []
    context = model_context(tokenizer)
    for ex in examples:
        clean, n_prompt = _encode_pair(tokenizer, ex.clean_prompt, ex.clean_answer, ex, "clean")
        corr, _ = _encode_pair(tokenizer, ex.corrupted_prompt, ex.corrupted_answer, ex, "corrupted")
        if len(clean) != len(corr):
            raise EdgePruneError(
                f"{ex.describe()}: clean text has {len(clean)} tokens but corrupted text {ex.corrupted!r} has "
                f"{len(corr)}; interchange ablation needs equal lengths: choose a corruption whose words "
                "tokenize to the same number of tokens"
            )
        if max_length is not None and len(clean) > max_length:
            raise EdgePruneError(
                f"{ex.describe()}: {len(clean)} tokens exceed max_length={max_length}; shorten it or raise max_length"
            )
        if context is not None and len(clean) > context:
            raise EdgePruneError(
                f"{ex.describe()}: {len(clean)} tokens exceed the model's context of {context} positions; "
                "shorten the example or use a model with a longer context"
            )
        rows.append((clean, corr, n_prompt, len(clean)))
    width = max(r[3] for r in rows)
    if pad_to is not None:
        if pad_to < width:
            raise EdgePruneError(f"pad_to={pad_to} is shorter than the longest example ({width} tokens)")
        width = pad_to
    n = len(rows)
    pad = pad_token_id(tokenizer)
    clean_ids = torch.full((n, width), pad, dtype=torch.long)
    corr_ids = torch.full((n, width), pad, dtype=torch.long)
    attn = torch.zeros((n, width), dtype=torch.bool)
    loss = torch.zeros((n, width), dtype=torch.bool)
    labels = torch.full((n, width), -100, dtype=torch.long)
    positions = torch.zeros(n, dtype=torch.long)
    targets = torch.full((n,), -1, dtype=torch.long)
    distractors = torch.full((n,), -1, dtype=torch.long)
    class_labels = torch.full((n,), -1, dtype=torch.long)
    for i, (ex, (clean, corr, n_prompt, length)) in enumerate(zip(examples, rows)):
        clean_ids[i, :length] = torch.tensor(clean)
        corr_ids[i, :length] = torch.tensor(corr)
        attn[i, :length] = True
        if n_prompt == 0:
            raise EdgePruneError(f"{ex.describe()}: the prompt is empty; nothing precedes the answer")
        if length > n_prompt:  # answer tokens n_prompt..length-1 are predicted at positions one earlier
            loss[i, n_prompt - 1 : length - 1] = True
            labels[i, n_prompt - 1 : length - 1] = torch.tensor(clean[n_prompt:length])
            targets[i] = clean[n_prompt]
        else:  # no answer string: predict at the last prompt token
            loss[i, length - 1] = True
        positions[i] = n_prompt - 1
        if ex.distractor is not None:
            d = _encode(tokenizer, ex.distractor, special=False)
            if d:
                distractors[i] = d[0]
        if ex.label is not None:
            class_labels[i] = int(ex.label)
    return TaskBatch(
        clean_ids=clean_ids,
        corrupted_ids=corr_ids,
        attention_mask=attn,
        loss_mask=loss,
        labels=labels,
        positions=positions,
        target_ids=targets,
        distractor_ids=distractors,
        class_labels=class_labels,
        class_ids=class_token_ids(tokenizer, classes) if classes else None,
        examples=tuple(examples),
    )


def same_length(tokenizer: Any, ex: TaskExample) -> bool:
    """Whether clean and corrupted texts tokenize to the same length (used to resample corruptions)."""
    return len(_encode(tokenizer, ex.clean)) == len(_encode(tokenizer, ex.corrupted))


# --------------------------------------------------------------------------------------------------
# datasets


def split_sizes(n: int | Sequence[int]) -> dict[str, int]:
    """``n`` per split (int) or (train, validation, test)."""
    sizes = [int(n)] * 3 if isinstance(n, int) else [int(x) for x in n]
    if len(sizes) != 3 or any(s < 0 for s in sizes):
        raise EdgePruneError(f"n must be a non-negative int or (train, validation, test); got {n!r}")
    return dict(zip(SPLITS, sizes))


@dataclass
class TaskDataset:
    """A task's examples per split plus what its metrics need (class strings, tokenizer)."""

    name: str
    splits: dict[str, list[TaskExample]]
    tokenizer: Any = None
    classes: tuple[str, ...] | None = None  # restrict predictions to these strings (GT: 00..99)
    notes: list[str] = field(default_factory=list)

    @property
    def train(self) -> list[TaskExample]:
        return self.splits["train"]

    @property
    def validation(self) -> list[TaskExample]:
        return self.splits["validation"]

    @property
    def test(self) -> list[TaskExample]:
        return self.splits["test"]

    def batch(self, split: str = "train", max_length: int | None = None, pad_to: int | None = None) -> TaskBatch:
        if split not in self.splits:
            raise EdgePruneError(f"unknown split {split!r}; choose one of {', '.join(self.splits)}")
        if self.tokenizer is None:
            raise EdgePruneError(f"task {self.name} has no tokenizer; pass one to build_task")
        return encode_examples(self.splits[split], self.tokenizer, self.classes, max_length, pad_to)


Sampler = Callable[[random.Random], TaskExample]


def generate_splits(
    sample: Sampler,
    sizes: Mapping[str, int],
    seed: int,
    tokenizer: Any = None,
    task: str = "task",
    max_tries: int = 200,
) -> dict[str, list[TaskExample]]:
    """Draw unique examples (by clean text) and deal them into disjoint splits.

    Why resample: the corruption must tokenize to the clean length, which depends on the
    tokenizer, so pairs that do not are drawn again (``max_tries`` per example).
    """
    rng = random.Random(seed)
    seen: set[str] = set()
    out: dict[str, list[TaskExample]] = {s: [] for s in sizes}
    total = sum(sizes.values())
    drawn: list[TaskExample] = []
    misses = 0
    while len(drawn) < total:
        ex = sample(rng)
        if ex.clean in seen or (tokenizer is not None and not same_length(tokenizer, ex)):
            misses += 1
            if misses > max_tries * max(total, 1):
                raise EdgePruneError(
                    f"{task}: could only generate {len(drawn)} distinct usable examples of {total} requested "
                    "(too few distinct prompts, or corruptions that tokenize to a different length); ask for fewer"
                )
            continue
        seen.add(ex.clean)
        drawn.append(ex)
    start = 0
    for split, size in sizes.items():
        out[split] = [_with_split(ex, split) for ex in drawn[start : start + size]]
        start += size
    return out


def _with_split(ex: TaskExample, split: str) -> TaskExample:
    from dataclasses import replace

    return replace(ex, split=split)

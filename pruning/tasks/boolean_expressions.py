"""Boolean Expressions (BBH, generated in-house as in the paper's CodeLlama case study).

Expressions have 3..6 literals, parenthesis nesting depth <= 3 and at most two consecutive
``not``s.  Two prompt formats from the paper's Appendix E: an instruction prompt (``boolean-ip``)
and a three-shot prompt (``boolean-fs``).  The corruption flips literals/operators so the answer
flips while the token count stays the same (checked against the tokenizer).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

from edgeprune.core.errors import EdgePruneError
from edgeprune.pruning.tasks.base import TaskDataset, TaskExample, generate_splits, same_length, split_sizes

# ---------------------------------------------------------------------------------------------
# expression trees


@dataclass(frozen=True)
class Lit:
    value: bool


@dataclass(frozen=True)
class Not:
    child: Expr


@dataclass(frozen=True)
class Bin:
    op: str  # "and" | "or"
    left: Expr
    right: Expr


Expr = Union[Lit, Not, Bin]


def render(e: Expr, top: bool = True) -> str:
    """Text form; nested binary expressions are parenthesised, the outermost one is not."""
    if isinstance(e, Lit):
        return "True" if e.value else "False"
    if isinstance(e, Not):
        return "not " + render(e.child, top=False)
    inner = f"{render(e.left, False)} {e.op} {render(e.right, False)}"
    return inner if top else f"({inner})"


def value(e: Expr) -> bool:
    if isinstance(e, Lit):
        return e.value
    if isinstance(e, Not):
        return not value(e.child)
    return (value(e.left) and value(e.right)) if e.op == "and" else (value(e.left) or value(e.right))


def _tokens(text: str) -> list[str]:
    return text.replace("(", " ( ").replace(")", " ) ").split()


def evaluate(text: str) -> bool:
    """Evaluate an expression string with Python's precedence (not > and > or); no eval()."""
    toks = _tokens(text)
    pos = 0

    def peek() -> str | None:
        return toks[pos] if pos < len(toks) else None

    def take(expected: str | None = None) -> str:
        nonlocal pos
        tok = peek()
        if tok is None or (expected is not None and tok != expected):
            raise EdgePruneError(
                f"malformed boolean expression {text!r}: expected {expected or 'a term'} at token {pos}"
            )
        pos += 1
        return tok

    def p_or() -> bool:
        v = p_and()
        while peek() == "or":
            take()
            rhs = p_and()
            v = v or rhs
        return v

    def p_and() -> bool:
        v = p_not()
        while peek() == "and":
            take()
            rhs = p_not()
            v = v and rhs
        return v

    def p_not() -> bool:
        if peek() == "not":
            take()
            return not p_not()
        return p_atom()

    def p_atom() -> bool:
        tok = take()
        if tok == "(":
            v = p_or()
            take(")")
            return v
        if tok in ("True", "False"):
            return tok == "True"
        raise EdgePruneError(f"malformed boolean expression {text!r}: unexpected {tok!r}")

    result = p_or()
    if pos != len(toks):
        raise EdgePruneError(f"malformed boolean expression {text!r}: trailing tokens {toks[pos:]}")
    return result


def paren_depth(text: str) -> int:
    depth = best = 0
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        best = max(best, depth)
    return best


def max_consecutive_nots(text: str) -> int:
    best = run = 0
    for tok in _tokens(text):
        run = run + 1 if tok == "not" else 0
        best = max(best, run)
    return best


def random_expression(rng: random.Random, n_literals: int) -> Expr:
    """A random tree with ``n_literals`` leaves, each subtree optionally under one or two nots."""

    def build(k: int) -> Expr:
        if k == 1:
            node: Expr = Lit(rng.random() < 0.5)
        else:
            split = rng.randint(1, k - 1)
            node = Bin(rng.choice(("and", "or")), build(split), build(k - split))
        for _ in range(rng.choices((0, 1, 2), weights=(6, 3, 1))[0]):
            node = Not(node)
        return node

    return build(n_literals)


def sample_expression(rng: random.Random, min_literals: int = 3, max_literals: int = 6, max_depth: int = 3) -> Expr:
    while True:
        e = random_expression(rng, rng.randint(min_literals, max_literals))
        text = render(e)
        if paren_depth(text) <= max_depth and max_consecutive_nots(text) <= 2:
            return e


def _variants(e: Expr) -> list[Expr]:
    """All trees differing from ``e`` by one literal flip or one and/or swap."""
    if isinstance(e, Lit):
        return [Lit(not e.value)]
    if isinstance(e, Not):
        return [Not(c) for c in _variants(e.child)]
    out: list[Expr] = [Bin("or" if e.op == "and" else "and", e.left, e.right)]
    out += [Bin(e.op, c, e.right) for c in _variants(e.left)]
    out += [Bin(e.op, e.left, c) for c in _variants(e.right)]
    return out


def corruption_candidates(e: Expr) -> list[Expr]:
    """Edits of one or two flips whose value differs from ``e``'s (nearest first)."""
    target = not value(e)
    one = _variants(e)
    two = [w for v in one for w in _variants(v)]
    seen: set[str] = {render(e)}
    out: list[Expr] = []
    for cand in one + two:
        key = render(cand)
        if key not in seen and value(cand) == target:
            seen.add(key)
            out.append(cand)
    return out


# ---------------------------------------------------------------------------------------------
# prompts (paper, Appendix E)

INSTRUCTION = "Evaluate the following boolean expression as either 'True' or 'False'."

FEW_SHOTS: tuple[tuple[str, str], ...] = (
    ("(True and False) or (False and True)", "False"),
    ("(True or (not True)) and False", "False"),
    ("(not (True and False)) or (False and True)", "True"),
)


def instruction_prompt(expr: str) -> tuple[str, str]:
    """(prompt, answer prefix): the answer token follows the opening quote directly."""
    return f"[INST] <<SYS>>\n{INSTRUCTION}\n<</SYS>>\n\n{expr} [/INST] '", ""


def few_shot_prompt(expr: str) -> tuple[str, str]:
    """Three fixed demonstrations, then the test instance; the answer follows "[/INST]" after a space."""
    shots = "".join(f"[INST] {q} is [/INST] {a}</s><s>" for q, a in FEW_SHOTS)
    return f"{shots}[INST] {expr} is [/INST]", " "


FORMATS = {"ip": instruction_prompt, "fs": few_shot_prompt}


def make_sampler(fmt: str, tokenizer: Any = None):
    if fmt not in FORMATS:
        raise EdgePruneError(f"unknown boolean-expressions format {fmt!r}; use 'ip' or 'fs'")
    prompt_of = FORMATS[fmt]
    shot_texts = {q for q, _ in FEW_SHOTS}

    def sample(rng: random.Random) -> TaskExample:
        for _ in range(1000):
            e = sample_expression(rng)
            text = render(e)
            if text in shot_texts:  # never test on a demonstration
                continue
            prompt, sep = prompt_of(text)
            answer = sep + ("True" if value(e) else "False")
            cands = corruption_candidates(e)
            rng.shuffle(cands)
            single = set(_variants(e))
            cands.sort(key=lambda c: 0 if c in single else 1)  # prefer single edits
            for cand in cands:
                c_prompt, _ = prompt_of(render(cand))
                c_answer = sep + ("True" if value(cand) else "False")
                distractor = sep + ("False" if value(e) else "True")
                ex = TaskExample(prompt, answer, c_prompt, c_answer, distractor=distractor, label=int(value(e)))
                if tokenizer is None or same_length(tokenizer, ex):
                    return ex
        raise EdgePruneError(
            f"boolean-{fmt}: no corruption of 1000 sampled expressions tokenizes to the clean length; the "
            "tokenizer splits True/False/and/or into different numbers of tokens"
        )

    return sample


def build(
    tokenizer: Any = None, n: int | Sequence[int] = (3840, 767, 3070), seed: int = 0, fmt: str = "ip"
) -> TaskDataset:
    """Boolean expressions in the instruction-prompt (``ip``) or few-shot (``fs``) format."""
    splits = generate_splits(make_sampler(fmt, tokenizer), split_sizes(n), seed, tokenizer, f"boolean-{fmt}")
    return TaskDataset(name=f"boolean-{fmt}", splits=splits, tokenizer=tokenizer)

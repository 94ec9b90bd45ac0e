"""Indirect Object Identification (Wang et al.): "... B and A went ... B gave it to -> A".

``ioi`` mixes many templates in both name orders (BABA and ABBA); ``ioi-t1`` uses the one
template of the paper's example.  The corruption is the ABC version: the same template with three
fresh random names, so the corrupted prompt carries no information about who the IO is.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from edgeprune.pruning.tasks.base import TaskDataset, TaskExample, generate_splits, split_sizes
from edgeprune.pruning.tasks.vocab import NAMES, OBJECTS, PLACES

# Templates in BABA form: {B} is the subject (mentioned first and again), {A} the indirect object.
# Our own wording, in the style of the IOI templates; the ABBA variant swaps the first two names.
TEMPLATES: tuple[str, ...] = (
    "Then, {B} and {A} went to the {PLACE}. {B} gave a {OBJECT} to {A}",
    "Then, {B} and {A} had a lot of fun at the {PLACE}. {B} gave a {OBJECT} to {A}",
    "Then, {B} and {A} were working at the {PLACE}. {B} decided to give a {OBJECT} to {A}",
    "Then, {B} and {A} were thinking about going to the {PLACE}. {B} wanted to give a {OBJECT} to {A}",
    "Then, {B} and {A} had a long argument, and afterwards {B} said to {A}",
    "After {B} and {A} went to the {PLACE}, {B} gave a {OBJECT} to {A}",
    "When {B} and {A} got a {OBJECT} at the {PLACE}, {B} decided to give it to {A}",
    "When {B} and {A} got a {OBJECT} at the {PLACE}, {B} decided to give the {OBJECT} to {A}",
    "While {B} and {A} were working at the {PLACE}, {B} gave a {OBJECT} to {A}",
    "While {B} and {A} were commuting to the {PLACE}, {B} gave a {OBJECT} to {A}",
    "After the lunch, {B} and {A} went to the {PLACE}. {B} gave a {OBJECT} to {A}",
    "Afterwards, {B} and {A} went to the {PLACE}. {B} gave a {OBJECT} to {A}",
    "Then, {B} and {A} had a long argument. Afterwards {B} said to {A}",
    "The {PLACE} {B} and {A} went to had a {OBJECT}. {B} gave it to {A}",
    "Friends {B} and {A} found a {OBJECT} at the {PLACE}. {B} gave it to {A}",
)

# The paper's IOI-t1 example: "Friends Juana and Kristi found a mango at the bar. Kristi gave it to Juana".
TEMPLATE_T1: str = "Friends {B} and {A} found a {OBJECT} at the {PLACE}. {B} gave it to {A}"


def _fill(template: str, first: str, second: str, subject: str, io: str, place: str, obj: str) -> tuple[str, str]:
    """(prompt, answer) for a template whose first sentence names ``first`` then ``second``."""
    head, tail = template.rsplit(" {A}", 1)
    assert tail == "", template
    # Replace the first two mentions by position, then the repeated subject.
    text = head.replace("{B}", "\0", 1).replace("{A}", second, 1).replace("\0", first, 1)
    text = text.replace("{B}", subject).replace("{PLACE}", place).replace("{OBJECT}", obj)
    return text, " " + io


def make_sampler(templates: Sequence[str], names: Sequence[str] = NAMES):
    """Sampler of IOI pairs: random template, order (BABA/ABBA), names, place and object."""

    def sample(rng: random.Random) -> TaskExample:
        template = rng.choice(list(templates))
        place, obj = rng.choice(PLACES), rng.choice(OBJECTS)
        io, s = rng.sample(list(names), 2)
        if rng.random() < 0.5:  # BABA
            prompt, answer = _fill(template, s, io, s, io, place, obj)
        else:  # ABBA
            prompt, answer = _fill(template, io, s, s, io, place, obj)
        x, y, z = rng.sample(list(names), 3)  # ABC corruption: three distinct fresh names
        c_prompt, c_answer = _fill(template, x, y, z, x, place, obj)
        return TaskExample(prompt, answer, c_prompt, c_answer, distractor=" " + s)

    return sample


def build(
    tokenizer: Any = None, n: int | Sequence[int] = 200, seed: int = 0, single_template: bool = False
) -> TaskDataset:
    """IOI (all templates) or IOI-t1 (one template); ``n`` examples per split or (train, val, test)."""
    templates = (TEMPLATE_T1,) if single_template else TEMPLATES
    name = "ioi-t1" if single_template else "ioi"
    splits = generate_splits(make_sampler(templates), split_sizes(n), seed, tokenizer, name)
    return TaskDataset(name=name, splits=splits, tokenizer=tokenizer)

"""Gendered Pronoun (Athwin et al.): "So Evan is a really great friend, isn't" -> " he".

The corruption puts a random name of the other gender into the same template, so the
pronoun the corrupted prompt supports is the distractor.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from edgeprune.pruning.tasks.base import TaskDataset, TaskExample, generate_splits, split_sizes
from edgeprune.pruning.tasks.vocab import FEMALE_NAMES, MALE_NAMES

# Our own templates in the style of the original notebook.
TEMPLATES: tuple[str, ...] = (
    "So {NAME} is a really great friend, isn't",
    "So {NAME} is such a good cook, isn't",
    "So {NAME} is a very kind person, isn't",
    "So {NAME} is a really nice neighbour, isn't",
    "So {NAME} is such a funny teacher, isn't",
    "So {NAME} is a very good doctor, isn't",
)


def make_sampler(templates: Sequence[str] = TEMPLATES):
    def sample(rng: random.Random) -> TaskExample:
        template = rng.choice(list(templates))
        male = rng.random() < 0.5
        name = rng.choice(MALE_NAMES if male else FEMALE_NAMES)
        other = rng.choice(FEMALE_NAMES if male else MALE_NAMES)
        pron, anti = (" he", " she") if male else (" she", " he")
        return TaskExample(
            template.format(NAME=name), pron, template.format(NAME=other), anti, distractor=anti, label=int(male)
        )

    return sample


def build(tokenizer: Any = None, n: int | Sequence[int] = 150, seed: int = 0) -> TaskDataset:
    splits = generate_splits(make_sampler(), split_sizes(n), seed, tokenizer, "gp")
    return TaskDataset(name="gp", splits=splits, tokenizer=tokenizer)

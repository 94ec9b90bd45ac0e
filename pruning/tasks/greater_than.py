"""Greater-Than (Hanna et al.): "The war lasted from the year 1743 to the year 17" -> 44..99.

The answer is a distribution over the 100 two-digit tokens 00..99, so the example has no answer
string: the loss and metrics read the last prompt token, restricted to those 100 classes.  The
corruption sets YY to 01 (the paper's choice), which leaves no year to exceed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from edgeprune.pruning.tasks.base import TaskDataset, TaskExample, generate_splits, split_sizes
from edgeprune.pruning.tasks.vocab import GT_NOUNS

YEAR_CLASSES: tuple[str, ...] = tuple(f"{i:02d}" for i in range(100))

# Five templates (our wording); {XX} is the century prefix, {YY} the two-digit year.
TEMPLATES: tuple[str, ...] = (
    "The {NOUN} lasted from the year {XX}{YY} to the year {XX}",
    "The {NOUN} started in the year {XX}{YY} and ended in the year {XX}",
    "The {NOUN} began in the year {XX}{YY} and continued until the year {XX}",
    "The {NOUN} went on from the year {XX}{YY} to the year {XX}",
    "The {NOUN} ran from the year {XX}{YY} until the year {XX}",
)

CORRUPT_YY = 1


def make_sampler(templates: Sequence[str] = TEMPLATES, centuries: Sequence[int] = range(11, 22)):
    """Years XXYY with XX in ``centuries`` (1100..2199 by default) and YY in 02..98 (room on both sides)."""

    def sample(rng: random.Random) -> TaskExample:
        template = rng.choice(list(templates))
        noun = rng.choice(GT_NOUNS)
        xx = rng.choice(list(centuries))
        yy = rng.randint(2, 98)
        fill = lambda y: template.format(NOUN=noun, XX=f"{xx:02d}", YY=f"{y:02d}")  # noqa: E731
        return TaskExample(fill(yy), "", fill(CORRUPT_YY), "", label=yy)

    return sample


def build(
    tokenizer: Any = None, n: int | Sequence[int] = 150, seed: int = 0, century: int | None = None
) -> TaskDataset:
    """Greater-Than; ``century=17`` fixes the prefix to 17 as in "... to the year 17"."""
    centuries = range(11, 22) if century is None else (century,)
    splits = generate_splits(make_sampler(TEMPLATES, centuries), split_sizes(n), seed, tokenizer, "gt")
    return TaskDataset(name="gt", splits=splits, tokenizer=tokenizer, classes=YEAR_CLASSES)

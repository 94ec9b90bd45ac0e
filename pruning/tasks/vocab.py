"""Small built-in word lists for the template tasks (our own choices, common English words)."""

from __future__ import annotations

MALE_NAMES: tuple[str, ...] = (
    "John", "David", "James", "Michael", "Robert", "William", "Thomas", "Daniel", "Paul", "Mark",
    "George", "Steven", "Edward", "Brian", "Kevin", "Jason", "Eric", "Adam", "Peter", "Ryan",
    "Jacob", "Scott", "Frank", "Sean", "Henry", "Carl", "Jack", "Luke", "Tom", "Sam",
)

FEMALE_NAMES: tuple[str, ...] = (
    "Mary", "Sarah", "Emma", "Anna", "Laura", "Lisa", "Susan", "Karen", "Nancy", "Linda",
    "Emily", "Rachel", "Julia", "Kate", "Amy", "Rose", "Grace", "Alice", "Helen", "Ruth",
    "Jessica", "Megan", "Hannah", "Claire", "Diana", "Lucy", "Jane", "Ellen", "Maria", "Sophie",
)

NAMES: tuple[str, ...] = MALE_NAMES + FEMALE_NAMES

PLACES: tuple[str, ...] = (
    "store", "garden", "restaurant", "school", "hospital", "office", "house", "station", "park", "market",
    "library", "beach", "church", "river", "bar", "hotel",
)

OBJECTS: tuple[str, ...] = (
    "ring", "kiss", "bone", "basketball", "computer", "necklace", "drink", "snack", "book", "letter",
    "mango", "apple", "bottle", "bag", "pen", "cake",
)

# Greater-Than: nouns for events that last a span of years.
GT_NOUNS: tuple[str, ...] = (
    "war", "reign", "drought", "expedition", "voyage", "dynasty", "siege", "pilgrimage", "famine", "project",
    "occupation", "journey", "campaign", "construction", "rebellion", "plague", "crusade", "era", "boom", "strike",
)

"""Family trees: who is in a family, who is whose parent, who was photographed.

Two shapes, as in FIW: a nuclear family (father, mother, their children) and a three-generation
line (grandparents, one of their children with a married-in spouse, and the grandchildren). No
family holds collateral relatives (aunts, cousins), so every photographed pair of one family is
either a listed blood relation or truly unrelated (a married-in spouse and their in-laws, or the
grandparent couple).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kinship.synth.genome import child_genome, founder_genome, phenotype

HIDE_RATE = 0.3  # chance that a parent or grandparent of a family was never photographed
THREE_GENERATION_RATE = 0.4
MAX_CHILDREN = 7
STYLE_KEYS = ("long_hair", "hair_length", "beard", "freckle_seed")


@dataclass
class Person:
    """One family member; `mid` is set when the person is named in the data (folder or row)."""

    role: str
    sex: str
    age: float
    genome: np.ndarray
    parents: tuple[int, int] | None = None
    photographed: bool = True
    named: bool = True
    mid: int | None = None
    n_photos: int = 0
    looks: dict[str, float] = field(default_factory=dict)


@dataclass
class Family:
    """A family and its blood relations (pairs of indices into `people`, with their kind)."""

    family_id: str
    people: list[Person]
    relations: list[tuple[int, int, str]]

    def photographed(self) -> list[int]:
        return [i for i, p in enumerate(self.people) if p.photographed]

    def blood_pairs(self) -> set[frozenset[int]]:
        return {frozenset((a, b)) for a, b, _ in self.relations}


def build_family(
    family_id: str,
    size_range: list[int],
    photo_range: list[int],
    missing_folder_rate: float,
    difficulty: float,
    rng: np.random.Generator,
) -> Family:
    """Draw a family whose photographed members number within `size_range` and hold a kin pair."""
    while True:
        size = _draw_size(size_range, rng)
        people = _draw_tree(size, difficulty, rng)
        if people is None:
            continue
        family = Family(family_id, people, _blood_relations(people))
        if _has_photographed_kin(family):
            _name_and_photograph(family, photo_range, missing_folder_rate, rng)
            return family


def _draw_size(size_range: list[int], rng: np.random.Generator) -> int:
    sizes = np.arange(size_range[0], size_range[1] + 1)
    weights = np.exp(-0.5 * ((sizes - 4.5) / 2.0) ** 2)  # FIW: about 4.9 people per family
    return int(rng.choice(sizes, p=weights / weights.sum()))


def _draw_tree(size: int, difficulty: float, rng: np.random.Generator) -> list[Person] | None:
    """Adults first, then as many children as the photographed size needs (None if impossible)."""
    three_generations = rng.random() < THREE_GENERATION_RATE
    people = _three_generation_adults(difficulty, rng) if three_generations else _couple(rng)
    for person in people:
        person.photographed = rng.random() >= HIDE_RATE
    n_children = size - sum(p.photographed for p in people)
    if n_children < (0 if three_generations else 1) or n_children > MAX_CHILDREN:
        return None
    mother, father = _parents_of_next_generation(people)
    for _ in range(n_children):
        people.append(_child(people, mother, father, difficulty, rng))
    return people


def _couple(rng: np.random.Generator, ages: tuple[float, float] = (28.0, 70.0)) -> list[Person]:
    mother_age = rng.uniform(*ages)
    return [
        Person("father", "M", mother_age + rng.uniform(-3.0, 8.0), founder_genome(rng)),
        Person("mother", "F", mother_age, founder_genome(rng)),
    ]


def _three_generation_adults(difficulty: float, rng: np.random.Generator) -> list[Person]:
    """Grandparents, their child (the link) and the link's married-in spouse."""
    people = _couple(rng, ages=(62.0, 88.0))
    for person, role in zip(people, ("grandfather", "grandmother"), strict=True):
        person.role = role
    link = _child(people, 1, 0, difficulty, rng)
    link.role = "father" if link.sex == "M" else "mother"
    spouse_sex = "F" if link.sex == "M" else "M"
    spouse_role = "mother" if link.sex == "M" else "father"
    spouse = Person(
        f"{spouse_role} (married in)",
        spouse_sex,
        link.age + rng.uniform(-6.0, 6.0),
        founder_genome(rng),
    )
    return [*people, link, spouse]


def _parents_of_next_generation(people: list[Person]) -> tuple[int, int]:
    """Indices (mother, father) of the youngest couple."""
    mother = next(i for i in reversed(range(len(people))) if people[i].sex == "F")
    father = next(i for i in reversed(range(len(people))) if people[i].sex == "M")
    return mother, father


def _child(
    people: list[Person], mother: int, father: int, difficulty: float, rng: np.random.Generator
) -> Person:
    sex = "M" if rng.random() < 0.5 else "F"
    genome = child_genome(people[mother].genome, people[father].genome, difficulty, rng)
    age = max(1.0, people[mother].age - rng.uniform(20.0, 38.0))
    return Person("son" if sex == "M" else "daughter", sex, age, genome, (mother, father))


def _blood_relations(people: list[Person]) -> list[tuple[int, int, str]]:
    """Parent-child, sibling and grandparent-grandchild pairs (the kinds Kaggle lists)."""
    relations = []
    for c, child in enumerate(people):
        if child.parents is None:
            continue
        for p in child.parents:
            relations.append((p, c, "parent-child"))
            grandparents = people[p].parents or ()
            relations.extend((g, c, "grandparent-grandchild") for g in grandparents)
        for s in range(c + 1, len(people)):
            if people[s].parents == child.parents:
                relations.append((c, s, "siblings"))
    return relations


def _has_photographed_kin(family: Family) -> bool:
    shown = set(family.photographed())
    return any(a in shown and b in shown for a, b, _ in family.relations)


def _name_and_photograph(
    family: Family, photo_range: list[int], missing_folder_rate: float, rng: np.random.Generator
) -> None:
    """Name (give a MID to) every photographed person and some others; draw photo counts/looks."""
    for person in family.people:
        person.named = person.photographed or rng.random() < missing_folder_rate
        person.looks = _looks(person, rng)
        if person.photographed:
            person.n_photos = int(rng.integers(photo_range[0], photo_range[1] + 1))
    named = [p for p in family.people if p.named]
    for mid, k in enumerate(rng.permutation(len(named)), start=1):
        named[k].mid = mid


def _looks(person: Person, rng: np.random.Generator) -> dict[str, float]:
    """Inherited traits plus personal, non-inherited style (hair length, beard, freckle layout)."""
    looks = phenotype(person.genome, person.sex, person.age)
    male = person.sex == "M"
    looks["long_hair"] = float(rng.random() < (0.12 if male else 0.8))
    looks["hair_length"] = float(rng.uniform(0.9, 1.5))
    looks["beard"] = float(rng.uniform(0.3, 0.9)) if male and person.age > 18 else 0.0
    looks["beard"] *= float(rng.random() < 0.35)
    looks["freckle_seed"] = float(rng.integers(0, 2**31))
    return looks

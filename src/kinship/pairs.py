"""Fixed, seeded evaluation pairs: per-fold validation, holdout, and the pair-id contract.

Every pair lies inside one fold's families (negatives too), so no image of a validation pair is ever
seen by a model trained on the other folds. Columns: pair_id, fold, img1, img2, label, kind.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from kinship.folds import HOLDOUT_FOLD

KINDS = ("kin", "cross_family", "in_family_nonkin")
PAIR_COLUMNS = ["pair_id", "fold", "img1", "img2", "label", "kind"]
MAX_TRIES_PER_PAIR = 50


def pair_id(a: str, b: str) -> str:
    """The contract's id of an unordered image pair: '{a}|{b}' with a < b."""
    if a == b:
        raise ValueError(f"a pair needs two different images, got {a!r} twice")
    return f"{a}|{b}" if a < b else f"{b}|{a}"


class _PairSampler:
    """Collects unique pairs of one fold (or of the holdout)."""

    def __init__(self, fold: int, images_of: dict[str, list[str]], rng: np.random.Generator):
        self.fold = fold
        self.images_of = images_of
        self.rng = rng
        self.rows: list[tuple] = []
        self.seen: set[str] = set()

    def add(self, a: str, b: str, label: int, kind: str) -> bool:
        pid = pair_id(a, b)
        if pid in self.seen:
            return False
        self.seen.add(pid)
        img1, img2 = pid.split("|")
        self.rows.append((pid, self.fold, img1, img2, label, kind))
        return True

    def kin(self, relationships: pd.DataFrame, cap: int) -> int:
        """Up to `cap` distinct image pairs of each relationship row."""
        added = 0
        for p1, p2 in relationships[["p1", "p2"]].itertuples(index=False):
            imgs1, imgs2 = self.images_of[p1], self.images_of[p2]
            n = len(imgs1) * len(imgs2)
            for idx in self.rng.choice(n, size=min(cap, n), replace=False):
                added += self.add(imgs1[idx // len(imgs2)], imgs2[idx % len(imgs2)], 1, "kin")
        return added

    def negatives(self, person_pairs: list[tuple[str, str]], n: int, kind: str) -> int:
        """`n` distinct image pairs of random person pairs drawn from `person_pairs`."""
        added, tries = 0, 0
        while added < n and tries < MAX_TRIES_PER_PAIR * max(n, 1) and person_pairs:
            tries += 1
            a, b = person_pairs[self.rng.integers(len(person_pairs))]
            img_a = self.images_of[a][self.rng.integers(len(self.images_of[a]))]
            img_b = self.images_of[b][self.rng.integers(len(self.images_of[b]))]
            added += self.add(img_a, img_b, 0, kind)
        return added

    def cross_family(self, people: pd.DataFrame, n: int) -> int:
        """`n` distinct image pairs of people from two different families."""
        persons = people["person"].to_numpy()
        families = people["family"].to_numpy()
        if len(set(families)) < 2:
            if n > 0:
                raise ValueError(
                    f"fold {self.fold} has a single family: cross-family negatives are impossible "
                    "(lower folds.k or use more families)"
                )
            return 0
        added, tries = 0, 0
        while added < n and tries < MAX_TRIES_PER_PAIR * n:
            tries += 1
            i, j = self.rng.integers(len(persons), size=2)
            if families[i] == families[j]:
                continue
            added += self.negatives([(persons[i], persons[j])], 1, "cross_family")
        return added

    def table(self) -> pd.DataFrame:
        frame = pd.DataFrame.from_records(self.rows, columns=PAIR_COLUMNS)
        return frame.astype({"fold": "int8", "label": "int8"})


def images_by_person(images: pd.DataFrame) -> dict[str, list[str]]:
    train = images[images["split"] == "train"]
    return {p: sorted(g) for p, g in train.groupby("person")["image"]}


def nonkin_person_pairs(people: pd.DataFrame, relationships: pd.DataFrame) -> list[tuple[str, str]]:
    """Pairs of people in one family that no relationship row links (e.g. spouses)."""
    related = set(zip(relationships["p1"], relationships["p2"], strict=True))
    pairs = []
    for _, members in people.groupby("family")["person"]:
        members = sorted(members)
        for i, a in enumerate(members):
            pairs.extend((a, b) for b in members[i + 1 :] if (a, b) not in related)
    return pairs


def validation_pairs(
    images: pd.DataFrame,
    people: pd.DataFrame,
    relationships: pd.DataFrame,
    family_fold: pd.Series,
    *,
    seed: int,
    kin_cap: int,
    cross_family_ratio: float,
    in_family_nonkin_ratio: float,
) -> pd.DataFrame:
    """The fixed validation pairs of every fold 0..K-1."""
    images_of = images_by_person(images)
    people = people.assign(fold=people["family"].map(family_fold))
    rels = relationships.assign(fold=relationships["family"].map(family_fold))
    tables = []
    for fold in sorted(f for f in family_fold.unique() if f != HOLDOUT_FOLD):
        sampler = _PairSampler(int(fold), images_of, np.random.default_rng([seed, int(fold)]))
        fold_people, fold_rels = people[people["fold"] == fold], rels[rels["fold"] == fold]
        n_kin = sampler.kin(fold_rels, kin_cap)
        sampler.cross_family(fold_people, round(cross_family_ratio * n_kin))
        if in_family_nonkin_ratio > 0:
            candidates = nonkin_person_pairs(fold_people, fold_rels)
            sampler.negatives(candidates, round(in_family_nonkin_ratio * n_kin), "in_family_nonkin")
        tables.append(sampler.table())
    return _concat(tables)


def holdout_pairs(
    images: pd.DataFrame,
    people: pd.DataFrame,
    relationships: pd.DataFrame,
    family_fold: pd.Series,
    *,
    seed: int,
    in_family_nonkin_ratio: float = 0.0,
) -> pd.DataFrame:
    """The holdout protocol: each usable relationship once with one seeded image pair, plus as
    many seeded cross-family negatives from inside the holdout; then, when the ratio is above 0,
    in-family non-kin negatives (kind `in_family_nonkin`) as an extra set scored on its own, so
    the kin-vs-stranger pairs stay the same."""
    holdout = set(family_fold.index[family_fold == HOLDOUT_FOLD])
    sampler = _PairSampler(
        HOLDOUT_FOLD, images_by_person(images), np.random.default_rng([seed, 2**31])
    )
    if holdout:
        held_people = people[people["family"].isin(holdout)]
        held_rels = relationships[relationships["family"].isin(holdout)]
        n_kin = sampler.kin(held_rels, cap=1)
        sampler.cross_family(held_people, n_kin)
        if in_family_nonkin_ratio > 0:
            candidates = nonkin_person_pairs(held_people, held_rels)
            sampler.negatives(candidates, round(in_family_nonkin_ratio * n_kin), "in_family_nonkin")
    return sampler.table()


def training_pairs(
    images: pd.DataFrame,
    people: pd.DataFrame,
    relationships: pd.DataFrame,
    *,
    rng: np.random.Generator,
    kin_cap: int,
    negatives_per_kin: float,
    nonkin_share: float,
) -> pd.DataFrame:
    """A frozen head's training pairs from the fitting families (the pairs contract, fold 0):
    up to `kin_cap` image pairs per relationship row, and `negatives_per_kin` negatives per kin
    pair, `nonkin_share` of them in-family non-kin (as many as exist), the rest strangers from
    other families. `images` holds the usable images only."""
    images_of = images_by_person(images)
    people = people[people["person"].isin(images_of)]
    usable = relationships["p1"].isin(images_of) & relationships["p2"].isin(images_of)
    sampler = _PairSampler(0, images_of, rng)
    n_kin = sampler.kin(relationships[usable], kin_cap)
    n_negatives = round(negatives_per_kin * n_kin)
    candidates = [
        (a, b)
        for a, b in nonkin_person_pairs(people, relationships)
        if a in images_of and b in images_of
    ]
    n_nonkin = sampler.negatives(candidates, round(nonkin_share * n_negatives), "in_family_nonkin")
    sampler.cross_family(people, n_negatives - n_nonkin)
    return sampler.table()


def _concat(tables: Iterable[pd.DataFrame]) -> pd.DataFrame:
    tables = list(tables)
    if not tables:
        return _PairSampler(0, {}, np.random.default_rng(0)).table()
    return pd.concat(tables, ignore_index=True)

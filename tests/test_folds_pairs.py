"""Property tests: family folds (disjoint, deterministic, balanced), pair sampling (no leakage)."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from kinship.folds import family_folds
from kinship.pairs import holdout_pairs, nonkin_person_pairs, pair_id, validation_pairs

loads_strategy = st.lists(st.integers(0, 80), min_size=3, max_size=60)


def _families(loads):
    names = [f"F{i:04d}" for i in range(len(loads))]
    return pd.Series(names), pd.Series(loads, index=names)


@settings(max_examples=60, deadline=None)
@given(loads=loads_strategy, k=st.integers(2, 5), seed=st.integers(0, 2**16))
def test_folds_cover_every_family_once_and_balance_kin_load(loads, k, seed):
    if len(loads) < k:
        return
    families, kin = _families(loads)
    folds = family_folds(families, kin, k, seed)
    assert sorted(folds.index) == sorted(families)  # each family in exactly one fold
    assert set(folds) == set(range(k))  # no fold left empty
    fold_loads = kin.groupby(folds).sum().reindex(range(k), fill_value=0)
    # greedy largest-first: the spread never exceeds the largest single family's load
    assert fold_loads.max() - fold_loads.min() <= max(loads)
    assert folds.equals(family_folds(families, kin, k, seed))  # deterministic


def test_folds_balance_kin_pairs_not_family_count():
    # one family with as many relationships as all the others together (the real F0601 case)
    loads = [75] + [5] * 15
    families, kin = _families(loads)
    folds = family_folds(families, kin, 2, seed=0)
    fold_loads = kin.groupby(folds).sum()
    assert abs(fold_loads[0] - fold_loads[1]) <= 5
    assert folds.value_counts().max() >= 14  # the fold without F0000 takes most families


def test_fold_seed_changes_assignment_of_equal_families():
    families, kin = _families([3] * 30)
    assert not family_folds(families, kin, 3, 0).equals(family_folds(families, kin, 3, 1))


def test_holdout_prefix_takes_families_out_of_the_folds():
    families, kin = _families([2] * 20)
    kin.index = [f"F{'09' if i < 4 else '01'}{i:02d}" for i in range(20)]
    folds = family_folds(pd.Series(kin.index), kin, 3, 0, holdout_prefix="F09")
    assert (folds[folds.index.str.startswith("F09")] == -1).all()
    assert (folds[~folds.index.str.startswith("F09")] >= 0).all()


def test_pair_id_is_ordered():
    assert pair_id("b.jpg", "a.jpg") == "a.jpg|b.jpg" == pair_id("a.jpg", "b.jpg")
    with pytest.raises(ValueError, match="two different images"):
        pair_id("a.jpg", "a.jpg")


@st.composite
def datasets(draw):
    """Random families of 2–6 people with 1–4 images each, chain relationships, a spouse."""
    n_families = draw(st.integers(4, 10))
    images, people, rels = [], [], []
    for f in range(n_families):
        family = f"F{f:04d}"
        n_people = draw(st.integers(2, 6))
        for m in range(1, n_people + 1):
            person = f"{family}/MID{m}"
            people.append((person, family))
            for i in range(draw(st.integers(1, 4))):
                images.append((f"{person}/P{f:02d}{m:02d}{i}_face{i}.jpg", "train", person, family))
        # MID1 is a married-in spouse: related to nobody listed; MID2..n form a chain of kin
        rels += [(f"{family}/MID{m}", f"{family}/MID{m + 1}", family) for m in range(2, n_people)]
    return (
        pd.DataFrame(images, columns=["image", "split", "person", "family"]),
        pd.DataFrame(people, columns=["person", "family"]),
        pd.DataFrame(rels, columns=["p1", "p2", "family"]),
    )


@settings(max_examples=40, deadline=None)
@given(data=datasets(), k=st.integers(2, 3), seed=st.integers(0, 1000), cap=st.integers(1, 3))
def test_validation_pairs_stay_inside_their_fold_and_kinds_are_right(data, k, seed, cap):
    images, people, rels = data
    family_fold = family_folds(people["family"], rels.groupby("family").size(), k, seed)
    assume(family_fold.value_counts().min() >= 2)  # a one-family fold has no cross-family pairs
    pairs = validation_pairs(
        images, people, rels, family_fold,
        seed=seed, kin_cap=cap, cross_family_ratio=1.0, in_family_nonkin_ratio=0.5,
    )  # fmt: skip
    person_of = dict(zip(images["image"], images["person"], strict=True))
    family_of = dict(zip(people["person"], people["family"], strict=True))
    related = set(zip(rels["p1"], rels["p2"], strict=True))
    assert pairs["pair_id"].is_unique
    for row in pairs.itertuples():
        p1, p2 = person_of[row.img1], person_of[row.img2]
        f1, f2 = family_of[p1], family_of[p2]
        # no leakage: both images belong to families of this very fold
        assert family_fold[f1] == family_fold[f2] == row.fold
        linked = (min(p1, p2), max(p1, p2)) in related
        if row.kind == "kin":
            assert row.label == 1 and linked
        elif row.kind == "cross_family":
            assert row.label == 0 and f1 != f2
        else:
            assert row.label == 0 and f1 == f2 and not linked and p1 != p2
    kin = pairs[pairs["kind"] == "kin"]
    per_rel = kin.groupby([kin["img1"].map(person_of), kin["img2"].map(person_of)]).size()
    assert len(per_rel) == 0 or per_rel.max() <= cap
    again = validation_pairs(
        images, people, rels, family_fold,
        seed=seed, kin_cap=cap, cross_family_ratio=1.0, in_family_nonkin_ratio=0.5,
    )  # fmt: skip
    pd.testing.assert_frame_equal(pairs, again)


@settings(max_examples=20, deadline=None)
@given(data=datasets(), seed=st.integers(0, 1000))
def test_holdout_takes_each_relationship_once(data, seed):
    images, people, rels = data
    family_fold = pd.Series(-1, index=sorted(set(people["family"])), dtype="int8")
    pairs = holdout_pairs(images, people, rels, family_fold, seed=seed)
    kin = pairs[pairs["kind"] == "kin"]
    assert len(kin) == len(rels)
    assert (pairs["kind"] == "cross_family").sum() == len(rels)
    assert (pairs["fold"] == -1).all()


def test_single_family_fold_is_a_clear_error():
    images = pd.DataFrame(
        [("F0001/MID1/a.jpg", "train", "F0001/MID1", "F0001"),
         ("F0001/MID2/b.jpg", "train", "F0001/MID2", "F0001")],
        columns=["image", "split", "person", "family"],
    )  # fmt: skip
    people = pd.DataFrame({"person": ["F0001/MID1", "F0001/MID2"], "family": ["F0001"] * 2})
    rels = pd.DataFrame({"p1": ["F0001/MID1"], "p2": ["F0001/MID2"], "family": ["F0001"]})
    fold = pd.Series([0], index=["F0001"], dtype="int8")
    with pytest.raises(ValueError, match="fold 0 has a single family"):
        validation_pairs(
            images, people, rels, fold,
            seed=0, kin_cap=1, cross_family_ratio=1.0, in_family_nonkin_ratio=0.0,
        )  # fmt: skip


def test_nonkin_person_pairs_exclude_relationships():
    people = pd.DataFrame({"person": ["F1/MID1", "F1/MID2", "F1/MID3"], "family": ["F1"] * 3})
    rels = pd.DataFrame({"p1": ["F1/MID2"], "p2": ["F1/MID3"]})
    assert nonkin_person_pairs(people, rels) == [("F1/MID1", "F1/MID2"), ("F1/MID1", "F1/MID3")]

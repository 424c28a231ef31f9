"""Fabricated inputs of the ensemble stage: a prepared dataset (families, folds, pairs, test pairs,
a sample_submission.csv) and member predictions of known quality, written under a working folder
laid out as the repository (data/prepared, data/oof, data/holdout, data/test).

A member is a function (labels, folds, rng) -> probabilities; `signal(s)` gives a member whose
logit is s·(±1) plus unit noise, so larger s means a stronger member.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kinship import paths
from kinship.params import Params, parse_params

Member = Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray]
DATA_ROOT = Path("data/fiw")
IMAGES = 8  # photos per family
SHARED_NOISE_SEED = 12345


def signal(strength: float, scale: float = 1.0, shared: float = 0.0) -> Member:
    """Probabilities sigmoid(scale·(strength·(2y−1) + noise)): the AUC grows with strength. A
    fraction `shared` of the noise's variance is common to every member built with it (real
    members make correlated mistakes)."""

    def member(labels, folds, rng):
        common = np.random.default_rng(SHARED_NOISE_SEED).normal(size=len(labels))
        noise = np.sqrt(shared) * common + np.sqrt(1 - shared) * rng.normal(size=len(labels))
        return 1 / (1 + np.exp(-scale * (strength * (2 * labels - 1) + noise)))

    return member


def constant(value: float = 0.5) -> Member:
    return lambda labels, folds, rng: np.full(len(labels), value)


@dataclass
class Fabricated:
    pairs: pd.DataFrame
    holdout_pairs: pd.DataFrame
    test_pairs: pd.DataFrame
    test_labels: np.ndarray
    oof: dict[str, np.ndarray]
    test: dict[str, np.ndarray]


def fabricate(
    work: Path,
    members: dict[str, Member],
    n_families: int = 60,
    pairs_per_family: int = 10,
    k: int = 3,
    n_test: int = 200,
    holdout_families: int = 0,
    seed: int = 0,
) -> Fabricated:
    """Write a prepared dataset and every member's OOF / holdout / test tables under `work`."""
    rng = np.random.default_rng(seed)
    families = [f"F{i + 1:04d}" for i in range(n_families + holdout_families)]
    photos = {
        f: [f"{f}/MID{m}/P{i:05d}_face1.jpg" for m in range(IMAGES)] for i, f in enumerate(families)
    }
    rows = []
    for i, family in enumerate(families):
        fold = -1 if i >= n_families else i % k
        kin = list(itertools.combinations(photos[family], 2))[: (pairs_per_family + 1) // 2]
        cross = [
            (photos[family][j % IMAGES], photos[families[(i + 1 + j) % len(families)]][j % IMAGES])
            for j in range(pairs_per_family // 2)
        ]
        rows += [(*sorted(p), fold, 1, "kin") for p in kin]
        rows += [(*sorted(p), fold, 0, "cross_family") for p in cross]
    table = pd.DataFrame(rows, columns=["img1", "img2", "fold", "label", "kind"])
    table.insert(0, "pair_id", table["img1"] + "|" + table["img2"])
    table = table[["pair_id", "fold", "img1", "img2", "label", "kind"]]
    table = table.drop_duplicates("pair_id").astype({"fold": "int8", "label": "int8"})
    pairs = table[table["fold"] >= 0].reset_index(drop=True)
    holdout = table[table["fold"] < 0].reset_index(drop=True)
    test_pairs = pd.DataFrame(
        {
            "img1": [f"face{2 * i:05d}.jpg" for i in range(n_test)],
            "img2": [f"face{2 * i + 1:05d}.jpg" for i in range(n_test)],
        }
    )
    test_pairs.insert(0, "img_pair", test_pairs["img1"] + "-" + test_pairs["img2"])
    test_labels = rng.integers(0, 2, n_test)
    test_images = [*test_pairs["img1"], *test_pairs["img2"]]
    images = [im for f in families for im in photos[f]]
    _write_prepared(work, images, test_images, pairs, holdout, test_pairs)
    fab = Fabricated(pairs, holdout, test_pairs, test_labels, {}, {})
    for name, member in members.items():
        write_member(work, name, fab, member, rng)
    return fab


def write_member(work: Path, name: str, fab: Fabricated, member: Member, rng) -> None:
    """Write one member's three tables, each in a shuffled row order (the ensemble must join on
    the keys, not rely on the order)."""
    labels, folds = fab.pairs["label"].to_numpy(), fab.pairs["fold"].to_numpy()
    oof = member(labels, folds, rng)
    holdout = member(
        fab.holdout_pairs["label"].to_numpy(), fab.holdout_pairs["fold"].to_numpy(), rng
    )
    test = member(fab.test_labels, np.zeros(len(fab.test_labels), dtype=int), rng)
    fab.oof[name], fab.test[name] = oof, test
    tables = {
        paths.OOF_DIR: fab.pairs[["pair_id", "fold"]].assign(prob=oof),
        paths.HOLDOUT_DIR: fab.holdout_pairs[["pair_id", "fold"]].assign(prob=holdout),
        paths.TEST_PRED_DIR: fab.test_pairs[["img_pair"]].assign(prob=test),
    }
    for directory, table in tables.items():
        _parquet(work / directory / f"{name}.parquet", table.sample(frac=1.0, random_state=1))


def _write_prepared(work, images, test_images, pairs, holdout, test_pairs) -> None:
    table = pd.DataFrame(
        {
            "image": [*images, *test_images],
            "split": ["train"] * len(images) + ["test"] * len(test_images),
            "person": [im.rsplit("/", 1)[0] for im in images] + [""] * len(test_images),
            "family": [im[:5] for im in images] + [""] * len(test_images),
        }
    )
    table["row"] = np.arange(len(table))
    prepared = work / paths.PREPARED_DIR
    _parquet(prepared / "images.parquet", table)
    _parquet(prepared / "pairs.parquet", pairs)
    _parquet(prepared / "holdout_pairs.parquet", holdout)
    _parquet(prepared / "test_pairs.parquet", test_pairs)
    root = work / DATA_ROOT
    root.mkdir(parents=True, exist_ok=True)
    test_pairs[["img_pair"]].assign(is_related=0).to_csv(
        root / "sample_submission.csv", index=False
    )


def _parquet(path: Path, table: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(path, index=False)


def raw_params(members, /, **ensemble) -> dict:
    """A params mapping naming `members` (registry model siamese_cnn, never built) and an
    ensemble section (few bootstrap resamples, to keep tests fast)."""
    return {
        "data": {"root": str(DATA_ROOT)},
        "cache": {"sizes": [64]},
        "members": {name: {"model": "siamese_cnn", "input_size": 64} for name in members},
        "ensemble": {"bootstrap": 50, **ensemble},
    }


def params_for(members, /, **ensemble) -> Params:
    return parse_params(raw_params(members, **ensemble), "test params")

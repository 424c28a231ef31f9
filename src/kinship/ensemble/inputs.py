"""The ensemble's inputs: the prepared pairs and every member's OOF, holdout and test predictions,
checked against each other and aligned into pairs × members matrices.

A member marks the pairs it could not score (an image unreadable) with `scorable` False. OOF and
holdout pairs that any member could not score are left out of the matrices (the stacker neither
fits nor is scored on them) and counted in `unscorable`; every test pair stays (the submission
needs each row), with the members' uninformed values where they could not score it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from kinship import paths
from kinship.io import read_parquet_columns
from kinship.metrics import pair_families

RESERVED = ("pair_id", "fold", "label", "kind", "family", "img_pair")
"""Column names of the ensemble's tables; a member may not be called one of these."""
METHOD_PREFIX = "ensemble_"


@dataclass
class EnsembleInputs:
    members: list[str]
    pairs: pd.DataFrame  # pair_id, fold, label, kind, family (pairs.parquet order)
    oof: np.ndarray  # pairs × members
    holdout_pairs: pd.DataFrame  # same columns, fold −1 (may be empty)
    holdout: np.ndarray
    test_pairs: pd.DataFrame  # img_pair (test_pairs.parquet order)
    test: np.ndarray
    unscorable: dict[str, int] = field(default_factory=dict)  # pairs per split, any member

    @property
    def labels(self) -> np.ndarray:
        return self.pairs["label"].to_numpy(dtype=np.int64)

    @property
    def folds(self) -> np.ndarray:
        return self.pairs["fold"].to_numpy(dtype=np.int64)

    @property
    def groups(self) -> np.ndarray:
        return self.pairs["family"].to_numpy()


def load_inputs(members: list[str], prepared: Path = paths.PREPARED_DIR) -> EnsembleInputs:
    """Read and align everything; any gap or mismatch is an error naming the member and counts."""
    if not members:
        raise ValueError("ensemble: no members to combine (params.yaml `members` is empty)")
    for name in members:
        check_member_name(name)
    family_of = _family_of(_read(prepared / "images.parquet", ["image", "family"]))
    pairs = _with_family(_read(prepared / "pairs.parquet", _PAIR_COLUMNS), family_of)
    holdout_pairs = _with_family(
        _read(prepared / "holdout_pairs.parquet", _PAIR_COLUMNS), family_of
    )
    test_pairs = _read(prepared / "test_pairs.parquet", ["img_pair"])[["img_pair"]]
    oof, holdout, test = [], [], []
    for name in members:
        oof.append(_member_probs(name, paths.OOF_DIR, "OOF", pairs, "pair_id", check_fold=True))
        holdout.append(_member_probs(name, paths.HOLDOUT_DIR, "holdout", holdout_pairs, "pair_id"))
        test.append(_member_probs(name, paths.TEST_PRED_DIR, "test", test_pairs, "img_pair"))
    oof_ok, holdout_ok, test_ok = (
        np.logical_and.reduce([s for _, s in split]) if split[0][1].size else np.ones(0, bool)
        for split in (oof, holdout, test)
    )
    return EnsembleInputs(
        list(members),
        pairs[oof_ok].reset_index(drop=True),
        np.column_stack([p for p, _ in oof])[oof_ok],
        holdout_pairs[holdout_ok].reset_index(drop=True),
        np.column_stack([p for p, _ in holdout])[holdout_ok]
        if len(holdout_pairs)
        else np.empty((0, len(members))),
        test_pairs,
        np.column_stack([p for p, _ in test]),
        {
            "oof": int((~oof_ok).sum()),
            "holdout": int((~holdout_ok).sum()),
            "test": int((~test_ok).sum()),
        },
    )


_PAIR_COLUMNS = ["pair_id", "fold", "label", "kind"]


def check_member_name(name: str) -> None:
    if name in RESERVED or name.startswith(METHOD_PREFIX):
        raise ValueError(
            f"member {name!r}: the name clashes with the ensemble's columns "
            f"({', '.join(RESERVED)}, {METHOD_PREFIX}*); rename it in params.yaml members"
        )


def _read(path: Path, columns: list[str]) -> pd.DataFrame:
    return read_parquet_columns(path, columns, "run `dvc repro prepare`")


def _family_of(images: pd.DataFrame) -> dict[str, str]:
    return dict(zip(images["image"], images["family"], strict=True))


def _with_family(pairs: pd.DataFrame, family_of: dict[str, str]) -> pd.DataFrame:
    pairs = pairs[_PAIR_COLUMNS].reset_index(drop=True)
    try:
        pairs["family"] = pair_families(pairs["pair_id"], family_of)
    except KeyError as err:
        raise ValueError(f"pair image {err} is not in images.parquet (rerun prepare)") from None
    return pairs


def _member_probs(
    name: str, directory: Path, what: str, expected: pd.DataFrame, key: str, check_fold=False
) -> tuple[np.ndarray, np.ndarray]:
    """The member's `prob` and `scorable` flag (all True when the table has no such column)
    for every row of `expected`, in its order."""
    path = directory / f"{name}.parquet"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: {what} predictions of member {name!r} are missing "
            f"(run `dvc repro train@{name}`)"
        )
    table = pd.read_parquet(path)
    columns = [key, "prob"] + (["fold"] if check_fold else [])
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: member {name!r}: missing columns {missing}")
    if not len(expected) and not len(table):
        return np.empty(0), np.ones(0, bool)
    aligned = table.iloc[_positions(name, what, path, table[key], expected[key])]
    if check_fold:
        _check_folds(name, path, aligned["fold"].to_numpy(), expected["fold"].to_numpy())
    probs = aligned["prob"].to_numpy(dtype=float)
    bad = ~np.isfinite(probs) | (probs < 0) | (probs > 1)
    if bad.any():
        raise ValueError(
            f"{path}: member {name!r}: {int(bad.sum())} of {len(probs)} {what} probabilities "
            "are NaN or outside [0, 1]"
        )
    if "scorable" not in aligned.columns:
        return probs, np.ones(len(probs), bool)
    return probs, aligned["scorable"].to_numpy(dtype=bool)


def _positions(name, what, path, got: pd.Series, expected: pd.Series) -> np.ndarray:
    """Where each expected key sits in `got`; an error with counts unless it is a permutation."""
    index = pd.Index(got)
    if index.is_unique and len(index) == len(expected):
        positions = index.get_indexer(expected)
        if (positions >= 0).all():
            return positions
    duplicated = int(got.duplicated().sum())
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    if duplicated or missing or extra:
        example = (missing or extra or got[got.duplicated()].tolist())[0]
        raise ValueError(
            f"{path}: member {name!r} has {len(got)} {what} rows for the {len(expected)} "
            f"prepared {expected.name}s: {len(missing)} missing, {len(extra)} unknown, "
            f"{duplicated} duplicated (e.g. {example!r}); rerun `dvc repro train@{name}`"
        )
    raise AssertionError("unreachable: a permutation passes the fast check")


def _check_folds(name, path, got: np.ndarray, expected: np.ndarray) -> None:
    wrong = got != expected
    if wrong.any():
        raise ValueError(
            f"{path}: member {name!r}: {int(wrong.sum())} of {len(got)} OOF pairs carry another "
            "fold than pairs.parquet (trained on a stale fold assignment); rerun its train stage"
        )

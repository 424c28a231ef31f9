"""The Kaggle submission: exactly the rows of `sample_submission.csv`, in its order, with
`is_related` a probability; validated before it is written, and written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kinship.io import atomic_file

COLUMNS = ["img_pair", "is_related"]


def read_sample(root: Path) -> pd.DataFrame:
    path = Path(root) / "sample_submission.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (data.root must hold the Kaggle layout)")
    sample = pd.read_csv(path, dtype={"img_pair": str})
    if list(sample.columns[:1]) != ["img_pair"]:
        raise ValueError(f"{path}: expected columns {COLUMNS}, got {list(sample.columns)}")
    duplicated = sample["img_pair"][sample["img_pair"].duplicated()]
    if len(duplicated):
        raise ValueError(
            f"{path}: {len(duplicated)} duplicated img_pair rows, e.g. {duplicated.iloc[0]!r}"
        )
    return sample[["img_pair"]]


def build_submission(sample: pd.DataFrame, img_pairs, probs) -> pd.DataFrame:
    """The sample's rows in its order, each with the probability predicted for its img_pair."""
    predicted = pd.Series(
        np.asarray(probs, dtype=float), index=pd.Index(img_pairs, name="img_pair")
    )
    missing = sorted(set(sample["img_pair"]) - set(predicted.index))
    extra = sorted(set(predicted.index) - set(sample["img_pair"]))
    if missing or extra:
        raise ValueError(
            f"test predictions cover {len(predicted)} img_pairs for the {len(sample)} rows of "
            f"sample_submission.csv: {len(missing)} missing, {len(extra)} not in it "
            f"(e.g. {(missing or extra)[0]!r}); rerun prepare and the members' train stages"
        )
    return pd.DataFrame(
        {
            "img_pair": sample["img_pair"].to_numpy(),
            "is_related": predicted.loc[sample["img_pair"]].to_numpy(),
        }
    )


def validate_submission(submission: pd.DataFrame, sample: pd.DataFrame) -> None:
    """Columns, rows and order as in the sample, `is_related` finite and in [0, 1]."""
    if list(submission.columns) != COLUMNS:
        raise ValueError(f"submission: expected columns {COLUMNS}, got {list(submission.columns)}")
    if len(submission) != len(sample):
        raise ValueError(
            f"submission: {len(submission)} rows, sample_submission.csv has {len(sample)}"
        )
    moved = submission["img_pair"].to_numpy() != sample["img_pair"].to_numpy()
    if moved.any():
        first = int(np.flatnonzero(moved)[0])
        raise ValueError(
            f"submission: {int(moved.sum())} rows differ from sample_submission.csv's img_pair "
            f"order (first at row {first}: {submission['img_pair'].iloc[first]!r})"
        )
    probs = pd.to_numeric(submission["is_related"], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(probs) | (probs < 0) | (probs > 1)
    if bad.any():
        raise ValueError(
            f"submission: {int(bad.sum())} is_related values are not probabilities in [0, 1]"
        )


def write_submission(submission: pd.DataFrame, sample: pd.DataFrame, path: Path) -> None:
    """Validate, then write atomically: on any error no (partial) file is left at `path`."""
    validate_submission(submission, sample)
    with atomic_file(Path(path)) as fh:
        submission.to_csv(fh, index=False, float_format="%.6f")

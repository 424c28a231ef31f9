"""The real Kaggle FIW data's known counts (skips when data/real/fiw is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kinship.params import FoldParams, PairParams
from kinship.prepare import prepare

REAL = Path(__file__).resolve().parents[1] / "data" / "real" / "fiw"

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not (REAL / "train").is_dir(), reason="real FIW data not in data/real/fiw"),
]


def test_known_counts_and_f09_holdout(tmp_path):
    summary = prepare(
        REAL,
        FoldParams(k=5, seed=0, holdout_prefix="F09"),
        PairParams(),
        out_dir=tmp_path / "prepared",
        summary_path=tmp_path / "summary.json",
    )
    assert summary["families"] == 470
    assert summary["people"] == 2316
    assert summary["train_images"] == 12379
    assert summary["relationship_rows"] == 3598
    assert summary["usable_relationships"] == 3362
    assert summary["dropped_relationships"] == {"person without images": 236}
    assert summary["test_images"] == 6282
    assert summary["test_pairs"] == 5310
    holdout = summary["folds"]["holdout"]
    # the W6WM9M protocol: each F09 relationship once + as many negatives = 592 pairs
    assert holdout["pairs"]["kin"] + holdout["pairs"]["cross_family"] == 592
    relationships = [summary["folds"][str(k)]["relationships"] for k in range(5)]
    assert max(relationships) - min(relationships) <= 75  # balanced despite F0601's 75 rows

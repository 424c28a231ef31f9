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


def test_real_faces_are_detected_and_kin_are_closer_than_strangers(tmp_path):
    """dlib on real FIW crops: a face is found in nearly every image, and over the holdout's
    first 60 kin and 60 stranger pairs the kin are closer on average."""
    import numpy as np
    import pandas as pd

    from kinship.embed import embed_images
    from kinship.params import EmbedParams

    prepare(
        REAL, FoldParams(k=5, seed=0, holdout_prefix="F09"), PairParams(),
        out_dir=tmp_path / "prepared", summary_path=tmp_path / "summary.json",
    )  # fmt: skip
    holdout = pd.read_parquet(tmp_path / "prepared/holdout_pairs.parquet")
    pairs = pd.concat([holdout[holdout["label"] == k].head(60) for k in (0, 1)])
    images = pd.read_parquet(tmp_path / "prepared/images.parquet")
    used = images[images["image"].isin({*pairs["img1"], *pairs["img2"]})]
    used = used.assign(row=np.arange(len(used)))
    arrays, report = embed_images(used, REAL, EmbedParams(face_box="detect"), 0.0)
    assert report["bad_images"] == 0 and report["faces_detected"] >= 0.9 * len(used)
    row = dict(zip(used["image"], used["row"], strict=True))
    d = arrays["descriptors"][:, 0]
    distance = np.linalg.norm(d[pairs["img1"].map(row)] - d[pairs["img2"].map(row)], axis=1)
    kin = pairs["label"].to_numpy() == 1
    assert distance[kin].mean() < distance[~kin].mean()

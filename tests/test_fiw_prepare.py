"""Indexing an FIW-format folder, its quirks and bad inputs, and the prepare stage's tables."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from fiwfixtures import make_fiw, quirky_fiw

from kinship.fiw import index_dataset
from kinship.params import FoldParams, PairParams
from kinship.prepare import prepare


@pytest.fixture
def quirky(tmp_path):
    return quirky_fiw(tmp_path / "fiw")


def test_index_counts_and_quirks(quirky):
    index = index_dataset(quirky)
    train = index.images[index.images["split"] == "train"]
    assert len(train) == 10 + 7 + 4 + 8 + 6 + 5  # images per family
    assert len(index.images[index.images["split"] == "test"]) == 6
    assert list(index.images["row"]) == list(range(len(index.images)))
    assert train["image"].iloc[0].startswith("F0001/MID1/P")
    assert set(index.people["family"]) == {"F0001", "F0002", "F0003", "F0004", "F0905", "F0906"}
    counts = index.relationship_counts
    assert counts.rows == 17
    assert dict(counts.dropped) == {
        "duplicate (either order)": 1,
        "person without images": 1,
        "same person twice": 1,
        "unknown family": 1,
    }
    assert counts.usable == 13 == len(index.relationships)
    assert (index.relationships["p1"] < index.relationships["p2"]).all()
    assert list(index.test_pairs["img_pair"]) == [
        "face00000.jpg-face00001.jpg",
        "face00002.jpg-face00003.jpg",
        "face00004.jpg-face00005.jpg",
        "face00001.jpg-face00004.jpg",
    ]


def test_missing_train_folder_names_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="train"):
        index_dataset(tmp_path)


def test_bad_relationship_header_names_file(quirky):
    (quirky / "train_relationships.csv").write_text("a,b\nF0001/MID1,F0001/MID2\n")
    with pytest.raises(ValueError, match="train_relationships.csv: header must start with p1,p2"):
        index_dataset(quirky)


def test_malformed_person_token_names_row(quirky):
    path = quirky / "train_relationships.csv"
    path.write_text(path.read_text() + "F0001/MID1,F0001-MID2\n")
    with pytest.raises(ValueError, match=r"row 19: p2 'F0001-MID2' is not a person token"):
        index_dataset(quirky)


def test_submission_with_missing_image_names_row(quirky):
    path = quirky / "sample_submission.csv"
    path.write_text(path.read_text() + "face00000.jpg-face09999.jpg,0\n")
    with pytest.raises(ValueError, match=r"row 6: image 'face09999.jpg' not found in test/"):
        index_dataset(quirky)


def test_submission_with_malformed_pair_names_row(quirky):
    path = quirky / "sample_submission.csv"
    path.write_text(path.read_text() + "face00000.jpg,0\n")
    with pytest.raises(ValueError, match=r"row 6: img_pair 'face00000.jpg' is not"):
        index_dataset(quirky)


def test_test_images_without_submission_is_an_error(quirky):
    (quirky / "sample_submission.csv").unlink()
    with pytest.raises(FileNotFoundError, match="sample_submission.csv is missing"):
        index_dataset(quirky)


def test_dataset_without_test_split(tmp_path):
    root = make_fiw(tmp_path, {"F0001": {"MID1": 1, "MID2": 1}}, [("F0001/MID1", "F0001/MID2")])
    index = index_dataset(root)
    assert len(index.test_pairs) == 0 and (index.images["split"] == "train").all()


TEST_PAIRS = [
    "face00000.jpg-face00001.jpg",
    "face00002.jpg-face00003.jpg",
    "face00004.jpg-face00005.jpg",
    "face00001.jpg-face00004.jpg",
]


def write_test_labels(root, rows, header="img_pair,is_related"):
    (root / "test_labels.csv").write_text("\n".join([header, *rows]) + "\n")


def test_test_labels_are_read_in_any_order(quirky):
    assert index_dataset(quirky).test_labels.empty  # the quirky dataset publishes none
    write_test_labels(quirky, [f"{p},{i % 2}" for i, p in reversed(list(enumerate(TEST_PAIRS)))])
    labels = index_dataset(quirky).test_labels
    assert (
        list(labels.columns) == ["img_pair", "is_related"] and labels["is_related"].dtype == "int8"
    )
    assert dict(zip(labels["img_pair"], labels["is_related"], strict=True)) == {
        p: i % 2 for i, p in enumerate(TEST_PAIRS)
    }


@pytest.mark.parametrize(
    "rows, header, message",
    [
        (
            [f"{p},1" for p in TEST_PAIRS],
            "pair,label",
            r"test_labels.csv: header must start with img_pair,is_related",
        ),
        (
            [f"{TEST_PAIRS[0]},0.7", *(f"{p},1" for p in TEST_PAIRS[1:])],
            None,
            r"test_labels.csv, row 2: is_related must be 0 or 1, got '0.7'",
        ),
        (
            [*(f"{p},1" for p in TEST_PAIRS), "face00000.jpg-face00005.jpg,0"],
            None,
            r"test_labels.csv, row 6: img_pair 'face00000.jpg-face00005.jpg' is not in "
            r"sample_submission.csv",
        ),
        (
            [*(f"{p},1" for p in TEST_PAIRS), f"{TEST_PAIRS[1]},1"],
            None,
            r"test_labels.csv, row 6: img_pair 'face00002.jpg-face00003.jpg' appears twice",
        ),
        (
            [f"{p},1" for p in TEST_PAIRS[:3]],
            None,
            r"test_labels.csv: labels for 3 of the 4 pairs of sample_submission.csv",
        ),
    ],
    ids=["header", "value", "unknown-pair", "duplicate", "missing-rows"],
)
def test_bad_test_labels_name_file_and_row(quirky, rows, header, message):
    write_test_labels(quirky, rows, header or "img_pair,is_related")
    with pytest.raises(ValueError, match=message):
        index_dataset(quirky)


def _prepare(root, tmp_path, **fold_kw):
    out, summary = tmp_path / "prepared", tmp_path / "summary.json"
    pairs = PairParams(in_family_nonkin_ratio=1.0)
    result = prepare(root, FoldParams(**fold_kw), pairs, out_dir=out, summary_path=summary)
    return out, result


def test_prepare_tables_follow_the_contract(quirky, tmp_path):
    out, summary = _prepare(quirky, tmp_path, k=2, holdout_prefix="F09")
    images = pd.read_parquet(out / "images.parquet")
    assert list(images.columns) == ["image", "split", "person", "family", "row"]
    for name in ("pairs.parquet", "holdout_pairs.parquet"):
        pairs = pd.read_parquet(out / name)
        assert list(pairs.columns) == ["pair_id", "fold", "img1", "img2", "label", "kind"]
        assert pairs["fold"].dtype == "int8" and pairs["label"].dtype == "int8"
        assert (pairs["pair_id"] == pairs["img1"] + "|" + pairs["img2"]).all()
        assert (pairs["img1"] < pairs["img2"]).all()
        assert set(pairs["kind"]) <= {"kin", "cross_family", "in_family_nonkin"}
    holdout = pd.read_parquet(out / "holdout_pairs.parquet")
    # holdout protocol: each usable F09 relationship once, plus as many cross-family negatives
    assert (holdout["fold"] == -1).all()
    assert (holdout["kind"] == "kin").sum() == 3 == (holdout["kind"] == "cross_family").sum()
    test = pd.read_parquet(out / "test_pairs.parquet")
    assert list(test.columns) == ["img_pair", "img1", "img2"] and len(test) == 4
    labels = pd.read_parquet(out / "test_labels.parquet")  # the dataset has none: no rows
    assert list(labels.columns) == ["img_pair", "is_related"] and len(labels) == 0
    assert summary["test_labels"] == 0
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written == summary
    assert summary["usable_relationships"] == 13
    assert summary["folds"]["holdout"]["families"] == 2
    assert summary["people_with_one_image"] == 1


def test_prepare_writes_the_test_labels(quirky, tmp_path):
    write_test_labels(quirky, [f"{p},{i % 2}" for i, p in enumerate(TEST_PAIRS)])
    out, summary = _prepare(quirky, tmp_path, k=2)
    labels = pd.read_parquet(out / "test_labels.parquet")
    assert list(labels["img_pair"]) == TEST_PAIRS and list(labels["is_related"]) == [0, 1, 0, 1]
    assert summary["test_labels"] == 4
    write_test_labels(quirky, [f"{p},5" for p in TEST_PAIRS])  # bad labels: nothing rewritten
    with pytest.raises(ValueError, match="is_related must be 0 or 1"):
        _prepare(quirky, tmp_path, k=2)
    assert pd.read_parquet(out / "test_labels.parquet").equals(labels)


def test_prepare_failure_leaves_previous_outputs_untouched(quirky, tmp_path):
    out, _ = _prepare(quirky, tmp_path, k=2)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (quirky / "sample_submission.csv").write_text("img_pair,is_related\nnope,0\n")
    with pytest.raises(ValueError):
        _prepare(quirky, tmp_path, k=2)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".prepared")] == []


def test_prepare_is_deterministic(quirky, tmp_path):
    out1, s1 = _prepare(quirky, tmp_path / "a", k=2)
    out2, s2 = _prepare(quirky, tmp_path / "b", k=2)
    for name in ("pairs.parquet", "people.parquet", "families.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(out1 / name), pd.read_parquet(out2 / name))
    assert s1 == s2


def test_too_many_folds_is_a_clear_error(quirky, tmp_path):
    with pytest.raises(ValueError, match="folds.k = 9 needs at least 9 families"):
        _prepare(quirky, tmp_path, k=9)

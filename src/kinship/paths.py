"""Every path the pipeline reads or writes, relative to the repository root."""

from __future__ import annotations

from pathlib import Path

PARAMS_FILE = Path("params.yaml")

SYNTHETIC_DIR = Path("data/synthetic")
PREPARED_DIR = Path("data/prepared")
CACHE_DIR = Path("data/cache")
EMBEDDINGS_DIR = Path("data/embeddings")
"""The embed stage's per-image dlib descriptors and landmarks (images-table order)."""
OOF_DIR = Path("data/oof")
HOLDOUT_DIR = Path("data/holdout")
TEST_PRED_DIR = Path("data/test")
MODELS_DIR = Path("models")
REPORTS_DIR = Path("reports")
WEIGHTS_DIR = Path("weights")
"""Pretrained files, one folder per member: train@<member> depends on weights/<member>/ only."""

IMAGES_TABLE = PREPARED_DIR / "images.parquet"
PEOPLE_TABLE = PREPARED_DIR / "people.parquet"
FAMILIES_TABLE = PREPARED_DIR / "families.parquet"
RELATIONSHIPS_TABLE = PREPARED_DIR / "relationships.parquet"
PAIRS_TABLE = PREPARED_DIR / "pairs.parquet"
HOLDOUT_PAIRS_TABLE = PREPARED_DIR / "holdout_pairs.parquet"
TEST_PAIRS_TABLE = PREPARED_DIR / "test_pairs.parquet"
TEST_LABELS_TABLE = PREPARED_DIR / "test_labels.parquet"
"""img_pair, is_related: the dataset's test labels (no rows when it has none); the report only."""
PREPARE_SUMMARY = REPORTS_DIR / "prepare" / "summary.json"
CACHE_REPORTS_DIR = REPORTS_DIR / "cache"
EMBED_REPORT = REPORTS_DIR / "embed" / "dlib.json"
CROP_SPEC = Path("data/crop_spec.json")
"""How the training images frame a face (the crop_spec stage; `kinship.faces`)."""
CROP_FILE = "crop.json"
"""A member's copy of the crop spec, at its own input size, in models/<member>/."""
SUBMISSION_FILE = Path("submission.csv")
ENSEMBLE_MODELS_DIR = MODELS_DIR / "ensemble"
ENSEMBLE_REPORTS_DIR = REPORTS_DIR / "ensemble"
MEMBER_REPORTS_DIR = REPORTS_DIR / "members"
REPORT_HTML = REPORTS_DIR / "index.html"
REPORT_FIGURES_DIR = REPORTS_DIR / "figures"
"""The report's figures as SVG files: DVC image plots (rendered offline, no JavaScript)."""
REPORT_PLOTS_DIR = REPORTS_DIR / "plots"
"""The figures' data as CSV (one row per point): DVC data plots."""
REPORT_METRICS = REPORTS_DIR / "report" / "metrics.json"


def cache_file(size: int) -> Path:
    """The decode-once image cache for one input size: N×S×S×3 uint8 in images-table order."""
    return CACHE_DIR / f"{size}.npy"


def curves_dir(name: str, fold: int) -> Path:
    """A fold's training curves (dvclive): part of its member's train stage outputs."""
    return REPORTS_DIR / "curves" / name / f"fold{fold}"


def member_weights_dir(name: str) -> Path:
    """The folder of member `name`'s pretrained file (its train stage's only weights dep)."""
    return WEIGHTS_DIR / name

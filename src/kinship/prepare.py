"""The prepare stage: index an FIW-format folder, assign folds, sample fixed evaluation pairs."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from kinship import paths
from kinship.fiw import FiwIndex, index_dataset
from kinship.folds import HOLDOUT_FOLD, family_folds
from kinship.io import atomic_dir, write_json
from kinship.pairs import KINDS, holdout_pairs, validation_pairs
from kinship.params import FoldParams, PairParams

log = logging.getLogger(__name__)


def run_prepare(params) -> None:
    """The prepare stage, on params.yaml's `data.root`, `folds` and `pairs`."""
    prepare(params.data.root_path, params.folds, params.pairs)


def prepare(
    root: Path,
    folds: FoldParams,
    pairs: PairParams,
    out_dir: Path = paths.PREPARED_DIR,
    summary_path: Path = paths.PREPARE_SUMMARY,
) -> dict:
    """Write the prepared tables into `out_dir` (atomically) and a summary; return the summary."""
    index = index_dataset(root)
    kin_counts = index.relationships.groupby("family").size()
    family_fold = family_folds(
        index.people["family"], kin_counts, folds.k, folds.seed, folds.holdout_prefix
    )
    people = index.people.assign(fold=index.people["family"].map(family_fold).astype("int8"))
    relationships = index.relationships.assign(
        fold=index.relationships["family"].map(family_fold).astype("int8")
    )
    families = _families_table(people, relationships, family_fold)
    common = dict(images=index.images, people=people, relationships=relationships)
    val = validation_pairs(
        **common,
        family_fold=family_fold,
        seed=pairs.seed,
        kin_cap=pairs.kin_pairs_per_relationship,
        cross_family_ratio=pairs.cross_family_ratio,
        in_family_nonkin_ratio=pairs.in_family_nonkin_ratio,
    )
    holdout = holdout_pairs(
        **common,
        family_fold=family_fold,
        seed=pairs.seed,
        in_family_nonkin_ratio=pairs.in_family_nonkin_ratio,
    )
    tables = {
        paths.IMAGES_TABLE.name: index.images,
        paths.PEOPLE_TABLE.name: people,
        paths.FAMILIES_TABLE.name: families,
        paths.RELATIONSHIPS_TABLE.name: relationships,
        paths.PAIRS_TABLE.name: val,
        paths.HOLDOUT_PAIRS_TABLE.name: holdout,
        paths.TEST_PAIRS_TABLE.name: index.test_pairs,
        paths.TEST_LABELS_TABLE.name: index.test_labels,
    }
    summary = summarize(index, families, val, holdout)
    with atomic_dir(out_dir) as tmp:
        for name, table in tables.items():
            table.to_parquet(tmp / name, index=False)
    write_json(summary_path, summary)
    _log_summary(summary)
    return summary


def _families_table(
    people: pd.DataFrame, relationships: pd.DataFrame, family_fold: pd.Series
) -> pd.DataFrame:
    grouped = people.groupby("family").agg(
        n_people=("person", "size"), n_images=("n_images", "sum")
    )
    grouped["n_relationships"] = relationships.groupby("family").size()
    grouped["n_relationships"] = grouped["n_relationships"].fillna(0).astype(int)
    grouped["fold"] = family_fold.reindex(grouped.index).astype("int8")
    return grouped.reset_index()


def summarize(
    index: FiwIndex, families: pd.DataFrame, val: pd.DataFrame, holdout: pd.DataFrame
) -> dict:
    """Counts a person reads to check the data: per split, per dropped reason, per fold and kind."""
    train = index.images[index.images["split"] == "train"]
    counts = index.relationship_counts
    per_fold = {}
    for fold, fams in families.groupby("fold"):
        pairs = holdout if fold == HOLDOUT_FOLD else val[val["fold"] == fold]
        name = "holdout" if fold == HOLDOUT_FOLD else str(fold)
        per_fold[name] = {
            "families": int(len(fams)),
            "people": int(fams["n_people"].sum()),
            "images": int(fams["n_images"].sum()),
            "relationships": int(fams["n_relationships"].sum()),
            "pairs": {kind: int((pairs["kind"] == kind).sum()) for kind in KINDS},
        }
    return {
        "families": int(len(families)),
        "people": int(len(index.people)),
        "train_images": int(len(train)),
        "people_with_one_image": int((index.people["n_images"] == 1).sum()),
        "relationship_rows": counts.rows,
        "usable_relationships": counts.usable,
        "dropped_relationships": dict(sorted(counts.dropped.items())),
        "skipped_files": dict(sorted(index.skipped_files.items())),
        "test_images": int((index.images["split"] == "test").sum()),
        "test_pairs": int(len(index.test_pairs)),
        "test_labels": int(len(index.test_labels)),
        "folds": per_fold,
    }


def _log_summary(summary: dict) -> None:
    log.info(
        "%d families, %d people, %d train images; %d of %d relationship rows usable (dropped: %s)",
        summary["families"],
        summary["people"],
        summary["train_images"],
        summary["usable_relationships"],
        summary["relationship_rows"],
        summary["dropped_relationships"] or "none",
    )
    for fold, c in summary["folds"].items():
        log.info(
            "fold %s: %d families, %d relationships, pairs %s",
            fold,
            c["families"],
            c["relationships"],
            c["pairs"],
        )
    log.info("test: %d images, %d pairs", summary["test_images"], summary["test_pairs"])

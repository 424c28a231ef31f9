"""The report's inputs, read and checked: every gap is an error naming the file (and the key).

- `reports/ensemble/metrics.json` (holdout AUCs included) and `oof.parquet` (the ensemble stage);
- `reports/members/<member>/metrics.json` and `timing.json` (each member's train stage);
- `reports/prepare/summary.json` (prepare);
- `submission.csv`, and `data/prepared/test_labels.parquet` (the dataset's test labels, if any).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kinship import paths
from kinship.io import read_parquet_columns

PAIR_COLUMNS = ("pair_id", "fold", "label", "kind", "family")
METHOD_PREFIX = "ensemble_"
ENSEMBLE_COLUMN = f"{METHOD_PREFIX}prob"
SELECTED_COLUMN = f"{METHOD_PREFIX}selected"
RANKED_COLUMN = f"{METHOD_PREFIX}ranked"
ENSEMBLE_KEYS = (
    "members",
    "chosen_method",
    "oof.pairs",
    "oof.positives",
    "oof.members",
    "oof.methods",
    "oof.ensemble.auc",
    "oof.gain_over_best_member.over",
    "oof.brier",
)
"""The keys of reports/ensemble/metrics.json the report cannot do without."""


@dataclass(frozen=True)
class MemberInfo:
    """What a member was trained with and how long it took (from its train stage's reports)."""

    name: str
    model: str
    input_size: int | None  # None: a frozen member (features from the embed stage)
    weights: str
    train_seconds: float
    folds: int
    seeds: int
    unscorable: dict[str, int] = field(default_factory=dict)  # pairs with an unreadable image


@dataclass
class ReportInputs:
    ensemble: dict[str, Any]  # reports/ensemble/metrics.json
    oof: pd.DataFrame  # pair columns, one per member, ensemble_<method>, _selected, _ranked, _prob
    members: dict[str, MemberInfo]  # in the ensemble's member order
    summary: dict[str, Any]  # reports/prepare/summary.json
    submission: pd.DataFrame  # img_pair, is_related
    test_labels: pd.DataFrame | None  # img_pair, is_related; None when the dataset has none

    @property
    def member_names(self) -> list[str]:
        return list(self.members)

    @property
    def methods(self) -> list[str]:
        return list(self.ensemble["oof"]["methods"])


def load_inputs() -> ReportInputs:
    """Everything the report shows, from the files the earlier stages wrote."""
    ensemble_path = paths.ENSEMBLE_REPORTS_DIR / "metrics.json"
    ensemble = read_json(ensemble_path)
    for key in ENSEMBLE_KEYS:
        require(ensemble, key, ensemble_path)
    names, methods = list(ensemble["members"]), list(ensemble["oof"]["methods"])
    for group, expected in (("members", names), ("methods", methods)):
        missing = [n for n in expected if n not in ensemble["oof"][group]]
        if missing:
            raise ValueError(
                f"{ensemble_path}: oof.{group} lacks {missing} ({_producer(ensemble_path)})"
            )
    columns = [*PAIR_COLUMNS, *names, *(METHOD_PREFIX + m for m in methods)]
    columns += [SELECTED_COLUMN, RANKED_COLUMN, ENSEMBLE_COLUMN]
    return ReportInputs(
        ensemble=ensemble,
        oof=read_table(paths.ENSEMBLE_REPORTS_DIR / "oof.parquet", columns),
        members={name: member_info(name) for name in names},
        summary=read_json(paths.PREPARE_SUMMARY),
        submission=read_labelled_pairs(paths.SUBMISSION_FILE),
        test_labels=read_test_labels(),
    )


def read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing ({_producer(path)})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err}); rerun {_producer(path)}") from None


def require(data: dict[str, Any], dotted: str, path: Path) -> Any:
    """`data["a"]["b"]` for `dotted` = "a.b"; an error naming the file and the key if absent."""
    value: Any = data
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            raise ValueError(f"{path}: missing key {dotted!r} (rerun {_producer(path)})")
        value = value[key]
    return value


def read_table(path: Path, columns: list[str]) -> pd.DataFrame:
    """The per-pair table with `columns`, at least one row, finite scores."""
    table = read_parquet_columns(path, columns, f"rerun {_producer(path)}")
    if not len(table):
        raise ValueError(f"{path}: no rows (rerun {_producer(path)})")
    scores = table[columns[len(PAIR_COLUMNS) :]].to_numpy(dtype=float)
    if not np.isfinite(scores).all():
        bad = [c for c in columns[len(PAIR_COLUMNS) :] if not np.isfinite(table[c]).all()]
        raise ValueError(f"{path}: NaN or infinite scores in columns {bad}")
    return table[columns].reset_index(drop=True)


def member_info(name: str) -> MemberInfo:
    """A member's model, input size and weights (metrics.json) and its training time."""
    directory = paths.MEMBER_REPORTS_DIR / name
    metrics_path, timing_path = directory / "metrics.json", directory / "timing.json"
    metrics, timing = read_json(metrics_path), read_json(timing_path)
    folds = require(timing, "folds", timing_path)
    if not isinstance(folds, list) or not folds:
        raise ValueError(f"{timing_path}: key 'folds' must be a non-empty list")
    seeds = [require(fold, "seeds", timing_path) for fold in folds]
    seconds = 0.0
    for i, runs in enumerate(seeds):
        for j, run in enumerate(runs):
            if "train_seconds" not in run:
                raise ValueError(
                    f"{timing_path}: missing key 'folds[{i}].seeds[{j}].train_seconds' "
                    f"(rerun {_producer(timing_path)})"
                )
            seconds += float(run["train_seconds"])
    return MemberInfo(
        name=name,
        model=str(require(metrics, "model", metrics_path)),
        input_size=_optional_int(require(metrics, "input_size", metrics_path)),
        weights=str(require(metrics, "weights", metrics_path)),
        train_seconds=seconds,
        folds=len(folds),
        seeds=max(len(runs) for runs in seeds),
        unscorable=dict(metrics.get("unscorable_pairs", {})),
    )


def read_labelled_pairs(path: Path) -> pd.DataFrame:
    """A Kaggle-format CSV (`img_pair,is_related`) with unique pairs and finite values."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing ({_producer(path)})")
    table = pd.read_csv(path, dtype={"img_pair": str})
    if list(table.columns[:2]) != ["img_pair", "is_related"]:
        raise ValueError(f"{path}: expected columns img_pair,is_related; got {list(table.columns)}")
    values = pd.to_numeric(table["is_related"], errors="coerce").to_numpy(dtype=float)
    if not np.isfinite(values).all():
        raise ValueError(f"{path}: {int((~np.isfinite(values)).sum())} non-numeric is_related")
    duplicated = table["img_pair"][table["img_pair"].duplicated()]
    if len(duplicated):
        raise ValueError(f"{path}: duplicated img_pair {duplicated.iloc[0]!r}")
    return pd.DataFrame({"img_pair": table["img_pair"], "is_related": values})


def read_test_labels() -> pd.DataFrame | None:
    """The test labels prepare took from the dataset (the synthetic one has them), else None."""
    labels = read_parquet_columns(
        paths.TEST_LABELS_TABLE, ["img_pair", "is_related"], "`dvc repro prepare`"
    )
    return labels if len(labels) else None


def _producer(path: Path) -> str:
    """Which stage writes `path`, for error messages."""
    parts = Path(path).parts
    if path == paths.SUBMISSION_FILE or paths.ENSEMBLE_REPORTS_DIR.name in parts:
        return "`dvc repro ensemble`"
    if paths.MEMBER_REPORTS_DIR.name in parts:
        member = parts[parts.index(paths.MEMBER_REPORTS_DIR.name) + 1]
        return f"`dvc repro train@{member}`"
    if path == paths.PREPARE_SUMMARY:
        return "`dvc repro prepare`"
    return "check data.root in params.yaml"


def _optional_int(value) -> int | None:
    return None if value is None else int(value)

"""Everything the report shows, computed once from its inputs (no rendering here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kinship.fiw import TEST_LABELS_FILE
from kinship.metrics import auc
from kinship.report import numbers
from kinship.report.inputs import (
    ENSEMBLE_COLUMN,
    METHOD_PREFIX,
    RANKED_COLUMN,
    SELECTED_COLUMN,
    ReportInputs,
)

THRESHOLD = 0.5
"""The cut on the calibrated ensemble probability for the confusion matrix: for a calibrated
score, 0.5 is the accuracy-optimal threshold, and it is chosen without looking at the labels."""


@dataclass(frozen=True)
class Scored:
    """One row of the scores table: a member, a method or the ensemble (its AUC is the raw chosen
    score's, its accuracies the calibrated probability's)."""

    key: str  # data-row: member:NAME, method:NAME or ensemble
    name: str
    group: str  # member | method | ensemble
    column: str  # its column in the per-pair tables

    def entry(self, split: dict) -> dict:
        """This row's entry in `metrics.json`'s oof / holdout section."""
        if self.group == "ensemble":
            return split["ensemble"]
        return split[f"{self.group}s"][self.name]


@dataclass
class ReportContent:
    rows: list[Scored]
    accuracy: dict[str, dict[str, float]]  # row key -> threshold_accuracy
    roc: dict[str, tuple[np.ndarray, np.ndarray, float]]  # curve name -> fpr, tpr, auc
    ensemble_curve: str
    correlation: pd.DataFrame
    reliability: dict[str, pd.DataFrame]  # curve name -> bins
    confusion: dict[str, int]
    classification: dict[str, dict[str, float]]
    by_kind: dict[str, dict]  # member or ensemble curve name -> auc_by_kind
    submission: dict | None
    test_labels_path: Path


def score_rows(inputs: ReportInputs) -> list[Scored]:
    rows = [Scored(f"member:{n}", n, "member", n) for n in inputs.member_names]
    rows += [Scored(f"method:{m}", m, "method", METHOD_PREFIX + m) for m in inputs.methods]
    rows.append(Scored("ensemble", "ensemble", "ensemble", ENSEMBLE_COLUMN))
    return rows


def compute(inputs: ReportInputs, data_root: Path) -> ReportContent:
    oof = inputs.oof
    labels = oof["label"].to_numpy(dtype=np.int64)
    rows = score_rows(inputs)
    probs = oof[ENSEMBLE_COLUMN].to_numpy(dtype=float)
    ensemble_curve = f"ensemble ({inputs.ensemble.get('chosen_method', 'chosen')})"
    curves = {n: oof[n].to_numpy(dtype=float) for n in inputs.member_names}
    # ranking on the raw chosen score: pooled per-fold calibrators reorder pairs across folds
    curves[ensemble_curve] = oof[RANKED_COLUMN].to_numpy(dtype=float)
    counts = numbers.confusion(labels, probs, THRESHOLD)
    labels_path = Path(data_root) / TEST_LABELS_FILE
    return ReportContent(
        rows=rows,
        accuracy={r.key: numbers.threshold_accuracy(labels, oof[r.column]) for r in rows},
        roc={name: roc_curve(labels, s) for name, s in curves.items()},
        ensemble_curve=ensemble_curve,
        correlation=numbers.correlations(oof, inputs.member_names),
        reliability=reliability_curves(inputs, labels),
        confusion=counts,
        classification=numbers.classification_report(counts),
        by_kind={
            name: numbers.auc_by_kind(labels, oof["kind"].to_numpy(), scores)
            for name, scores in curves.items()
        },
        submission=(
            None
            if inputs.test_labels is None
            else numbers.submission_auc(inputs.submission, inputs.test_labels, labels_path)
        ),
        test_labels_path=labels_path,
    )


def roc_curve(labels: np.ndarray, scores) -> tuple[np.ndarray, np.ndarray, float]:
    """The curve thinned for drawing (≤ 500 points), and the AUC of the full curve."""
    return (*numbers.thin(*numbers.roc_points(labels, scores)), auc(labels, scores))


def reliability_curves(inputs: ReportInputs, labels: np.ndarray) -> dict[str, pd.DataFrame]:
    """The calibrated probability's reliability bins, and the raw chosen score's."""
    chosen = inputs.ensemble.get("chosen_method", "selected")
    return {
        "calibrated": numbers.reliability(labels, inputs.oof[ENSEMBLE_COLUMN]),
        f"raw ({chosen}, before calibration)": numbers.reliability(
            labels, inputs.oof[SELECTED_COLUMN]
        ),
    }


def report_metrics(content: ReportContent) -> dict:
    """The report's own numbers for `dvc metrics show/diff`: the submission's AUC on the test
    labels (when published), AUC per negative kind, the confusion matrix at the threshold."""
    submission = content.submission
    if submission is not None:
        submission = {**submission, "auc": _r(submission["auc"])}
    return {
        "submission": submission,
        "auc_by_kind": {  # the ensemble under a fixed key, whichever method was chosen
            ("ensemble" if name == content.ensemble_curve else name): {
                kind: _r(v["auc"]) for kind, v in kinds.items()
            }
            for name, kinds in content.by_kind.items()
        },
        "threshold": THRESHOLD,
        "confusion": content.confusion,
        "accuracy": _r(content.classification["accuracy"]["f1"]),
    }


def plot_tables(content: ReportContent) -> dict[str, pd.DataFrame]:
    """The figures' data, one row per point, for DVC data plots (`reports/plots/*.csv`)."""
    roc = pd.concat(
        [
            pd.DataFrame({"curve": name, "point": np.arange(len(fpr)), "fpr": fpr, "tpr": tpr})
            for name, (fpr, tpr, _) in content.roc.items()
        ],
        ignore_index=True,
    )
    calibration = pd.concat(
        [
            bins.assign(curve=name)[["curve", "bin", "predicted", "observed", "count"]]
            for name, bins in content.reliability.items()
        ],
        ignore_index=True,
    ).rename(columns={"bin": "point"})
    return {"roc.csv": roc, "calibration.csv": calibration}


def _r(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)

"""The numbers behind the report's figures and tables, computed from the per-pair tables.

Pure functions of arrays: ROC points, thresholds and accuracies, the confusion matrix and
classification report, AUC per negative kind, reliability bins, correlations, the submission's AUC.
The AUC and the best threshold are `kinship.metrics`' (the package has one of each).
NumPy only: importing scikit-learn (and SciPy behind it) would cost the stage 1.5 s of its 4;
the tests check every function here against scikit-learn.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from kinship.metrics import accuracy, auc, best_threshold, roc_counts

NEGATIVE_KINDS = ("cross_family", "in_family_nonkin")
POSITIVE_KIND = "kin"
CLASS_NAMES = {0: "not kin", 1: "kin"}


def roc_points(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    """The ROC curve's vertices from (0, 0) to (1, 1), collinear points dropped (as scikit-learn's
    `roc_curve`); NaN rates when a class is absent."""
    fps, tps, _ = roc_counts(labels, scores)
    if len(fps) > 2:
        bends = np.r_[True, (np.diff(fps, 2) != 0) | (np.diff(tps, 2) != 0), True]
        fps, tps = fps[bends], tps[bends]
    fps, tps = np.r_[0, fps], np.r_[0, tps]
    with np.errstate(invalid="ignore", divide="ignore"):
        return fps / fps[-1], tps / tps[-1]


def thin(fpr: np.ndarray, tpr: np.ndarray, step: float = 0.004) -> tuple[np.ndarray, np.ndarray]:
    """At most ~2/step points of a curve for drawing: a point is kept when the path has moved
    `step` (in |Δfpr| + |Δtpr|) since the last kept one; both ends are always kept."""
    travelled = np.r_[0, np.cumsum(np.abs(np.diff(fpr)) + np.abs(np.diff(tpr)))]
    keep = np.r_[True, np.diff(np.floor(travelled / step)) > 0]
    keep[-1] = True
    return fpr[keep], tpr[keep]


def threshold_accuracy(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Accuracy at 0.5, the accuracy-maximising threshold and its accuracy (optimistic: chosen
    and scored on the same pairs; `kinship.metrics.best_threshold`)."""
    threshold, best = best_threshold(labels, scores)
    return {
        "accuracy_at_0.5": accuracy(labels, scores, 0.5),
        "best_threshold": threshold,
        "accuracy_at_best": best,
    }


def confusion(labels: np.ndarray, probs: np.ndarray, threshold: float) -> dict[str, int]:
    """Counts of true/false negatives/positives when `probs >= threshold` means kin."""
    predicted = np.asarray(probs) >= threshold
    actual = np.asarray(labels) == 1
    return {
        "tn": int(np.sum(~predicted & ~actual)),
        "fp": int(np.sum(predicted & ~actual)),
        "fn": int(np.sum(~predicted & actual)),
        "tp": int(np.sum(predicted & actual)),
    }


def classification_report(counts: dict[str, int]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support per class, their macro average, and the accuracy (as
    scikit-learn's report; 0 where a ratio has no denominator)."""
    tn, fp, fn, tp = counts["tn"], counts["fp"], counts["fn"], counts["tp"]
    rows = {
        CLASS_NAMES[0]: _prf(tn, fn, fp),  # class 0: correct = tn, predicted 0 = tn+fn
        CLASS_NAMES[1]: _prf(tp, fp, fn),
    }
    rows["macro avg"] = {
        key: float(np.mean([rows[c][key] for c in CLASS_NAMES.values()]))
        for key in ("precision", "recall", "f1")
    }
    rows["macro avg"]["support"] = tn + fp + fn + tp
    total = tn + fp + fn + tp
    rows["accuracy"] = {"f1": _ratio(tn + tp, total), "support": total}
    return rows


def _prf(correct: int, wrongly_claimed: int, missed: int) -> dict[str, float]:
    precision = _ratio(correct, correct + wrongly_claimed)
    recall = _ratio(correct, correct + missed)
    return {
        "precision": precision,
        "recall": recall,
        "f1": _ratio(2 * precision * recall, precision + recall),
        "support": correct + missed,
    }


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b else 0.0


def auc_by_kind(labels, kinds, scores) -> dict[str, dict[str, float | int | None]]:
    """For each negative kind: the AUC of kin pairs against that kind's negatives alone (None
    when there are no such negatives), with the negatives' count."""
    labels, kinds = np.asarray(labels), np.asarray(kinds, dtype=object)
    positives = labels == 1
    result = {}
    for kind in NEGATIVE_KINDS:
        negatives = (labels == 0) & (kinds == kind)
        rows = positives | negatives
        value = auc(labels[rows], np.asarray(scores)[rows]) if negatives.any() else float("nan")
        result[kind] = {"auc": _none(value), "negatives": int(negatives.sum())}
    return result


def reliability(labels, probs, bins: int = 10) -> pd.DataFrame:
    """Equal-width bins of the predicted probability: the mean prediction, the observed kin
    fraction and the count of each non-empty bin."""
    probs = np.clip(np.asarray(probs, dtype=float), 0, 1)
    which = np.minimum((probs * bins).astype(int), bins - 1)
    table = pd.DataFrame({"bin": which, "predicted": probs, "observed": np.asarray(labels)})
    grouped = table.groupby("bin").agg(
        predicted=("predicted", "mean"), observed=("observed", "mean"), count=("observed", "size")
    )
    return grouped.reset_index()


def correlations(table: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Pearson correlation of the columns' scores; NaN beside a constant column."""
    values = table[columns].to_numpy(dtype=float)
    centred = values - values.mean(axis=0)
    norms = np.sqrt((centred**2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = (centred.T @ centred) / np.outer(norms, norms)
    matrix[np.outer(norms, norms) == 0] = np.nan
    np.fill_diagonal(matrix, np.where(norms > 0, 1.0, np.nan))
    return pd.DataFrame(matrix, index=columns, columns=columns)


def submission_auc(submission: pd.DataFrame, labels: pd.DataFrame, labels_path) -> dict:
    """The AUC of the submitted probabilities against the published test labels; every
    submitted pair must have a label."""
    truth = labels.set_index("img_pair")["is_related"]
    missing = submission.loc[~submission["img_pair"].isin(truth.index), "img_pair"]
    if len(missing):
        raise ValueError(
            f"{labels_path}: no label for {len(missing)} of the {len(submission)} submitted "
            f"img_pairs (e.g. {missing.iloc[0]!r}); is it the labels file of this data.root?"
        )
    y = truth.loc[submission["img_pair"]].to_numpy(dtype=np.int64)
    return {
        "auc": _none(auc(y, submission["is_related"].to_numpy(dtype=float))),
        "pairs": int(len(y)),
        "positives": int(y.sum()),
    }


def _none(x: float) -> float | None:
    return None if x is None or np.isnan(x) else float(x)

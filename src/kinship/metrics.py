"""Scores every report uses: ROC AUC with family-level bootstrap intervals, accuracy, thresholds."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

N_BOOTSTRAP = 1000


def auc(labels: np.ndarray, probs: np.ndarray) -> float:
    """ROC AUC over the whole set (NaN when only one class is present)."""
    labels = np.asarray(labels)
    if labels.min(initial=0) == labels.max(initial=0):
        return float("nan")
    return float(roc_auc_score(labels, probs))


def bootstrap_auc(
    labels: np.ndarray,
    probs: np.ndarray,
    groups: np.ndarray,
    seed: int = 0,
    n_boot: int = N_BOOTSTRAP,
) -> tuple[float, float]:
    """95 % interval of the AUC, resampling whole groups (families) with replacement.

    Pairs of one family are correlated, so resampling pairs would give intervals too narrow.
    """
    labels, probs = np.asarray(labels), np.asarray(probs)
    codes, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(len(codes))]
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(n_boot):
        picked = np.concatenate([members[g] for g in rng.integers(len(codes), size=len(codes))])
        score = auc(labels[picked], probs[picked])
        if not np.isnan(score):
            scores.append(score)
    if not scores:
        return float("nan"), float("nan")
    low, high = np.percentile(scores, [2.5, 97.5])
    return float(low), float(high)


def best_threshold(labels: np.ndarray, probs: np.ndarray) -> tuple[float, float]:
    """The threshold maximising accuracy on these pairs, and that accuracy (optimistic: chosen and
    scored on the same pairs)."""
    labels, probs = np.asarray(labels), np.asarray(probs)
    if labels.min(initial=0) == labels.max(initial=0):
        return 0.5, accuracy(labels, probs, 0.5)
    _, _, thresholds = roc_curve(labels, probs)
    thresholds = np.clip(thresholds[np.isfinite(thresholds)], 0, 1)
    accs = [accuracy(labels, probs, t) for t in thresholds]
    i = int(np.argmax(accs))
    return float(thresholds[i]), float(accs[i])


def accuracy(labels: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> float:
    return float(np.mean((np.asarray(probs) >= threshold) == (np.asarray(labels) == 1)))


def pair_families(pair_ids, family_of_image: dict[str, str]) -> np.ndarray:
    """The family of each pair's first image: the resampling unit of the bootstrap."""
    return np.array([family_of_image[pid.split("|")[0]] for pid in pair_ids], dtype=object)


def score_summary(labels, probs, groups, seed: int = 0) -> dict:
    """AUC with its family-bootstrap interval, accuracies and counts, rounded for reports."""
    low, high = bootstrap_auc(labels, probs, groups, seed)
    threshold, best_acc = best_threshold(labels, probs)
    labels = np.asarray(labels)
    return {
        "auc": _r(auc(labels, probs)),
        "auc_ci95": [_r(low), _r(high)],
        "accuracy_at_0.5": _r(accuracy(labels, probs, 0.5)),
        "best_threshold": _r(threshold),
        "accuracy_at_best_threshold": _r(best_acc),
        "pairs": int(len(labels)),
        "positives": int(labels.sum()),
    }


def _r(x: float) -> float | None:
    return None if np.isnan(x) else round(float(x), 6)

"""Scores every stage uses: ROC AUC with family-level bootstrap intervals, accuracy, thresholds.

The package's one AUC (`auc`, and `family_bootstrap_aucs` for many resamples at once: both are
`_weighted_auc`, the Mann-Whitney statistic) and its one best-threshold search (`best_threshold`).
NumPy only: the report stage imports this module and scikit-learn would cost it 1.5 s; the tests
check both against scikit-learn.
"""

from __future__ import annotations

import numpy as np

N_BOOTSTRAP = 1000


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic (ties count 1/2); NaN when one class is present.

    Equal to scikit-learn's `roc_auc_score` without its overhead (about 0.3 ms for 4,000 pairs):
    the weight search and `min_auc` run it thousands of times inside the ensemble's nested CV.
    """
    labels = np.asarray(labels)
    return float(
        _weighted_auc(labels, np.asarray(scores, dtype=float), np.ones((1, len(labels))))[0]
    )


def column_aucs(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """`auc` of every column of `scores` (pairs × columns)."""
    return np.array([auc(labels, column) for column in np.asarray(scores).T])


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
    boots = family_bootstrap_aucs(labels, probs, groups, seed, n_boot)[:, 0]
    boots = boots[~np.isnan(boots)]
    if not len(boots):
        return float("nan"), float("nan")
    low, high = np.percentile(boots, [2.5, 97.5])
    return float(low), float(high)


def roc_counts(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False and true positives when every distinct score, high to low, is the threshold
    (`scores >= threshold` means kin), and those thresholds."""
    scores = np.asarray(scores, dtype=float)
    order = np.argsort(-scores, kind="stable")
    ranked, hits = scores[order], (np.asarray(labels)[order] == 1)
    last = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]  # end of each tie group
    tps = np.cumsum(hits)[last]
    return (last + 1) - tps, tps, ranked[last]


def best_threshold(labels: np.ndarray, probs: np.ndarray) -> tuple[float, float]:
    """The threshold maximising accuracy on these pairs, and that accuracy (optimistic: chosen and
    scored on the same pairs). One pass over the distinct scores; the highest threshold wins a
    tie; (0.5, its accuracy) when one class is present."""
    labels, probs = np.asarray(labels), np.asarray(probs, dtype=float)
    if len(np.unique(labels)) < 2:
        return 0.5, accuracy(labels, probs, 0.5)
    fps, tps, thresholds = roc_counts(labels, probs)
    negatives = int(len(labels) - np.sum(labels == 1))
    correct = tps + (negatives - fps)
    i = int(np.argmax(correct))
    return float(np.clip(thresholds[i], 0, 1)), float(correct[i] / len(labels))


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


def family_bootstrap_aucs(
    labels: np.ndarray,
    scores: np.ndarray,
    groups: np.ndarray,
    seed: int = 0,
    n_boot: int = N_BOOTSTRAP,
) -> np.ndarray:
    """The AUC of every column of `scores` (pairs × columns) on the same family resamples.

    Returns an n_boot × columns array (NaN where a resample holds one class). A resample draws
    families with replacement, as `bootstrap_auc` does; a pair counts once per draw of its family,
    and every column is scored on that one resample, so column differences form a paired bootstrap.
    """
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=float).reshape(len(labels), -1)
    _, inverse = np.unique(groups, return_inverse=True)
    n_groups = int(inverse.max(initial=-1)) + 1
    draws = np.random.default_rng(seed).integers(n_groups, size=(n_boot, n_groups))
    offsets = (np.arange(n_boot) * n_groups)[:, None]
    counts = np.bincount((draws + offsets).ravel(), minlength=n_boot * n_groups)
    weights = counts.reshape(n_boot, n_groups)[:, inverse].astype(float)
    return np.column_stack([_weighted_auc(labels, column, weights) for column in scores.T])


def _weighted_auc(labels: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC of one score under each row of `weights` (copies of each pair), ties 1/2;
    NaN where a row weighs only one class. Behind `auc` (one row of ones) and the bootstrap."""
    order = np.argsort(score, kind="stable")
    _, starts = np.unique(score[order], return_index=True)
    positive = (labels[order] == 1).astype(float)
    w = weights[:, order]
    pos = np.add.reduceat(w * positive, starts, axis=1)
    neg = np.add.reduceat(w * (1 - positive), starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    pairs = pos.sum(axis=1) * neg.sum(axis=1)
    wins = (pos * (below + 0.5 * neg)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, wins / pairs, np.nan)


def paired_bootstrap_gain(
    labels: np.ndarray,
    probs: np.ndarray,
    baseline: np.ndarray,
    groups: np.ndarray,
    seed: int = 0,
    n_boot: int = N_BOOTSTRAP,
) -> tuple[float, float, float]:
    """AUC(probs) − AUC(baseline) and its 95 % interval from a paired family bootstrap: both AUCs
    are computed on the same resample of families each time."""
    both = family_bootstrap_aucs(labels, np.column_stack([probs, baseline]), groups, seed, n_boot)
    diffs = both[:, 0] - both[:, 1]
    diffs = diffs[~np.isnan(diffs)]
    gain = auc(labels, probs) - auc(labels, baseline)
    if not len(diffs):
        return float(gain), float("nan"), float("nan")
    low, high = np.percentile(diffs, [2.5, 97.5])
    return float(gain), float(low), float(high)


def by_kind(labels, kinds, probs) -> dict[str, float | None]:
    """Kin against each kind of negative alone: strangers, and in-family non-kin (spouses,
    in-laws) who share the family's photo sources: a model that learned "same photo source"
    scores well on the first only."""
    from kinship.report.numbers import auc_by_kind

    found = auc_by_kind(labels, np.asarray(kinds), np.asarray(probs))
    return {k: None if v["auc"] is None else round(v["auc"], 6) for k, v in found.items()}

"""The ensemble's numbers: AUCs side by side with family-bootstrap intervals, the paired gain over
the best member (both on the uncalibrated score), and Brier scores and log-losses; nothing here
varies between identical runs."""

from __future__ import annotations

import numpy as np

from kinship.ensemble.calibration import brier, log_loss
from kinship.metrics import auc, family_bootstrap_aucs, paired_bootstrap_gain


def side_by_side(
    labels: np.ndarray,
    columns: dict[str, np.ndarray],
    groups: np.ndarray,
    folds: np.ndarray | None,
    seed: int,
    n_boot: int,
) -> dict[str, dict]:
    """AUC of every column with its 95 % interval, all from the same family resamples; with
    `folds`, also the mean and std of the per-fold AUCs."""
    names = list(columns)
    boots = family_bootstrap_aucs(
        labels, np.column_stack(list(columns.values())), groups, seed, n_boot
    )
    table = {}
    for j, name in enumerate(names):
        entry = {"auc": _r(auc(labels, columns[name])), "auc_ci95": _interval(boots[:, j])}
        if folds is not None:
            per_fold = [
                auc(labels[folds == f], columns[name][folds == f]) for f in np.unique(folds)
            ]
            entry["fold_auc_mean"] = _r(np.nanmean(per_fold))
            entry["fold_auc_std"] = _r(np.nanstd(per_fold))
        table[name] = entry
    return table


def gain_over(
    labels: np.ndarray,
    probs: np.ndarray,
    baseline: np.ndarray,
    baseline_name: str,
    groups: np.ndarray,
    seed: int,
    n_boot: int,
) -> dict:
    """AUC gain of `probs` over `baseline` with its paired family-bootstrap 95 % interval."""
    gain, low, high = paired_bootstrap_gain(labels, probs, baseline, groups, seed, n_boot)
    return {"over": baseline_name, "auc_gain": _r(gain), "ci95": [_r(low), _r(high)]}


def split_report(
    labels: np.ndarray,
    groups: np.ndarray,
    folds: np.ndarray | None,
    members: dict[str, np.ndarray],
    methods: dict[str, np.ndarray],
    selected: np.ndarray,
    ranked: np.ndarray,
    calibrated: np.ndarray,
    best_member: str,
    seed: int,
    n_boot: int,
) -> dict:
    """One evaluation split (OOF or holdout): members, methods and the ensemble side by side, its
    gain over `best_member`, and Brier score and log-loss before/after calibration.

    The ensemble's ranking numbers (AUC, interval, per-fold AUCs, gain) are those of `ranked`,
    the chosen raw score (on one scale where outer folds chose different methods): at test time
    calibration is one monotone map and cannot change the ranking, while on OOF rows each outer
    fold has its own calibrator, and pooled they reorder pairs across folds (`calibrated_auc`
    shows by how much). The calibrated probability gives the Brier score, the log-loss and the
    accuracy at 0.5; `brier.raw` is the raw chosen score's.
    """
    columns = {**members, **methods, "ensemble": ranked}
    table = side_by_side(labels, columns, groups, folds, seed, n_boot)
    return {
        "pairs": int(len(labels)),
        "positives": int(np.sum(labels)),
        "members": {name: table[name] for name in members},
        "methods": {name: table[name] for name in methods},
        "ensemble": {
            **table["ensemble"],
            "calibrated_auc": _r(auc(labels, calibrated)),
            "accuracy_at_0.5": _r(np.mean((calibrated >= 0.5) == labels)),
        },
        "gain_over_best_member": gain_over(
            labels, ranked, members[best_member], best_member, groups, seed, n_boot
        ),
        "brier": {"raw": _r(brier(labels, selected)), "calibrated": _r(brier(labels, calibrated))},
        "log_loss": {
            "raw": _r(log_loss(labels, selected)),
            "calibrated": _r(log_loss(labels, calibrated)),
        },
    }


def _interval(values: np.ndarray) -> list[float | None]:
    values = values[~np.isnan(values)]
    if not len(values):
        return [None, None]
    return [_r(v) for v in np.percentile(values, [2.5, 97.5])]


def _r(x) -> float | None:
    return None if x is None or np.isnan(x) else round(float(x), 6)

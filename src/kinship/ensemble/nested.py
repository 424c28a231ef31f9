"""Honest cross-validation of the ensemble on the members' one family-fold assignment.

`select` is the whole recipe on a set of OOF rows: score every method by cross-validation on
those rows' folds, choose the best (or the fixed method), refit every method on all the rows, and
fit the calibrator on the chosen method's cross-validated scores. `nested` runs `select` once per
outer fold on the other folds' rows only and scores the held-out fold with it, so method choice,
the weight search, `min_auc` and calibration never see the pairs they are scored on. The
test-time ensemble is `select` on all OOF rows, reusing the outer folds' scores as its CV; when
there is a holdout, `recalibrate` refits its calibrator there (scores of the test's kind).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kinship.ensemble.calibration import Platt, make_calibrator
from kinship.ensemble.methods import Blender, logit
from kinship.metrics import auc, family_bootstrap_aucs

log = logging.getLogger(__name__)

BlenderFactory = Callable[[str], Blender]


def splits(folds: np.ndarray, groups: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(fit rows, scored rows) per fold value; with a single fold present (K=2, inner CV), two
    family-disjoint halves instead."""
    values = np.unique(folds)
    if len(values) >= 2:
        return [(np.flatnonzero(folds != v), np.flatnonzero(folds == v)) for v in values]
    families = np.unique(groups)
    if len(families) < 2:
        raise ValueError(f"cannot cross-validate {len(folds)} pairs from a single family")
    half = np.isin(groups, families[1::2])
    return [
        (np.flatnonzero(~half), np.flatnonzero(half)),
        (np.flatnonzero(half), np.flatnonzero(~half)),
    ]


@dataclass(frozen=True)
class Recipe:
    """How to build the ensemble: a blender factory, the candidate methods (simplest first), the
    fixed method (None: chosen by cross-validated AUC under `rule`, see `choose`) and the
    calibrator kind; `seed` and `n_boot` drive the one-standard-error rule's bootstrap."""

    make: BlenderFactory
    methods: list[str]
    fixed: str | None
    calibration: str
    rule: str
    seed: int
    n_boot: int


@dataclass(frozen=True)
class Rows:
    """OOF rows: member probabilities X (pairs × members), labels, fold and family of each pair."""

    X: np.ndarray
    y: np.ndarray
    folds: np.ndarray
    groups: np.ndarray

    def __getitem__(self, mask) -> Rows:
        return Rows(self.X[mask], self.y[mask], self.folds[mask], self.groups[mask])


def cross_val_scores(make: BlenderFactory, method: str, rows: Rows) -> np.ndarray:
    """Out-of-fold scores of `method`: each split fits a fresh blender, scores its held-out rows."""
    scores = np.empty(len(rows.y))
    for fit, scored in splits(rows.folds, rows.groups):
        scores[scored] = make(method).fit(rows.X[fit], rows.y[fit]).predict(rows.X[scored])
    return scores


@dataclass
class Selection:
    """The ensemble fitted on one set of OOF rows: every method refit, one chosen and calibrated."""

    chosen: str
    blenders: dict[str, Blender]
    calibrator: object
    cv_scores: dict[str, np.ndarray]
    cv_auc: dict[str, float]

    def predict_raw(self, X: np.ndarray) -> np.ndarray:
        return self.blenders[self.chosen].predict(X)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.calibrator.predict(self.predict_raw(X))

    def predict_all(self, X: np.ndarray) -> dict[str, np.ndarray]:
        return {method: blender.predict(X) for method, blender in self.blenders.items()}


def select(recipe: Recipe, rows: Rows, cv_scores: dict[str, np.ndarray] | None = None) -> Selection:
    """Choose and fit the ensemble on these rows only (see the module docstring); `cv_scores`,
    when given, are the methods' out-of-fold scores on these rows (else computed here)."""
    if cv_scores is None:
        cv_scores = {m: cross_val_scores(recipe.make, m, rows) for m in recipe.methods}
    cv_auc = {m: auc(rows.y, cv_scores[m]) for m in recipe.methods}
    chosen = recipe.fixed or choose(recipe, rows, cv_scores, cv_auc)
    blenders = {m: recipe.make(m).fit(rows.X, rows.y) for m in recipe.methods}
    calibrator = make_calibrator(recipe.calibration).fit(cv_scores[chosen], rows.y)
    return Selection(chosen, blenders, calibrator, cv_scores, cv_auc)


def choose(
    recipe: Recipe, rows: Rows, cv_scores: dict[str, np.ndarray], cv_auc: dict[str, float]
) -> str:
    """The method `auto` picks from the cross-validated scores on these rows.

    `best`: the highest AUC. `one_se` (the one-standard-error rule of Breiman et al. 1984): the
    first method in `recipe.methods` (listed simplest first) whose AUC is within one standard
    error of the best one's, that error being the spread of the paired difference (best − method)
    over the same family bootstrap resamples (`paired_gap_se`). With a handful of folds the ranking
    of close methods is mostly noise, and the simpler method is the one that generalises; but a
    method behind in nearly every resample is worse, however wide each AUC's own interval.
    """
    methods = recipe.methods
    best = max(methods, key=lambda m: np.nan_to_num(cv_auc[m], nan=-1.0))
    if recipe.rule == "best":
        return best
    se = paired_gap_se(rows, cv_scores, methods, best, recipe.seed, recipe.n_boot)
    return next(m for m in methods if cv_auc[m] >= cv_auc[best] - se[m])


def paired_gap_se(
    rows: Rows, scores: dict[str, np.ndarray], methods: list[str], best: str, seed: int, n_boot: int
) -> dict[str, float]:
    """Per method, the standard deviation of AUC(best) − AUC(method) over family bootstrap
    resamples, both AUCs on the same resample (0 for `best` itself)."""
    columns = np.column_stack([scores[m] for m in methods])
    boots = family_bootstrap_aucs(rows.y, columns, rows.groups, seed, n_boot)
    gaps = boots[:, [methods.index(best)]] - boots
    se = {}
    for j, method in enumerate(methods):
        gap = gaps[~np.isnan(gaps[:, j]), j]
        se[method] = float(np.std(gap, ddof=1)) if len(gap) > 1 else 0.0
    return se


@dataclass
class NestedResult:
    """Out-of-fold scores of every method, of the nested choice (raw, on one scale for ranking,
    and calibrated), the choice and kept members of each outer fold, and the test-time selection
    on all rows."""

    method_scores: dict[str, np.ndarray]
    selected: np.ndarray
    ranked: np.ndarray
    calibrated: np.ndarray
    choices: dict[int, str]
    kept: dict[int, list[str]]
    final: Selection


def nested(recipe: Recipe, rows: Rows) -> NestedResult:
    """Outer loop over the fold column: select on the other folds, score the held-out one."""
    n = len(rows.y)
    method_scores = {m: np.empty(n) for m in recipe.methods}
    selected, calibrated = np.empty(n), np.empty(n)
    choices, kept = {}, {}
    for value in np.unique(rows.folds):
        scored = rows.folds == value
        try:
            inner = select(recipe, rows[~scored])
        except ValueError as err:
            raise ValueError(f"outer fold {value} (fitting on the other folds): {err}") from None
        for method, scores in inner.predict_all(rows.X[scored]).items():
            method_scores[method][scored] = scores
        selected[scored] = inner.predict_raw(rows.X[scored])
        calibrated[scored] = inner.calibrator.predict(selected[scored])
        choices[int(value)] = inner.chosen
        kept[int(value)] = inner.blenders[inner.chosen].kept_names
        log.info(
            "ensemble: outer fold %d chose %s (inner CV auc %.4f), members %s",
            value,
            inner.chosen,
            inner.cv_auc[inner.chosen],
            ", ".join(kept[int(value)]),
        )
    ranked = one_scale(rows, selected, choices, method_scores)
    final = select(recipe, rows, method_scores)
    return NestedResult(method_scores, selected, ranked, calibrated, choices, kept, final)


def one_scale(
    rows: Rows, selected: np.ndarray, choices: dict[int, str], method_scores: dict[str, np.ndarray]
) -> np.ndarray:
    """The nested choice's scores for ranking numbers (AUC, its interval, the gain).

    When every outer fold chose one method, `selected` itself. Folds that chose different
    methods score on different scales (a mean of probabilities, a rank average, a stacker's
    probability), so pooled raw scores would reorder pairs across folds; they meet on the
    log-odds of one Platt curve per method, fitted on that method's nested scores over all rows:
    one increasing map per method, so the pairs of a method keep their order. (Per-fold
    calibrators would not: each is monotone, but differently in each fold.)
    """
    used = set(choices.values())
    if len(used) == 1:
        return selected.copy()
    ranked = np.empty(len(selected))
    for method in used:
        curve = Platt().fit(method_scores[method], rows.y)
        here = np.isin(rows.folds, [fold for fold, m in choices.items() if m == method])
        ranked[here] = curve.slope_ * logit(selected[here]) + curve.intercept_
    return ranked


def recalibrate(selection: Selection, kind: str, rows: Rows) -> np.ndarray:
    """Refit `selection`'s calibrator on `rows`, the holdout, and return the holdout's
    probabilities cross-fitted on family halves (each half from a calibrator fitted on the other).

    The holdout's member scores are means over the fold models, as the test pairs' are, while
    each OOF score comes from one fold model; a mean of K models is less spread, so a calibrator
    fitted on OOF scores is fitted on another distribution than the one it is applied to.
    """
    raw = selection.predict_raw(rows.X)
    if len(np.unique(rows.y)) < 2:
        raise ValueError(
            f"the holdout's {len(rows.y)} pairs hold one class: the test-time calibrator is fitted "
            "on them (choose another folds.holdout_prefix)"
        )
    probs = np.empty(len(raw))
    for fit, scored in splits(np.zeros(len(raw)), rows.groups):
        probs[scored] = make_calibrator(kind).fit(raw[fit], rows.y[fit]).predict(raw[scored])
    selection.calibrator = make_calibrator(kind).fit(raw, rows.y)
    return probs

"""Ways to combine the members' probabilities, with one small contract (as scikit-learn's).

A blender takes X, pairs × members of probabilities: `fit(X, y)` returns self and `predict(X)`
returns a score in [0, 1] per pair, higher meaning more likely kin. Every method is wrapped in
`KeepAbove`, which first drops the members whose AUC on the fitting rows is below
`ensemble.min_auc`, so that filter is refit (and stays out of fold) wherever the method is.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from kinship.ensemble.params import EnsembleParams
from kinship.metrics import column_aucs

EPS = 1e-6


def logit(probs: np.ndarray) -> np.ndarray:
    p = np.clip(probs, EPS, 1 - EPS)
    return np.log(p / (1 - p))


class Blender:
    """Base: no fitting; subclasses override `predict` (and `fit` when they learn)."""

    def fit(self, X: np.ndarray, y: np.ndarray) -> Blender:
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def describe(self, names: list[str]) -> dict:
        """What was fitted, as JSON (member names in the order of X's columns)."""
        return {}


class Mean(Blender):
    def predict(self, X):
        return np.asarray(X, dtype=float).mean(axis=1)


class Weighted(Blender):
    """The weighted mean of the members' probabilities (weights >= 0, not all 0)."""

    def __init__(self, weights):
        self.weights = np.asarray(weights, dtype=float)

    def predict(self, X):
        return np.asarray(X, dtype=float) @ (self.weights / self.weights.sum())

    def describe(self, names):
        return {"weights": _named(names, self.weights / self.weights.sum())}


class Rank(Blender):
    """The mean over members of each probability's quantile among the fitting rows' ones.

    On the fitting rows this is the average of normalised ranks, (rank − ½)/n; other rows (a
    held-out fold, the test pairs) are placed on those same empirical distributions.
    """

    def fit(self, X, y):
        self.sorted_ = np.sort(np.asarray(X, dtype=float), axis=0)
        return self

    def predict(self, X):
        X = np.asarray(X, dtype=float)
        n = len(self.sorted_)
        quantiles = [
            (np.searchsorted(col, x, "left") + np.searchsorted(col, x, "right")) / (2 * n)
            for col, x in zip(self.sorted_.T, X.T, strict=True)
        ]
        return np.mean(quantiles, axis=0)


class WeightSearch(Weighted):
    """Weights searched on the fitting rows' AUC: greedy forward selection with replacement
    (Caruana et al. 2004). `steps` times, add the member that most raises the running blend's
    AUC, then keep the best-scoring prefix of those additions. Weights are member counts in that
    prefix, normalised; ties go to the earlier member."""

    def __init__(self, steps: int):
        self.steps = steps

    def fit(self, X, y):
        X = np.asarray(X, dtype=float)
        picks, history = [], []
        blend = np.zeros(len(X))
        for step in range(self.steps):
            candidates = (blend[:, None] * step + X) / (step + 1)
            aucs = np.nan_to_num(column_aucs(y, candidates), nan=-1.0)
            picks.append(int(np.argmax(aucs)))
            history.append(aucs[picks[-1]])
            blend = candidates[:, picks[-1]]
        best_prefix = int(np.argmax(history)) + 1
        self.weights = np.bincount(picks[:best_prefix], minlength=X.shape[1]).astype(float)
        return self


class StackLogistic(Blender):
    """Logistic regression on the members' standardised logits."""

    def __init__(self, c: float):
        self.c = c

    def fit(self, X, y):
        from sklearn.linear_model import LogisticRegression

        z = logit(X)
        self.centre_, self.spread_ = z.mean(axis=0), z.std(axis=0)
        self.spread_[self.spread_ == 0] = 1.0
        self.model_ = LogisticRegression(C=self.c, max_iter=1000).fit(self._features(X), y)
        return self

    def _features(self, X):
        return (logit(X) - self.centre_) / self.spread_

    def predict(self, X):
        return self.model_.predict_proba(self._features(X))[:, 1]

    def describe(self, names):
        """Coefficients per member logit (undoing the standardisation) and the intercept."""
        coef = self.model_.coef_[0] / self.spread_
        intercept = self.model_.intercept_[0] - float(coef @ self.centre_)
        return {"coef": _named(names, coef), "intercept": round(float(intercept), 6)}


class StackLgbm(Blender):
    """LightGBM on the members' probabilities: few small trees, one thread, deterministic."""

    def __init__(self, n_estimators, learning_rate, num_leaves, min_child_samples, seed):
        self.config = dict(
            n_estimators=n_estimators,
            learning_rate=learning_rate,
            num_leaves=num_leaves,
            min_child_samples=min_child_samples,
            random_state=seed,
        )

    def fit(self, X, y):
        from lightgbm import LGBMClassifier

        self.model_ = LGBMClassifier(
            **self.config, n_jobs=1, deterministic=True, force_col_wise=True, verbose=-1
        ).fit(np.asarray(X, dtype=float), y)
        return self

    def predict(self, X):
        return self.model_.predict_proba(np.asarray(X, dtype=float))[:, 1]

    def describe(self, names):
        gains = self.model_.booster_.feature_importance(importance_type="gain")
        return {"trees": int(self.model_.n_estimators_), "gain": _named(names, gains)}


class KeepAbove(Blender):
    """Drop members whose AUC on the fitting rows is below `min_auc`, then fit `make(kept)`
    (a blender for the kept columns, given their indices) on the rest."""

    def __init__(self, make: Callable[[list[int]], Blender], min_auc: float, names: list[str]):
        self.make, self.min_auc, self.names = make, min_auc, names

    def fit(self, X, y):
        X = np.asarray(X, dtype=float)
        self.member_auc_ = list(column_aucs(y, X))
        self.kept_ = [j for j, a in enumerate(self.member_auc_) if a >= self.min_auc]
        if not self.kept_:
            best = int(np.nanargmax(self.member_auc_))
            raise ValueError(
                f"ensemble.min_auc={self.min_auc}: every member is below it on the "
                f"{len(y)} fitting pairs; the best is {self.names[best]} with AUC "
                f"{self.member_auc_[best]:.4f}"
            )
        self.inner_ = self.make(self.kept_).fit(X[:, self.kept_], y)
        return self

    def predict(self, X):
        return self.inner_.predict(np.asarray(X, dtype=float)[:, self.kept_])

    @property
    def kept_names(self) -> list[str]:
        return [self.names[j] for j in self.kept_]

    def describe(self, names=None):
        return {"kept": self.kept_names, **self.inner_.describe(self.kept_names)}


def user_weights(params: EnsembleParams, names: list[str]) -> np.ndarray:
    """`ensemble.weights` in the order of `names`: unlisted members weigh 0; {} means equal."""
    if not params.weights:
        return np.ones(len(names))
    return np.array([params.weights.get(name, 0.0) for name in names])


def make_blender(method: str, params: EnsembleParams, names: list[str]) -> KeepAbove:
    """A fresh, unfitted blender for `method` over members `names` (the columns of X)."""
    make = functools.partial(_make_inner, method, params, user_weights(params, names), names)
    return KeepAbove(make, params.min_auc, names)


def _make_inner(method, params: EnsembleParams, weights, names, kept: list[int]) -> Blender:
    """The blender of `method` for the kept columns (a module-level function: it pickles)."""
    if method == "mean":
        return Mean()
    if method == "weighted":
        return Weighted(_kept_weights(weights, kept, names, params.min_auc))
    if method == "rank":
        return Rank()
    if method == "weight_search":
        return WeightSearch(params.weight_search.steps)
    if method == "stack_logistic":
        return StackLogistic(params.stack_logistic.c)
    if method == "stack_lgbm":
        lgbm = params.stack_lgbm
        return StackLgbm(
            lgbm.n_estimators,
            lgbm.learning_rate,
            lgbm.num_leaves,
            lgbm.min_child_samples,
            params.seed,
        )
    raise ValueError(f"ensemble method {method!r} is not implemented")  # params checks names


def _kept_weights(weights, kept, names, min_auc) -> np.ndarray:
    chosen = weights[kept]
    if chosen.sum() <= 0:
        weighted = [n for n, w in zip(names, weights, strict=True) if w > 0]
        raise ValueError(
            f"ensemble.weights: every member with a weight > 0 ({', '.join(weighted)}) is below "
            f"ensemble.min_auc={min_auc} on these fitting pairs; give weight to a stronger "
            "member or lower ensemble.min_auc"
        )
    return chosen


def _named(names: list[str], values) -> dict[str, float]:
    return {n: round(float(v), 6) for n, v in zip(names, values, strict=True)}

"""Calibrators: turn an ensemble score into a probability of kinship.

Each is fitted on out-of-fold scores (never on the pairs it is applied to) and has the blender
contract on one column: `fit(scores, labels)` returns self, `predict(scores)` gives probabilities.
"""

from __future__ import annotations

import numpy as np

from kinship.ensemble.methods import logit


class Platt:
    """A logistic curve on the score's logit: strictly increasing, so it keeps every ranking."""

    def fit(self, scores: np.ndarray, labels: np.ndarray) -> Platt:
        from sklearn.linear_model import LogisticRegression

        z = logit(np.asarray(scores, dtype=float))[:, None]
        model = LogisticRegression(C=1e4, max_iter=1000).fit(z, labels)
        self.slope_, self.intercept_ = float(model.coef_[0, 0]), float(model.intercept_[0])
        return self

    def predict(self, scores: np.ndarray) -> np.ndarray:
        z = logit(np.asarray(scores, dtype=float))
        return 1 / (1 + np.exp(-(self.slope_ * z + self.intercept_)))

    def describe(self) -> dict:
        return {
            "kind": "platt",
            "slope": round(self.slope_, 6),
            "intercept": round(self.intercept_, 6),
        }


class Isotonic:
    """A non-decreasing step function (pool adjacent violators): flexible, but it ties scores."""

    def fit(self, scores: np.ndarray, labels: np.ndarray) -> Isotonic:
        from sklearn.isotonic import IsotonicRegression

        self.model_ = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip")
        self.model_.fit(np.asarray(scores, dtype=float), labels)
        return self

    def predict(self, scores: np.ndarray) -> np.ndarray:
        return np.clip(self.model_.predict(np.asarray(scores, dtype=float)), 0, 1)

    def describe(self) -> dict:
        return {
            "kind": "isotonic",
            "x": [round(float(v), 6) for v in self.model_.X_thresholds_],
            "y": [round(float(v), 6) for v in self.model_.y_thresholds_],
        }


CALIBRATORS = {"platt": Platt, "isotonic": Isotonic}


def make_calibrator(kind: str) -> Platt | Isotonic:
    if kind not in CALIBRATORS:
        raise ValueError(
            f"ensemble.calibration must be one of {', '.join(CALIBRATORS)}, got {kind!r}"
        )
    return CALIBRATORS[kind]()


def brier(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean squared error of probabilities against 0/1 labels (lower is better)."""
    return float(np.mean((np.asarray(probs, dtype=float) - np.asarray(labels)) ** 2))


def log_loss(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean negative log-likelihood of 0/1 labels, probabilities clipped to [1e-15, 1 − 1e-15]."""
    p = np.clip(np.asarray(probs, dtype=float), 1e-15, 1 - 1e-15)
    y = np.asarray(labels) == 1
    return float(-np.mean(np.where(y, np.log(p), np.log1p(-p))))

"""Pair heads of the frozen members: LightGBM (early stopping on the inner slice) or logistic.

Both take pair features (P, F) float32 and labels, report the inner slice's AUC, predict
probabilities, and save their fitted state to / load it from a folder (the stage writes the
config beside it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from kinship.frozen.params import FrozenMemberParams
from kinship.metrics import auc

LGBM_FILE = "head.lgbm.txt"
LOGISTIC_FILE = "head.logistic.json"


class LgbmHead:
    """Gradient-boosted trees; the number of rounds is chosen by the inner slice's AUC."""

    def __init__(self, params: FrozenMemberParams):
        self.p = params.lgbm
        self.booster = None

    def fit(self, x, y, x_inner, y_inner, seed: int) -> dict:
        import lightgbm as lgb

        config = {
            "objective": "binary",
            "learning_rate": self.p.learning_rate,
            "num_leaves": self.p.num_leaves,
            "min_child_samples": self.p.min_child_samples,
            "feature_fraction": self.p.colsample_bytree,
            "bagging_fraction": 0.8,
            "bagging_freq": 1,
            "metric": "auc",
            "seed": seed,
            "deterministic": True,  # with force_row_wise: the same trees on every run
            "force_row_wise": True,
            "num_threads": os.cpu_count() or 1,
            "verbosity": -1,
        }
        train = lgb.Dataset(x, y, free_raw_data=True)
        inner = lgb.Dataset(x_inner, y_inner, reference=train)
        self.booster = lgb.train(
            config,
            train,
            num_boost_round=self.p.n_estimators,
            valid_sets=[inner],
            callbacks=[lgb.early_stopping(self.p.early_stopping_rounds, verbose=False)],
        )
        best = self.booster.best_iteration or self.p.n_estimators
        return {"rounds": int(best), "inner_auc": auc(y_inner, self.predict(x_inner))}

    def predict(self, x) -> np.ndarray:
        best = self.booster.best_iteration or None
        return np.asarray(self.booster.predict(x, num_iteration=best), dtype=np.float64)

    def save(self, directory: Path) -> None:
        self.booster.save_model(
            str(Path(directory) / LGBM_FILE), num_iteration=self.booster.best_iteration or None
        )

    def load(self, directory: Path) -> None:
        import lightgbm as lgb

        path = Path(directory) / LGBM_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: LightGBM head missing (retrain the fold)")
        self.booster = lgb.Booster(model_file=str(path))


class LogisticHead:
    """L2 logistic regression on standardised pair features."""

    def __init__(self, params: FrozenMemberParams):
        self.c = params.c
        self.mean = self.scale = self.coef = None
        self.intercept = 0.0

    def fit(self, x, y, x_inner, y_inner, seed: int) -> dict:
        from sklearn.linear_model import LogisticRegression

        x = np.asarray(x, np.float64)  # float64 state: a saved head predicts bit for bit alike
        self.mean = x.mean(axis=0)
        self.scale = np.maximum(x.std(axis=0), 1e-6)
        model = LogisticRegression(C=self.c, max_iter=2000, random_state=seed)
        model.fit((x - self.mean) / self.scale, y)
        self.coef, self.intercept = model.coef_[0], float(model.intercept_[0])
        return {"rounds": None, "inner_auc": auc(y_inner, self.predict(x_inner))}

    def predict(self, x) -> np.ndarray:
        from scipy.special import expit

        logits = ((np.asarray(x, np.float64) - self.mean) / self.scale) @ self.coef + self.intercept
        return expit(logits)

    def save(self, directory: Path) -> None:
        state = {
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "coef": self.coef.tolist(),
            "intercept": self.intercept,
        }
        (Path(directory) / LOGISTIC_FILE).write_text(json.dumps(state))

    def load(self, directory: Path) -> None:
        path = Path(directory) / LOGISTIC_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: logistic head missing (retrain the fold)")
        state = json.loads(path.read_text())
        self.mean, self.scale, self.coef = (np.array(state[k]) for k in ("mean", "scale", "coef"))
        self.intercept = float(state["intercept"])


HEADS = {"lgbm": LgbmHead, "logistic": LogisticHead}


def create_head(params: FrozenMemberParams):
    return HEADS[params.head](params)

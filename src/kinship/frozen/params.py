"""`frozen_members.<name>`: a pair head on per-image features from the embed stage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from kinship.config import check, did_you_mean

FROZEN_MODELS = ("dlib", "dlib_landmarks")
"""dlib: the 128-d ResNet face descriptor; dlib_landmarks: face geometry from the 68 landmarks."""

FROZEN_PAIR_FEATURES = (
    "sq_diff", "abs_diff", "prod", "sq_sub", "abs_sq_sub", "abs_sum", "norm_prod", "sides",
    "cosine", "distance",
)  # fmt: skip
"""(a−b)², |a−b|, a·b, a²−b² (= (a+b)(a−b)), |a²−b²|, |a+b|, a·b/(a²+b²), the raw sides as
elementwise min and max (symmetric), cosine similarity, Euclidean distance."""


@dataclass(frozen=True)
class LgbmHeadParams:
    n_estimators: int = 800
    """Upper bound on boosting rounds; early stopping on the inner slice's AUC picks the number."""
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_child_samples: int = 50
    colsample_bytree: float = 0.3
    early_stopping_rounds: int = 50

    def check(self, path: str) -> None:
        check(self.n_estimators >= 1, f"{path}.n_estimators", "an integer >= 1", self.n_estimators)
        check(self.learning_rate > 0, f"{path}.learning_rate", "> 0", self.learning_rate)
        check(self.num_leaves >= 2, f"{path}.num_leaves", "an integer >= 2", self.num_leaves)
        check(
            self.min_child_samples >= 1, f"{path}.min_child_samples", ">= 1", self.min_child_samples
        )
        check(
            0 < self.colsample_bytree <= 1,
            f"{path}.colsample_bytree",
            "a fraction in (0, 1]",
            self.colsample_bytree,
        )
        check(
            self.early_stopping_rounds >= 1,
            f"{path}.early_stopping_rounds",
            "an integer >= 1",
            self.early_stopping_rounds,
        )


@dataclass(frozen=True)
class FrozenMemberParams:
    model: str
    """Which per-image features: one of FROZEN_MODELS."""
    pair_features: list[str] = field(
        default_factory=lambda: [
            "sq_diff", "sq_sub", "abs_sq_sub", "abs_diff", "abs_sum", "sides", "norm_prod"
        ]
    )  # fmt: skip
    """The strongest dlib-based Kaggle solution's head input (5th place, 8 × 128): (a−b)²,
    ±(a²−b²), |a−b|, |a+b|, the sides, a·b/(a²+b²)."""
    head: Literal["lgbm", "logistic"] = "lgbm"
    lgbm: LgbmHeadParams = field(default_factory=LgbmHeadParams)
    c: float = 0.1
    """The logistic head's inverse L2 strength (on standardised pair features)."""
    tta_flip: bool = False
    """Average each image's descriptor with its mirror image's (needs `embed.flip: true`); in
    training, each image then shows either view at random."""
    kin_pairs_per_relationship: int = 10
    """Training image pairs drawn per relationship row of the fitting families (all when fewer).
    On real FIW, 3, 30 or all of them scored within noise of 10 (benchmarks/bench_dlib_heads.py);
    30 trains three times slower."""
    negatives_per_kin: float = 1.0
    nonkin_share: float = 0.0
    """Share of the training negatives drawn from in-family non-kin pairs (spouses, in-laws)
    instead of strangers from other families."""
    seeds: list[int] = field(default_factory=lambda: [0])

    def check(self, path: str) -> None:
        check(
            self.model in FROZEN_MODELS,
            f"{path}.model",
            f"one of {', '.join(FROZEN_MODELS)}{did_you_mean(self.model, FROZEN_MODELS)}",
            self.model,
        )
        check(len(self.pair_features) > 0, f"{path}.pair_features", "a non-empty list", [])
        for i, feature in enumerate(self.pair_features):
            check(
                feature in FROZEN_PAIR_FEATURES,
                f"{path}.pair_features[{i}]",
                f"one of {', '.join(FROZEN_PAIR_FEATURES)}"
                f"{did_you_mean(feature, FROZEN_PAIR_FEATURES)}",
                feature,
            )
        check(
            len(set(self.pair_features)) == len(self.pair_features),
            f"{path}.pair_features",
            "distinct names",
            self.pair_features,
        )
        self.lgbm.check(f"{path}.lgbm")
        check(self.c > 0, f"{path}.c", "> 0", self.c)
        check(
            self.kin_pairs_per_relationship >= 1,
            f"{path}.kin_pairs_per_relationship",
            "an integer >= 1",
            self.kin_pairs_per_relationship,
        )
        check(
            self.negatives_per_kin > 0, f"{path}.negatives_per_kin", "> 0", self.negatives_per_kin
        )
        check(
            0 <= self.nonkin_share < 1,
            f"{path}.nonkin_share",
            "a fraction in [0, 1)",
            self.nonkin_share,
        )
        check(len(self.seeds) >= 1, f"{path}.seeds", "a non-empty list of seeds", self.seeds)

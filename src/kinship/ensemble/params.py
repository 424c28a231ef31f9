"""The `ensemble` section: how the members' out-of-fold predictions are combined, chosen,
calibrated and scored (the ensemble stage's schema)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from kinship.config import check, did_you_mean

ENSEMBLE_METHODS = ("mean", "weighted", "rank", "weight_search", "stack_logistic", "stack_lgbm")
"""Ways to combine the members' OOF probabilities (see `kinship.ensemble.methods`)."""


@dataclass(frozen=True)
class WeightSearchParams:
    steps: int = 20
    """Greedy forward selection with replacement (Caruana et al. 2004): weights in 1/steps."""

    def check(self, path: str) -> None:
        check(1 <= self.steps <= 1000, f"{path}.steps", "an integer in 1..1000", self.steps)


@dataclass(frozen=True)
class StackLogisticParams:
    c: float = 1.0
    """Inverse L2 strength of the logistic regression on the members' logits."""

    def check(self, path: str) -> None:
        check(self.c > 0, f"{path}.c", "> 0", self.c)


@dataclass(frozen=True)
class StackLgbmParams:
    n_estimators: int = 60
    learning_rate: float = 0.05
    num_leaves: int = 7
    min_child_samples: int = 40

    def check(self, path: str) -> None:
        check(self.n_estimators >= 1, f"{path}.n_estimators", "an integer >= 1", self.n_estimators)
        check(self.learning_rate > 0, f"{path}.learning_rate", "> 0", self.learning_rate)
        check(self.num_leaves >= 2, f"{path}.num_leaves", "an integer >= 2", self.num_leaves)
        check(
            self.min_child_samples >= 1,
            f"{path}.min_child_samples",
            "an integer >= 1",
            self.min_child_samples,
        )


@dataclass(frozen=True)
class EnsembleParams:
    members: list[str] | None = None
    """Members to combine (keys of `members`); null means all of them."""
    methods: list[str] = field(default_factory=lambda: list(ENSEMBLE_METHODS))
    """Candidate methods, each scored out of fold."""
    method: str = "auto"
    """`auto` (chosen by OOF AUC inside a nested cross-validation) or one of `methods`."""
    auto_rule: Literal["one_se", "best"] = "one_se"
    """How `auto` chooses: the simplest method (first in `methods`) within one standard error
    of the best AUC, that error being the family bootstrap's spread of the paired difference
    (best − method, on the same resamples); or the best AUC."""
    weights: dict[str, float] = field(default_factory=dict)
    """Member -> weight for `weighted` (>= 0, not all 0); unlisted members weigh 0; {} = equal."""
    min_auc: float = 0.0
    """Drop members whose AUC on the training folds is below this (inside the nested CV)."""
    calibration: Literal["platt", "isotonic"] = "platt"
    """The map from the chosen score to a probability: fitted on OOF scores, and for the test-time
    ensemble on the holdout when `folds.holdout_prefix` sets one (fold-mean scores, as the
    test's). Ranking numbers never use it (docs/ensemble.md)."""
    weight_search: WeightSearchParams = field(default_factory=WeightSearchParams)
    stack_logistic: StackLogisticParams = field(default_factory=StackLogisticParams)
    stack_lgbm: StackLgbmParams = field(default_factory=StackLgbmParams)
    bootstrap: int = 200
    """Family-level bootstrap resamples behind every interval."""
    seed: int = 0

    def __post_init__(self) -> None:
        check(len(self.methods) > 0, "ensemble.methods", "a non-empty list", self.methods)
        for i, method in enumerate(self.methods):
            check(
                method in ENSEMBLE_METHODS,
                f"ensemble.methods[{i}]",
                f"one of {', '.join(ENSEMBLE_METHODS)}{did_you_mean(method, ENSEMBLE_METHODS)}",
                method,
            )
        dupes = len(set(self.methods)) != len(self.methods)
        check(not dupes, "ensemble.methods", "distinct names", self.methods)
        check(
            self.method == "auto" or self.method in self.methods,
            "ensemble.method",
            f"'auto' or one of ensemble.methods ({', '.join(self.methods)})"
            f"{did_you_mean(self.method, ['auto', *self.methods])}",
            self.method,
        )
        for name, weight in self.weights.items():
            check(
                weight >= 0 and weight < float("inf"),
                f"ensemble.weights.{name}",
                "a finite weight >= 0",
                weight,
            )
        check(
            not self.weights or sum(self.weights.values()) > 0,
            "ensemble.weights",
            "a mapping with at least one weight > 0 (or {} for equal weights)",
            self.weights,
        )
        check(0 <= self.min_auc < 1, "ensemble.min_auc", "an AUC in [0, 1)", self.min_auc)
        check(self.bootstrap >= 10, "ensemble.bootstrap", "an integer >= 10", self.bootstrap)
        self.weight_search.check("ensemble.weight_search")
        self.stack_logistic.check("ensemble.stack_logistic")
        self.stack_lgbm.check("ensemble.stack_lgbm")

    def check_members(self, members: dict) -> None:
        """Every member named in this section is a key of `members`."""
        if self.members is not None:
            check(len(self.members) > 0, "ensemble.members", "null or a non-empty list", [])
            dupes = sorted({m for m in self.members if self.members.count(m) > 1})
            check(not dupes, "ensemble.members", "distinct names", self.members)
            for i, name in enumerate(self.members):
                _check_member_name(name, members, f"ensemble.members[{i}]", "params.yaml members")
        chosen = self.members if self.members is not None else list(members)
        for name in self.weights:
            _check_member_name(name, members, f"ensemble.weights.{name}", "params.yaml members")
            _check_member_name(name, chosen, f"ensemble.weights.{name}", "ensemble.members")


def _check_member_name(name: str, valid, path: str, where: str) -> None:
    check(
        name in valid,
        path,
        f"one of {where} ({', '.join(valid)}){did_you_mean(name, valid)}",
        name,
    )

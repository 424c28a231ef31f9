"""One family-disjoint fold assignment, seeded and balanced on kin-pair count.

Balancing on family count would leave one fold with most of the kin pairs on the real data (one
family, F0601, has 75 relationship rows); so families go, largest kin load first, to the fold with
the smallest kin load so far. The seed only breaks ties between families of equal load.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

HOLDOUT_FOLD = -1


def family_folds(
    families: pd.Series,
    kin_counts: pd.Series,
    k: int,
    seed: int,
    holdout_prefix: str | None = None,
) -> pd.Series:
    """Fold (0..k-1, or -1 for the holdout) of each family, indexed by family id.

    `kin_counts` is the number of usable relationship rows per family (missing means 0).
    """
    families = pd.Index(sorted(set(families)), name="family")
    loads = kin_counts.reindex(families, fill_value=0).astype(int)
    is_holdout = (
        families.str.startswith(holdout_prefix) if holdout_prefix else np.zeros(len(families), bool)
    )
    in_folds = families[~is_holdout]
    if len(in_folds) < k:
        raise ValueError(
            f"folds.k = {k} needs at least {k} families outside the holdout, found {len(in_folds)}"
        )
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(in_folds))
    shuffled = in_folds[order]
    # stable sort on descending load: the seeded shuffle decides among equal loads
    by_load = shuffled[np.argsort(-loads[shuffled].to_numpy(), kind="stable")]
    fold_load = np.zeros(k, dtype=int)
    fold_size = np.zeros(k, dtype=int)
    assignment = pd.Series(HOLDOUT_FOLD, index=families, dtype="int8")
    for family in by_load:
        fold = int(np.lexsort((np.arange(k), fold_size, fold_load))[0])
        assignment[family] = fold
        fold_load[fold] += loads[family]
        fold_size[fold] += 1
    return assignment

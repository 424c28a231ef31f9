"""The dlib member's head design on real FIW: which training pairs, features and head work.

Each variant trains one head on the embed stage's descriptors of the training folds' families
(all folds but 0, never the holdout) and prints its AUC on fold 0's validation pairs (kin against
strangers, and against in-family non-kin) and on the F09 holdout's 592 pairs. Choose on the
fold-0 columns: the holdout is for the final numbers. Run in a workspace prepared and embedded
with the real-data profile (`bench_real_fiw.py --run DIR`, or `dvc repro embed` there):

    python benchmarks/bench_dlib_heads.py [WORKSPACE]
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

from kinship.embed import Embeddings
from kinship.frozen.features import pair_features
from kinship.frozen.heads import create_head
from kinship.frozen.params import FrozenMemberParams
from kinship.metrics import auc
from kinship.pairs import training_pairs
from kinship.train_stage import Prepared

KAGGLE_5TH = ["sq_diff", "sq_sub", "abs_sq_sub", "abs_diff", "abs_sum", "sides", "norm_prod"]
PEER = ["sq_diff", "sq_sub", "prod", "abs_diff"]
VARIANTS = {
    "peer features, 10 pairs/relationship": {"pair_features": PEER},
    "Kaggle 5th-place features": {},
    "  + 3 pairs per relationship": {"kin_pairs_per_relationship": 3},
    "  + 30 pairs per relationship": {"kin_pairs_per_relationship": 30},
    "  + every pair of each relationship": {"kin_pairs_per_relationship": 1000},
    "  + 3 negatives per kin pair": {"negatives_per_kin": 3.0},
    "  + 20 % in-family non-kin negatives": {"nonkin_share": 0.2},
    "  + flip views (tta_flip)": {"tta_flip": True},
    "  logistic head": {"head": "logistic"},
}


def main() -> None:
    os.chdir(Path(sys.argv[1] if len(sys.argv) > 1 else "."))
    prepared = Prepared.load()
    embeddings = Embeddings.load(len(prepared.images))
    views = embeddings.descriptors
    people, rels = prepared.people, prepared.relationships
    train_people = people[people["fold"] > 0]
    train_rels = rels[rels["fold"] > 0]
    inner_families = set(np.random.default_rng(0).choice(
        sorted(train_people["family"].unique()), size=len(set(train_people["family"])) // 5,
        replace=False,
    ))  # fmt: skip
    usable = prepared.images[
        (prepared.images["split"] == "train") & ~prepared.images["row"].isin(embeddings.bad_rows)
    ]
    val = prepared.pairs[prepared.pairs["fold"] == 0]
    holdout = prepared.holdout[prepared.holdout["kind"] != "in_family_nonkin"]
    print(f"{'variant':40s} {'fold 0: strangers':>18s} {'in-family':>10s} {'holdout 592':>12s}")
    for name, change in VARIANTS.items():
        params = FrozenMemberParams(model="dlib", **{"pair_features": KAGGLE_5TH, **change})
        start = time.perf_counter()
        rng = np.random.default_rng(0)

        def features(rows, train, params=params, rng=rng):
            n_views = views.shape[1] if params.tta_flip else 1
            if train:
                return views[rows, rng.integers(n_views, size=len(rows))]
            return views[rows, :n_views].mean(axis=1)

        def sample(fit_families, params=params, rng=rng):
            return training_pairs(
                usable, train_people[train_people["family"].isin(fit_families)],
                train_rels[train_rels["family"].isin(fit_families)], rng=rng,
                kin_cap=params.kin_pairs_per_relationship,
                negatives_per_kin=params.negatives_per_kin, nonkin_share=params.nonkin_share,
            )  # fmt: skip

        fit = sample(set(train_people["family"]) - inner_families)
        inner = sample(inner_families)

        def x_of(table, train, params=params):
            a = features(prepared.rows(table["img1"]), train)
            b = features(prepared.rows(table["img2"]), train)
            return pair_features(a, b, params.pair_features), pair_features(
                b, a, params.pair_features
            )

        head = create_head(params)
        head.fit(x_of(fit, True)[0], fit["label"].to_numpy(), x_of(inner, False)[0],
                 inner["label"].to_numpy(), seed=0)  # fmt: skip

        def score(table, head=head):
            ab, ba = x_of(table, False)
            return (head.predict(ab) + head.predict(ba)) / 2

        p_val, p_hold = score(val), score(holdout)
        kinds = val["kind"].to_numpy()
        strangers, in_family = kinds != "in_family_nonkin", kinds != "cross_family"
        print(
            f"{name:40s} {auc(val['label'][strangers], p_val[strangers]):18.3f} "
            f"{auc(val['label'][in_family], p_val[in_family]):10.3f} "
            f"{auc(holdout['label'], p_hold):12.3f}   ({len(fit)} pairs, "
            f"{time.perf_counter() - start:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()

"""The dlib member's head design on real FIW: which training pairs, features and head work.

Each variant trains one head on the embed stage's descriptors of the training folds' families
(all folds but 0, never the holdout) and prints its AUC on fold 0's validation pairs (kin against
strangers, and against in-family non-kin) and on the F09 holdout's 592 pairs. Choose on the
fold-0 columns: the holdout is for the final numbers. Run in a workspace prepared and embedded
with the real-data profile (`bench_real_fiw.py --run DIR`, or `dvc repro embed` there):

    python benchmarks/bench_dlib_heads.py [WORKSPACE]
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np

from kinship.frozen.features import pair_features
from kinship.frozen.heads import create_head
from kinship.frozen.params import FrozenMemberParams
from kinship.frozen.stage import FrozenTrainer
from kinship.metrics import auc
from kinship.pairs import training_pairs
from kinship.params import load_params
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
    base = load_params()
    prepared = Prepared.load()
    people, rels = prepared.people, prepared.relationships
    train_people = people[people["fold"] > 0]
    train_rels = rels[rels["fold"] > 0]
    inner_families = set(np.random.default_rng(0).choice(
        sorted(train_people["family"].unique()), size=len(set(train_people["family"])) // 5,
        replace=False,
    ))  # fmt: skip
    val = prepared.pairs[prepared.pairs["fold"] == 0]
    holdout = prepared.holdout[prepared.holdout["kind"] != "in_family_nonkin"]
    print(f"{'variant':40s} {'fold 0: strangers':>18s} {'in-family':>10s} {'holdout 592':>12s}")
    for name, change in VARIANTS.items():
        member = FrozenMemberParams(model="dlib", **{"pair_features": KAGGLE_5TH, **change})
        params = dataclasses.replace(base, frozen_members={"dlib": member})
        trainer = FrozenTrainer("dlib", params, prepared)  # the member's own views and scoring
        usable = prepared.images[
            (prepared.images["split"] == "train") & ~prepared.images["row"].isin(trainer.bad)
        ]
        start = time.perf_counter()
        rng = np.random.default_rng(0)

        def sample(families, member=member, usable=usable, rng=rng):
            return training_pairs(
                usable, train_people[train_people["family"].isin(families)],
                train_rels[train_rels["family"].isin(families)], rng=rng,
                kin_cap=member.kin_pairs_per_relationship,
                negatives_per_kin=member.negatives_per_kin, nonkin_share=member.nonkin_share,
            )  # fmt: skip

        def x_of(table, rng=None, member=member, trainer=trainer):
            a = trainer.vectors(prepared.rows(table["img1"]), rng)
            b = trainer.vectors(prepared.rows(table["img2"]), rng)
            return pair_features(a, b, member.pair_features)

        fit = sample(set(train_people["family"]) - inner_families)
        inner = sample(inner_families)
        head = create_head(member)
        head.fit(x_of(fit, rng), fit["label"].to_numpy(), x_of(inner), inner["label"].to_numpy(),
                 seed=0)  # fmt: skip

        def score(table, head=head, trainer=trainer):
            return trainer.predict(head, prepared.rows(table["img1"]), prepared.rows(table["img2"]))

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

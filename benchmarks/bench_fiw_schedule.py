"""What the GPU profile's schedule means on the real Kaggle FIW data, per fold: the training
relationships, `steps_per_epoch: auto`, the images an epoch trains on, and the inner check
(`train.inner_budget`) against the whole inner slice. Reads the prepare stage's tables of a
workspace prepared with the same folds and pairs as `profiles/fiw-gpu.yaml` (fiw-cpu.yaml has the
same), takes every member's batch size and steps from fiw-gpu.yaml; no image is read (unreadable
images are taken from the workspace's cache report when it has one, else none).

    python benchmarks/bench_fiw_schedule.py --workspace /tmp/fiw-run3
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from kinship.params import load_params  # noqa: E402
from kinship.train_stage import Prepared, folds_of  # noqa: E402
from kinship.training import (  # noqa: E402
    epoch_steps,
    inner_check,
    inner_check_images,
    split_fold,
    usable_relationships,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, required=True, help="a prepared FIW workspace")
    args = parser.parse_args()
    params = load_params(REPO / "params.yaml", [REPO / "profiles" / "fiw-gpu.yaml"])
    workspace = load_params(args.workspace / "params.yaml")
    for key in ("k", "seed", "holdout_prefix"):
        if getattr(workspace.folds, key) != getattr(params.folds, key):
            sys.exit(f"{args.workspace}: folds.{key} differs from fiw-gpu.yaml's")
    prepared = Prepared.load(args.workspace / "data" / "prepared")
    bad = set()
    for report in (args.workspace / "reports" / "cache").glob("*.json"):
        bad |= {b["row"] for b in json.loads(report.read_text())["bad"]}
    rows_of_person = prepared.rows_of_person(bad)
    train = params.train
    print(f"fiw-gpu.yaml: inner_fraction {train.inner_fraction}, inner_budget {train.inner_budget}")
    groups: dict[tuple, list[str]] = {}  # members with the same batch size and steps agree
    for name, mp in params.members.items():
        groups.setdefault((mp.batch_size, mp.steps_per_epoch), []).append(name)
    for names in groups.values():
        name, mp = ", ".join(names), params.members[names[0]]
        print(f"{name}: batch_size {mp.batch_size}, steps_per_epoch {mp.steps_per_epoch}")
        print(f"{'fold':>4} {'rels':>5} {'steps':>5} {'img/epoch':>9} "
              f"{'inner pairs':>11} {'images':>6} {'budget':>6} {'checked':>7}")  # fmt: skip
        for fold in folds_of(prepared):
            split = split_fold(
                prepared.images, prepared.people, prepared.relationships, fold,
                train.inner_fraction, train.seed, params.pairs.kin_pairs_per_relationship,
            )  # fmt: skip
            inner = split.inner_pairs[prepared.scorable(split.inner_pairs, bad)]
            rows = (prepared.rows(inner["img1"]), prepared.rows(inner["img2"]),
                    inner["label"].to_numpy())  # fmt: skip
            relationships = len(usable_relationships(split, rows_of_person))
            steps = epoch_steps(mp, relationships)
            budget = inner_check_images(mp, relationships, train.inner_budget)
            checked = inner_check(rows, budget, [train.seed, fold])
            print(
                f"{fold:>4} {relationships:>5} {steps:>5} {steps * mp.batch_size:>9} "
                f"{len(inner):>11} {len(np.unique(np.r_[rows[0], rows[1]])):>6} {budget:>6} "
                f"{len(checked[0]):>7}"
            )


if __name__ == "__main__":
    main()

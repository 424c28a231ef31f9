"""The train stage of a frozen member: a pair head per fold on the embed stage's features.

Per fold and seed:
1. the fold's training families split, as for image members, into fitting families and an inner
   slice (`kinship.training.split_fold`): the same families, the same inner pairs;
2. training pairs from the fitting families (`kinship.pairs.training_pairs`): many image pairs per
   relationship, strangers and in-family non-kin as negatives, each pair in a random order and,
   with `tta_flip`, each image as itself or its mirror image at random;
3. the head fits, the inner slice choosing LightGBM's number of rounds;
4. validation, holdout and test pairs are scored as the mean of (a, b) and (b, a), each image's
   features averaged over its views under `tta_flip`.
The outputs are those of an image member (`kinship.train_stage`), so `collect`, the ensemble and
the report treat both alike.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import asdict

import numpy as np

from kinship.embed import Embeddings
from kinship.fold_files import finish_fold, partial_dir
from kinship.frozen.features import image_features, pair_features, symmetric_scores, view_mean
from kinship.frozen.heads import create_head
from kinship.io import atomic_dir, write_json
from kinship.pairs import training_pairs
from kinship.params import Params
from kinship.train_stage import (
    Prepared,
    fold_targets,
    log_fold,
    member_key,
    member_seed,
    predict_targets,
    write_fold_predictions,
)
from kinship.training import split_fold

log = logging.getLogger(__name__)


class FrozenTrainer:
    """One frozen member across folds: the per-image features are loaded once."""

    def __init__(self, name: str, params: Params, prepared: Prepared):
        self.name, self.params, self.prepared = name, params, prepared
        self.fp = params.frozen_members[name]
        start = time.perf_counter()
        embeddings = Embeddings.load(len(prepared.images))
        self.features = image_features(self.fp.model, embeddings)
        self.bad = embeddings.bad_rows
        self.build_seconds = time.perf_counter() - start
        if self.fp.tta_flip and self.features.shape[1] < 2:
            raise ValueError(
                f"frozen_members.{name}.tta_flip needs mirror-image descriptors: the embeddings "
                "hold one view (set embed.flip: true and rerun `dvc repro embed`)"
            )

    def vectors(self, rows: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Features of cache rows: a random view each (training, `rng` given) or, for
        prediction, the mean over the views under `tta_flip` (the image itself otherwise)."""
        if rng is not None:
            views = self.features.shape[1] if self.fp.tta_flip else 1
            return self.features[rows, rng.integers(views, size=len(rows))]
        return view_mean(self.features, rows, self.fp.tta_flip)

    def predict(self, head, rows1: np.ndarray, rows2: np.ndarray) -> np.ndarray:
        """Symmetric probabilities: the mean of score(a, b) and score(b, a)."""
        if len(rows1) == 0:
            return np.zeros(0)
        return symmetric_scores(
            head, self.vectors(rows1), self.vectors(rows2), self.fp.pair_features
        )

    def train_fold(self, fold: int, resume: bool = False) -> None:
        """Fit the head of every seed on one fold; write checkpoints, predictions and timing,
        then the completion marker. A head fits in seconds: `resume` refits the fold."""
        if resume:
            log.info("%s fold %d: a frozen member's heads refit from scratch", self.name, fold)
        prep, tp, fp = self.prepared, self.params, self.fp
        split = split_fold(
            prep.images, prep.people, prep.relationships, fold, tp.train.inner_fraction,
            tp.train.seed, tp.pairs.kin_pairs_per_relationship,
        )  # fmt: skip
        inner = split.inner_pairs[prep.scorable(split.inner_pairs, self.bad)]
        inner_rows = prep.rows(inner["img1"]), prep.rows(inner["img2"])
        usable = prep.images[(prep.images["split"] == "train") & ~prep.images["row"].isin(self.bad)]
        targets = fold_targets(prep, fold, self.bad)
        sums = {key: np.zeros(len(t)) for key, t in targets.items()}
        timing = {"fold": fold, "build_seconds": round(self.build_seconds, 2), "seeds": []}
        with atomic_dir(partial_dir(self.name, fold)) as out:
            for seed in fp.seeds:
                start = time.perf_counter()
                entropy = [tp.train.seed, seed, fold, member_key(self.name)]
                rng = np.random.default_rng(entropy)
                # 1. training pairs, each in a random order and view
                pairs = training_pairs(
                    usable, split.fit_people, split.fit_relationships, rng=rng,
                    kin_cap=fp.kin_pairs_per_relationship,
                    negatives_per_kin=fp.negatives_per_kin, nonkin_share=fp.nonkin_share,
                )  # fmt: skip
                r1, r2 = prep.rows(pairs["img1"]), prep.rows(pairs["img2"])
                swap = rng.random(len(r1)) < 0.5
                r1, r2 = np.where(swap, r2, r1), np.where(swap, r1, r2)
                x = pair_features(self.vectors(r1, rng), self.vectors(r2, rng), fp.pair_features)
                x_inner = pair_features(
                    self.vectors(inner_rows[0]), self.vectors(inner_rows[1]), fp.pair_features
                )
                # 2. the head, its rounds chosen on the inner slice
                head = create_head(fp)
                fitted = head.fit(
                    x, pairs["label"].to_numpy(), x_inner, inner["label"].to_numpy(),
                    member_seed(entropy),
                )  # fmt: skip
                del x
                seed_dir = out / f"seed{seed}"
                seed_dir.mkdir()
                head.save(seed_dir)
                write_json(seed_dir / "config.json", self._config())
                train_seconds = time.perf_counter() - start
                # 3. every target pair, symmetric
                probs = predict_targets(prep, targets, functools.partial(self.predict, head))
                for key, p in probs.items():
                    sums[key] += p
                log.info(
                    "%s fold %d seed %d: %d training pairs (%d kin), %s rounds, inner_auc %.4f, "
                    "%.1f s",
                    self.name, fold, seed, len(pairs), int(pairs["label"].sum()),
                    fitted["rounds"], fitted["inner_auc"], train_seconds,
                )  # fmt: skip
                timing["seeds"].append(
                    {
                        "seed": seed,
                        "training_pairs": int(len(pairs)),
                        "rounds": fitted["rounds"],
                        "inner_auc": round(fitted["inner_auc"], 6),
                        "train_seconds": round(train_seconds, 2),
                        "total_seconds": round(time.perf_counter() - start, 2),
                    }
                )
            write_fold_predictions(out, targets, sums, len(fp.seeds))
            write_json(out / "timing.json", timing)
        finish_fold(partial_dir(self.name, fold), self.name, fold, asdict(fp))
        log_fold(self.name, fold, targets, sums)

    def _config(self) -> dict:
        return {"name": self.name, "class": type(self).__qualname__, "params": asdict(self.fp),
                "embed": asdict(self.params.embed)}  # fmt: skip

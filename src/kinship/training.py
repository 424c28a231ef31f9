"""Framework-free training of one member on one fold: the loop a reader can hold in their head.

1. The fold's training families (all folds but k, never the holdout) are split, family-disjoint and
   seeded, into a fitting part and an inner slice (`train.inner_fraction`).
2. Each epoch samples fresh training pairs from the fitting part: half kin (a random relationship
   row, random images), half non-kin (people of two different fitting families).
3. After each epoch the true ROC AUC on the inner slice's fixed pairs drives checkpoint choice,
   ReduceLROnPlateau and early stopping. The fold's validation pairs are predicted once, at the end,
   with the best checkpoint restored.
Prediction embeds each unique image once (mean with its mirror image under flip TTA) and averages
score(a, b) and score(b, a).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from kinship.augment import augment, flip_horizontal
from kinship.members.base import Member
from kinship.metrics import auc
from kinship.pairs import validation_pairs

log = logging.getLogger(__name__)

EMBED_CHUNK = 256


@dataclass
class FoldSplit:
    """Who trains and who drives model selection in one fold."""

    fit_people: pd.DataFrame  # person, family
    fit_relationships: pd.DataFrame  # p1, p2
    inner_pairs: pd.DataFrame  # the pairs contract, fold column meaningless


@dataclass
class History:
    epochs: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_inner_auc: float = float("-inf")
    train_images: int = 0
    train_seconds: float = 0.0


def split_fold(
    images: pd.DataFrame,
    people: pd.DataFrame,
    relationships: pd.DataFrame,
    fold: int,
    inner_fraction: float,
    seed: int,
    kin_cap: int,
) -> FoldSplit:
    """Families of the other folds, split into fitting families and an inner selection slice."""
    train_people = people[(people["fold"] != fold) & (people["fold"] >= 0)]
    families = np.array(sorted(train_people["family"].unique()))
    rng = np.random.default_rng([seed, fold])
    n_inner = max(2, int(round(inner_fraction * len(families))))
    if len(families) - n_inner < 2:
        raise ValueError(
            f"fold {fold}: {len(families)} training families are too few to hold out an inner "
            f"slice of {n_inner} (lower train.inner_fraction or folds.k, or use more data)"
        )
    inner = set(rng.choice(families, size=n_inner, replace=False))
    is_inner = train_people["family"].isin(inner)
    rels = relationships[relationships["family"].isin(set(families))]
    inner_rels = rels[rels["family"].isin(inner)]
    inner_pairs = validation_pairs(
        images,
        train_people[is_inner],
        inner_rels,
        pd.Series(0, index=sorted(inner), dtype="int8"),
        seed=seed,
        kin_cap=kin_cap,
        cross_family_ratio=1.0,
        in_family_nonkin_ratio=0.0,
    )
    return FoldSplit(
        fit_people=train_people[~is_inner][["person", "family"]].reset_index(drop=True),
        fit_relationships=rels[~rels["family"].isin(inner)][["p1", "p2"]].reset_index(drop=True),
        inner_pairs=inner_pairs,
    )


class PairSampler:
    """Fresh training pairs each epoch: half kin, half non-kin from two different families."""

    def __init__(
        self,
        split: FoldSplit,
        rows_of_person: dict[str, np.ndarray],
        rng: np.random.Generator,
    ):
        usable = [p for p in split.fit_people["person"] if len(rows_of_person.get(p, ())) > 0]
        people = split.fit_people.set_index("person").loc[usable]
        self.persons = np.array(usable, dtype=object)
        self.families = people["family"].to_numpy()
        rels = split.fit_relationships
        keep = rels["p1"].isin(usable) & rels["p2"].isin(usable)
        self.kin = rels[keep].to_numpy()
        if len(self.kin) == 0 or len(set(self.families)) < 2:
            raise ValueError("no usable training relationships or fewer than two families")
        self.rows_of = rows_of_person
        self.rng = rng

    def _image(self, person: str) -> int:
        rows = self.rows_of[person]
        return int(rows[self.rng.integers(len(rows))])

    def sample(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cache rows of `n` pairs and their labels (float32), shuffled."""
        n_kin = n // 2
        rows1, rows2 = [], []
        for p1, p2 in self.kin[self.rng.integers(len(self.kin), size=n_kin)]:
            rows1.append(self._image(p1))
            rows2.append(self._image(p2))
        while len(rows1) < n:
            i, j = self.rng.integers(len(self.persons), size=2)
            if self.families[i] != self.families[j]:
                rows1.append(self._image(self.persons[i]))
                rows2.append(self._image(self.persons[j]))
        labels = np.r_[np.ones(n_kin), np.zeros(n - n_kin)].astype(np.float32)
        order = self.rng.permutation(n)
        return np.array(rows1)[order], np.array(rows2)[order], labels[order]


class Embedder:
    """Embeds cache rows once per model state; frozen members keep embeddings across folds."""

    def __init__(self, member: Member, cache: np.ndarray, tta_flip: bool):
        self.member = member
        self.cache = cache
        self.tta_flip = tta_flip
        self.frozen_store: dict[tuple[int, bool], np.ndarray] = {}

    def embed_rows(self, rows: np.ndarray, flipped: bool = False) -> np.ndarray:
        """Embeddings of cache rows (rows may repeat: each unique row is embedded once)."""
        unique, inverse = np.unique(rows, return_inverse=True)
        if self.member.frozen:
            missing = [r for r in unique if (r, flipped) not in self.frozen_store]
            if missing:
                for r, e in zip(missing, self._embed(np.array(missing), flipped), strict=True):
                    self.frozen_store[(r, flipped)] = e
            embeddings = np.stack([self.frozen_store[(r, flipped)] for r in unique])
        else:
            embeddings = self._embed(unique, flipped)
        return embeddings[inverse]

    def _embed(self, rows: np.ndarray, flipped: bool) -> np.ndarray:
        chunks = []
        for start in range(0, len(rows), EMBED_CHUNK):
            images = self.cache[rows[start : start + EMBED_CHUNK]]  # sorted rows: sequential reads
            images = flip_horizontal(images) if flipped else images
            chunks.append(self.member.embed(np.ascontiguousarray(images)))
        return np.concatenate(chunks).astype(np.float32)

    def embed_for_prediction(self, rows: np.ndarray) -> np.ndarray:
        embeddings = self.embed_rows(rows)
        if self.tta_flip:
            embeddings = (embeddings + self.embed_rows(rows, flipped=True)) / 2
        return embeddings

    def predict(self, rows1: np.ndarray, rows2: np.ndarray) -> np.ndarray:
        """Symmetric pair probabilities: mean of score(a, b) and score(b, a)."""
        if len(rows1) == 0:
            return np.zeros(0)
        unique, inverse = np.unique(np.r_[rows1, rows2], return_inverse=True)
        embeddings = self.embed_for_prediction(unique)
        e1, e2 = embeddings[inverse[: len(rows1)]], embeddings[inverse[len(rows1) :]]
        forward, backward = self.member.score(e1, e2), self.member.score(e2, e1)
        return (forward.astype(np.float64) + backward.astype(np.float64)) / 2


def fit(
    member: Member,
    embedder: Embedder,
    sampler: PairSampler,
    inner_rows: tuple[np.ndarray, np.ndarray, np.ndarray],
    rng: np.random.Generator,
    on_epoch: Callable[[dict], None] = lambda record: None,
) -> History:
    """Train for up to `epochs`; keep the state with the best inner AUC and restore it."""
    p = member.params
    history, best_state, stale, plateau = History(), None, 0, 0
    rows1_inner, rows2_inner, labels_inner = inner_rows
    for epoch in range(p.epochs):
        # 1. one epoch of fresh pairs
        start, losses = time.perf_counter(), []
        for _ in range(p.steps_per_epoch):
            rows1, rows2, labels = sampler.sample(p.batch_size)
            losses.append(_step(member, embedder, rows1, rows2, labels, rng))
        seconds = time.perf_counter() - start
        history.train_seconds += seconds
        history.train_images += 2 * p.steps_per_epoch * p.batch_size
        # 2. the true AUC on the inner slice
        inner_auc = auc(labels_inner, embedder.predict(rows1_inner, rows2_inner))
        record = {
            "epoch": epoch,
            "loss": float(np.mean(losses)),
            "inner_auc": inner_auc,
            "lr": member.get_learning_rate(),
            "img_per_s": 2 * p.steps_per_epoch * p.batch_size / seconds,
        }
        history.epochs.append(record)
        on_epoch(record)
        # 3. checkpoint choice, ReduceLROnPlateau, early stopping
        if inner_auc > history.best_inner_auc:
            history.best_inner_auc, history.best_epoch = inner_auc, epoch
            best_state, stale, plateau = member.get_state(), 0, 0
            continue
        stale, plateau = stale + 1, plateau + 1
        if plateau >= p.lr_patience:
            member.set_learning_rate(member.get_learning_rate() * p.lr_factor)
            plateau = 0
        if stale >= p.early_stopping_patience:
            break
    if best_state is not None:
        member.set_state(best_state)
    return history


def _step(member, embedder, rows1, rows2, labels, rng) -> float:
    aug = member.params.augment
    if member.frozen:
        flips = rng.random(2) < 0.5 if aug.flip else (False, False)
        e1 = embedder.embed_rows(rows1, flipped=bool(flips[0]))
        e2 = embedder.embed_rows(rows2, flipped=bool(flips[1]))
        return member.train_head_step(e1, e2, labels)
    x1 = augment(embedder.cache[rows1], rng, aug)
    x2 = augment(embedder.cache[rows2], rng, aug)
    return member.train_step(x1, x2, labels)

"""Framework-free training of one member on one fold: the loop a reader can hold in their head.

1. The fold's training families (all folds but k, never the holdout) are split, family-disjoint and
   seeded, into a fitting part and an inner slice (`train.inner_fraction`).
2. Each step samples a fresh group batch from the fitting part (`GroupSampler`): images of random
   relationship rows, each image paired with its relative's images (kin) and with as many images
   of other families in the batch (non-kin) — half kin, half non-kin, each image embedded once.
3. After each epoch the true ROC AUC on the inner slice's fixed pairs drives checkpoint choice,
   ReduceLROnPlateau and early stopping; the check costs at most `train.inner_budget` of an epoch
   (`inner_check`). The fold's validation pairs are predicted once, at the end, with the best
   checkpoint restored.
   The schedule: `steps_per_epoch` (or `auto`, from the number of training relationships), an
   optional frozen-backbone phase (`freeze_epochs`: the head alone, on embeddings computed once),
   then the whole net with the backbone at its own rate (`backbone_lr`), warmed up linearly
   (`warmup_epochs`); ReduceLROnPlateau scales both rates.
4. With `FitCheckpoints`, each epoch ends by writing the loop's state atomically (`last/`: weights,
   optimiser state, epoch, counters, random state; `best/` when the inner AUC improved), so an
   interrupted fold can resume (`kinship train --member M --fold K --resume`).
Prediction embeds each unique image once (mean with its mirror image under flip TTA) and averages
score(a, b) and score(b, a).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from kinship.augment import augment, flip_horizontal
from kinship.io import atomic_dir, write_json
from kinship.members.base import Member
from kinship.members.params import GROUP_IMAGES, check_group_batch_size
from kinship.metrics import auc
from kinship.pairs import validation_pairs
from kinship.prefetch import Prefetcher

log = logging.getLogger(__name__)

EMBED_CHUNK = 256
FORWARD_COST = 1 / 3
"""An image's forward pass as a share of its training step (forward and backward: a backward
pass costs about twice the forward one), for the inner check's budget."""


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


KIN_IMAGES = GROUP_IMAGES // 2
"""Images of each side of a sampled relationship in a group batch (so each image has this many kin
partners, and as many non-kin ones)."""


def usable_relationships(split: FoldSplit, rows_of_person: dict[str, np.ndarray]) -> np.ndarray:
    """The fitting part's relationship rows (p1, p2) whose two people have readable images."""
    usable = {p for p in split.fit_people["person"] if len(rows_of_person.get(p, ())) > 0}
    rels = split.fit_relationships
    keep = rels["p1"].isin(usable) & rels["p2"].isin(usable)
    return rels[keep][["p1", "p2"]].to_numpy()


def epoch_steps(params, relationships: int) -> int:
    """Steps per epoch: `steps_per_epoch`, or with `auto` enough steps that each of the
    `relationships` training rows is drawn once per epoch in expectation (a batch holds
    batch_size / GROUP_IMAGES rows)."""
    if params.steps_per_epoch != "auto":
        return params.steps_per_epoch
    return max(1, math.ceil(relationships * GROUP_IMAGES / params.batch_size))


def inner_check(
    inner_rows: tuple[np.ndarray, np.ndarray, np.ndarray],
    max_images: int | None,
    seed: list[int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The inner pairs checked after each epoch: all of them, or with `max_images` a fixed,
    seeded sample whose distinct images (each embedded once per check) number at most that.

    Kin and non-kin pairs are taken alternately from two seeded shuffles, so the sample keeps the
    slice's balance; a pair whose images are already in costs nothing and is always taken.
    """
    rows1, rows2, labels = inner_rows
    if max_images is None or len(np.unique(np.r_[rows1, rows2])) <= max_images:
        return inner_rows
    rng = np.random.default_rng(seed)
    kin, nonkin = (
        rng.permutation(np.flatnonzero(labels == 1)),
        rng.permutation(np.flatnonzero(labels != 1)),
    )
    order = np.empty(len(labels), np.int64)
    n = min(len(kin), len(nonkin))
    order[: 2 * n : 2], order[1 : 2 * n : 2] = kin[:n], nonkin[:n]
    order[2 * n :] = np.r_[kin[n:], nonkin[n:]]
    images: set[int] = set()
    taken = []
    for i in order:
        new = {int(rows1[i]), int(rows2[i])} - images
        if len(images) + len(new) <= max(max_images, 4) or len(taken) < 2:
            images |= new
            taken.append(i)
    keep = np.sort(np.array(taken, np.int64))
    return rows1[keep], rows2[keep], labels[keep]


def inner_check_images(params, relationships: int, budget: float | None) -> int | None:
    """The most distinct images the inner check may embed: `budget` of an epoch's training
    compute, an image's forward pass costing FORWARD_COST of its training step."""
    if budget is None:
        return None
    return int(budget * epoch_steps(params, relationships) * params.batch_size / FORWARD_COST)


class GroupSampler:
    """Fresh training batches each step: groups of kin images with in-batch non-kin partners.

    A batch of B images holds B / (2 × KIN_IMAGES) random relationship rows of the fitting part,
    KIN_IMAGES random images of each of its two people. Each image is paired with the KIN_IMAGES
    images of its relative (label 1) and with KIN_IMAGES images of people from other families in
    the batch (label 0): half kin, half non-kin, negatives only across families, and every image
    embedded once for 2 × KIN_IMAGES pairs.
    """

    def __init__(
        self,
        split: FoldSplit,
        rows_of_person: dict[str, np.ndarray],
        rng: np.random.Generator,
    ):
        family_of = dict(zip(split.fit_people["person"], split.fit_people["family"], strict=True))
        self.kin = usable_relationships(split, rows_of_person)
        self.kin_family = np.array([family_of[p] for p in self.kin[:, 0]], dtype=object)
        if len(set(self.kin_family)) < 2:
            raise ValueError(
                f"the fitting families have usable relationships in {len(set(self.kin_family))} "
                "family; group batches need two (use more data or fewer folds)"
            )
        self.rows_of = rows_of_person
        self.rng = rng

    def _relationships(self, n: int) -> np.ndarray:
        """`n` random relationship rows spanning at least two families."""
        while True:
            chosen = self.rng.choice(len(self.kin), size=n, replace=n > len(self.kin))
            if len(set(self.kin_family[chosen])) >= 2:
                return chosen

    def sample(self, batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cache rows (B,), partners (B, 2·KIN_IMAGES) and labels (B, 2·KIN_IMAGES) float32."""
        check_group_batch_size(batch_size, "batch_size")
        group = GROUP_IMAGES
        chosen = self._relationships(batch_size // group)
        rows = np.empty(batch_size, np.int64)
        family = np.repeat(self.kin_family[chosen], group)
        for g, (p1, p2) in enumerate(self.kin[chosen]):
            for side, person in enumerate((p1, p2)):
                own = self.rows_of[person]
                start = g * group + side * KIN_IMAGES
                rows[start : start + KIN_IMAGES] = own[self.rng.integers(len(own), size=KIN_IMAGES)]
        index = np.arange(batch_size)
        partners = np.empty((batch_size, group), np.int32)
        for i in index:
            g, side = divmod(i, group)
            relative = g * group + (1 - side // KIN_IMAGES) * KIN_IMAGES
            others = index[family != family[i]]
            partners[i, :KIN_IMAGES] = np.arange(relative, relative + KIN_IMAGES)
            partners[i, KIN_IMAGES:] = self.rng.choice(
                others, size=KIN_IMAGES, replace=len(others) < KIN_IMAGES
            )
        labels = np.zeros((batch_size, group), np.float32)
        labels[:, :KIN_IMAGES] = 1.0
        return rows, partners, labels


class Embedder:
    """Embeds cache rows once per model state. While the backbone holds its pretrained weights
    (`freeze`, or the frozen phase of `freeze_epochs`: `reset` restores them for every fold and
    seed), embeddings are kept across folds and seeds."""

    def __init__(self, member: Member, cache: np.ndarray, tta_flip: bool):
        self.member = member
        self.cache = cache
        self.tta_flip = tta_flip
        self.frozen_store: dict[tuple[int, bool], np.ndarray] = {}
        self.pretrained_backbone = member.frozen
        """Whether the backbone holds its pretrained weights now (the store is valid)."""

    def embed_rows(self, rows: np.ndarray, flipped: bool = False) -> np.ndarray:
        """Embeddings of cache rows (rows may repeat: each unique row is embedded once)."""
        unique, inverse = np.unique(rows, return_inverse=True)
        if self.pretrained_backbone:
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

    def embed_for_prediction(self, rows: np.ndarray, tta: bool = True) -> np.ndarray:
        embeddings = self.embed_rows(rows)
        if self.tta_flip and tta:
            embeddings = (embeddings + self.embed_rows(rows, flipped=True)) / 2
        return embeddings

    def predict(self, rows1: np.ndarray, rows2: np.ndarray, tta: bool = True) -> np.ndarray:
        """Symmetric pair probabilities: mean of score(a, b) and score(b, a); with flip TTA when
        the member sets `tta_flip` and `tta` is left on."""
        if len(rows1) == 0:
            return np.zeros(0)
        unique, inverse = np.unique(np.r_[rows1, rows2], return_inverse=True)
        embeddings = self.embed_for_prediction(unique, tta)
        e1, e2 = embeddings[inverse[: len(rows1)]], embeddings[inverse[len(rows1) :]]
        forward, backward = self.member.score(e1, e2), self.member.score(e2, e1)
        return (forward.astype(np.float64) + backward.astype(np.float64)) / 2


@dataclass
class LoopState:
    """Where `fit` stands after an epoch: enough to continue from there."""

    epoch: int = 0  # the next epoch to run
    stale: int = 0  # epochs since the best inner AUC (early stopping)
    plateau: int = 0  # epochs since the best or the last rate cut (ReduceLROnPlateau)
    lr_scale: float = 1.0  # the product of ReduceLROnPlateau's cuts so far
    history: History = field(default_factory=History)


class FitCheckpoints:
    """One seed's training state on disk, so an interrupted fit can resume.

    `last/` is rewritten atomically after every epoch: the member's training state (weights,
    optimiser state, its framework's random state), the loop state and the sampler's random
    state. `best/` holds the best weights so far (written after `last/` when the inner AUC
    improved; when `last/` says the last epoch was the best, its own weights are the best).
    """

    LOOP_FILE = "loop.json"

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def save(self, member: Member, loop: LoopState, rng: np.random.Generator) -> None:
        with atomic_dir(self.directory / "last") as tmp:
            member.save_training_state(tmp)
            state = {"loop": dataclasses.asdict(loop), "rng": rng.bit_generator.state}
            write_json(tmp / self.LOOP_FILE, state)
        if loop.history.best_epoch == loop.epoch - 1:
            with atomic_dir(self.directory / "best") as tmp:
                member.save(tmp)

    def restore(self, member: Member, rng: np.random.Generator) -> tuple[LoopState, object] | None:
        """Load the last state into `member` and `rng`; returns the loop state and the best
        weights so far (None when no epoch was monitored yet), or None with nothing saved."""
        last = self.directory / "last"
        if not (last / self.LOOP_FILE).is_file():
            return None
        saved = json.loads((last / self.LOOP_FILE).read_text())
        history = History(**saved["loop"].pop("history"))
        loop = LoopState(**saved["loop"], history=history)
        best_state = None
        if 0 <= history.best_epoch < loop.epoch - 1:
            member.load(self.directory / "best")
            best_state = member.get_state()
        member.load_training_state(last)
        if history.best_epoch == loop.epoch - 1:
            best_state = member.get_state()
        rng.bit_generator.state = saved["rng"]
        return loop, best_state


def fit(
    member: Member,
    embedder: Embedder,
    sampler: GroupSampler,
    inner_rows: tuple[np.ndarray, np.ndarray, np.ndarray],
    rng: np.random.Generator,
    on_epoch: Callable[[dict], None] = lambda record: None,
    checkpoints: FitCheckpoints | None = None,
    resume: bool = False,
) -> History:
    """Train for up to `epochs`; keep the state with the best inner AUC and restore it. With
    `checkpoints`, save the state after each epoch; with `resume` too, continue from it."""
    p = member.params
    loop, best_state = LoopState(), None
    if resume and checkpoints is not None:
        restored = checkpoints.restore(member, rng)
        if restored is not None:
            loop, best_state = restored
            log.info("%s: resuming after epoch %d", member.name, loop.epoch - 1)
    history = loop.history
    steps = epoch_steps(p, len(sampler.kin))
    rows1_inner, rows2_inner, labels_inner = inner_rows
    try:
        while loop.epoch < p.epochs and not _stopped(loop, p):
            epoch = loop.epoch
            # 1. one epoch of fresh pairs: the head alone while the backbone is frozen
            head_only = member.frozen or epoch < p.freeze_epochs
            embedder.pretrained_backbone = head_only
            member.set_learning_rate(p.lr * loop.lr_scale)

            def set_rate(step: int, epoch: int = epoch, head_only: bool = head_only) -> None:
                if not head_only and p.warmup_epochs > 0:
                    ramp = _warmup(p, (epoch - p.freeze_epochs) * steps + step, steps)
                    member.set_learning_rate(p.lr * loop.lr_scale * ramp)

            start = time.perf_counter()
            if member.device_path and not head_only:
                losses = _device_epoch(member, embedder.cache, sampler, steps, set_rate)
            else:
                losses = []
                for step in range(steps):
                    set_rate(step)
                    rows, partners, labels = sampler.sample(p.batch_size)
                    losses.append(_step(member, embedder, head_only, rows, partners, labels, rng))
            losses = [float(loss) for loss in losses]  # the one wait for the device per epoch
            seconds = time.perf_counter() - start
            history.train_seconds += seconds
            history.train_images += steps * p.batch_size
            # 2. the true AUC on the inner check's pairs
            # (model selection skips flip TTA: half the cost, the written predictions keep it)
            inner_auc = auc(labels_inner, embedder.predict(rows1_inner, rows2_inner, tta=False))
            record = {
                "epoch": epoch,
                "loss": float(np.mean(losses)),
                "inner_auc": inner_auc,
                "lr": member.get_learning_rate(),
                "img_per_s": steps * p.batch_size / seconds,
                "phase": "head" if head_only else "all",
            }
            history.epochs.append(record)
            on_epoch(record)
            # 3. checkpoint choice, ReduceLROnPlateau, early stopping (after the warm-up epochs)
            loop.epoch = epoch + 1
            if epoch >= p.start_from_epoch:
                if inner_auc > history.best_inner_auc:
                    history.best_inner_auc, history.best_epoch = inner_auc, epoch
                    best_state, loop.stale, loop.plateau = member.get_state(), 0, 0
                else:
                    loop.stale, loop.plateau = loop.stale + 1, loop.plateau + 1
                    if loop.plateau >= p.lr_patience:
                        loop.lr_scale *= p.lr_factor
                        member.set_learning_rate(p.lr * loop.lr_scale)
                        loop.plateau = 0
            # 4. the state to resume from
            if checkpoints is not None:
                checkpoints.save(member, loop, rng)
        if best_state is not None:
            member.set_state(best_state)
    finally:
        # the best state may hold fine-tuned backbone weights: embed afresh from now on
        embedder.pretrained_backbone = member.frozen
    return history


def _warmup(p, step: int, steps_per_epoch: int) -> float:
    """The learning-rate share at the backbone's `step`-th training step (0-based)."""
    total = p.warmup_epochs * steps_per_epoch
    return min(1.0, (step + 1) / total)


def _stopped(loop: LoopState, p) -> bool:
    """Early stopping: `early_stopping_patience` monitored epochs without a better inner AUC."""
    return loop.stale >= p.early_stopping_patience


PREFETCH_DEPTH = 3
"""Batches the prefetch thread may prepare ahead of the training step."""


def _device_epoch(member, cache, sampler, steps: int, set_rate) -> list:
    """One epoch on the device data path. A background thread samples each next batch, gathers
    its uint8 images from the cache and starts their copy to the device (`member.upload`) while
    the current step trains; augmentation and preprocessing run on the device
    (`member.train_uploaded`), and the losses stay there until the epoch ends. The thread makes
    exactly `steps` batches, one after another, so the sampler's random state after the epoch is
    a serial run's (what `--resume` saves)."""
    batch_size = member.params.batch_size

    def next_batch():
        rows, partners, labels = sampler.sample(batch_size)
        return member.upload(cache[rows], partners, labels)

    losses = []
    with Prefetcher(next_batch, steps, depth=PREFETCH_DEPTH) as batches:
        for step, batch in enumerate(batches):
            set_rate(step)
            losses.append(member.train_uploaded(batch))
    return losses


def _step(member, embedder, head_only, rows, partners, labels, rng):
    """One training step; returns its loss (a float, or a device scalar read after the epoch)."""
    aug = member.params.augment
    if head_only:
        embeddings = embedder.embed_rows(rows)
        if aug.flip:  # pretrained embeddings are kept per image and mirror image
            mirrored = rng.random(len(rows)) < 0.5
            if mirrored.any():
                embeddings[mirrored] = embedder.embed_rows(rows[mirrored], flipped=True)
        return member.train_head_step(embeddings, partners, labels)
    return member.train_step(augment(embedder.cache[rows], rng, aug), partners, labels)

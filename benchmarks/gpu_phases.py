"""The GPU benchmark's phases: one member's throughput (model alone vs data path), the plain-torch
reference, and a short training run of one fold through the trainer (`kinship.training.fit`).

Each phase takes the run's settings `s` (bench_gpu.Settings) and the data (`gpu_data.BenchData`),
imports torch and Keras only when called, and returns a plain dict for the report.
"""

from __future__ import annotations

import gc
import time

import numpy as np

SEED = 0
FOLD = 0
LR = 1e-3  # Adam, random init (the demo's rate)
AUGMENT_THROUGHPUT = {"flip": True, "shift": 0.05, "colour": 0.1}  # profiles/fiw-gpu.yaml's
AUGMENT_TRAIN = {"flip": True, "shift": 0.05, "colour": 0.0}  # no jitter on synthetic data
TRAIN_OVERHEAD = 1.3  # an epoch's wall time over its steps' (the inner check, the first trace)


def member_params(model: str, size: int, width: float, s, **train):
    from kinship.members.params import AugmentParams, MemberParams

    augment = train.pop("augment", AUGMENT_THROUGHPUT)
    return MemberParams(
        model=model,
        input_size=size,
        width=width,
        batch_size=s.batch_size,
        lr=LR,
        mixed_precision=s.mixed_precision,
        augment=AugmentParams(**augment),
        **train,
    )


def new_member(params):
    from kinship.members.registry import create_member
    from kinship.train_stage import member_key, member_seed

    member = create_member(params.model, params)
    member.build()
    member.reset(member_seed([SEED, SEED, FOLD, member_key(params.model)]))
    return member


def release() -> None:
    """Let a dropped member's memory go (the caller deletes its reference first)."""
    import gpu_timing

    gc.collect()
    gpu_timing.reset_memory()


def throughput(model: str, size: int, width: float, s, data, split, env) -> dict:
    """Model alone vs data path for one member, with the GPU-busy shares and peak memory."""
    import gpu_timing as t

    from kinship.training import GroupSampler

    start = time.perf_counter()
    row = {"member": model, "size": size, "width": width, "card_gib": env["card_gib"]}
    t.reset_memory()
    try:
        member = new_member(member_params(model, size, width, s))
    except ImportError as error:  # facenet-pytorch or torchvision missing on a bare machine
        return row | {"skipped": f"{type(error).__name__}: {error}"}
    cache = data.caches[size]
    rows_of_person = data.prepared.rows_of_person(set())
    sampler = GroupSampler(split, rows_of_person, np.random.default_rng([SEED, size]))
    row["model_alone"] = t.model_alone(member, cache, sampler, s.warmup_steps, s.timed_steps)
    row["data_path"] = t.data_path(member, cache, sampler, s.warmup_steps, s.timed_steps)
    row["ratio"] = row["data_path"]["img_per_s"] / row["model_alone"]["img_per_s"]
    n = s.profiled_steps
    row["busy_model_alone"] = t.gpu_busy(t.model_alone_steps(member, cache, sampler, n))
    row["busy_data_path"] = t.gpu_busy(t.data_path_steps(member, cache, sampler, n))
    row["memory"] = t.peak_memory()
    del member
    release()
    row["seconds"] = time.perf_counter() - start
    a, b = row["model_alone"], row["data_path"]
    print(
        f"{model}@{size}: model alone {a['img_per_s']:,.0f} img/s, data path "
        f"{b['img_per_s']:,.0f} img/s ({row['ratio']:.2f}); {row['seconds']:.0f} s",
        flush=True,
    )
    return row


def reference(s) -> dict:
    """torchvision's ResNet50 in plain torch: the card's ceiling at this batch and precision."""
    import gpu_timing as t

    start = time.perf_counter()
    ref = {"size": s.reference_size} | t.torch_reference(
        s.reference_size, s.batch_size, s.mixed_precision, s.warmup_steps, s.timed_steps
    )
    ref["seconds"] = time.perf_counter() - start
    release()
    if "skipped" in ref:
        print(f"torch reference: skipped, {ref['skipped']}", flush=True)
    else:
        print(f"torch reference resnet50@{s.reference_size}: {ref['img_per_s']:,.0f} img/s; "
              f"{ref['seconds']:.0f} s", flush=True)  # fmt: skip
    return ref


def fold_split(prepared):
    from kinship.params import PairParams, TrainParams
    from kinship.training import split_fold

    train = TrainParams(seed=SEED)
    return split_fold(
        prepared.images, prepared.people, prepared.relationships, FOLD,
        train.inner_fraction, train.seed, PairParams().kin_pairs_per_relationship,
    )  # fmt: skip


def train_epochs(s, seconds: float, steps: int, img_per_s: float | None) -> int:
    """The epochs that fit `seconds` at the measured data-path speed (all of them if unknown)."""
    if img_per_s is None:
        return s.train_epochs
    epoch = steps * s.batch_size / img_per_s * TRAIN_OVERHEAD
    return max(2, min(s.train_epochs, int(seconds // epoch)))


def training_run(s, data, split, seconds: float, speeds: dict) -> dict:
    """One fold of one random-init member through the trainer: `fit` with its inner check."""
    import gpu_timing as t

    from kinship.metrics import auc
    from kinship.params import TrainParams
    from kinship.training import (
        Embedder,
        GroupSampler,
        epoch_steps,
        fit,
        inner_check,
        inner_check_images,
        usable_relationships,
    )

    model, size, width = s.train
    prep, train = data.prepared, TrainParams(seed=SEED)
    rows_of_person = prep.rows_of_person(set())
    relationships = len(usable_relationships(split, rows_of_person))
    probe = member_params(model, size, width, s, steps_per_epoch=s.train_steps)
    steps = epoch_steps(probe, relationships)
    epochs = train_epochs(s, seconds, steps, speeds.get((model, size, width)))
    params = member_params(
        model, size, width, s, steps_per_epoch=s.train_steps, epochs=epochs,
        early_stopping_patience=epochs, lr_patience=2, augment=AUGMENT_TRAIN,
    )  # fmt: skip
    inner = split.inner_pairs
    inner_rows = (prep.rows(inner["img1"]), prep.rows(inner["img2"]), inner["label"].to_numpy())
    max_images = inner_check_images(params, relationships, train.inner_budget)
    inner_rows = inner_check(inner_rows, max_images, [train.seed, FOLD])
    t.reset_memory()
    member = new_member(params)
    embedder = Embedder(member, data.caches[size], tta_flip=False)
    rng = np.random.default_rng([SEED, FOLD])
    sampler = GroupSampler(split, rows_of_person, rng)

    def show(r: dict) -> None:
        print(
            f"  epoch {r['epoch']}: loss {r['loss']:.4f}, inner AUC {r['inner_auc']:.4f}, "
            f"{r['img_per_s']:,.0f} img/s",
            flush=True,
        )

    history = fit(member, embedder, sampler, inner_rows, rng, on_epoch=show)
    val = prep.pairs[prep.pairs["fold"] == FOLD]
    probs = embedder.predict(prep.rows(val["img1"]), prep.rows(val["img2"]))
    result = {
        "member": model, "size": size, "width": width, "fold": FOLD,
        "batch_size": s.batch_size, "steps_per_epoch": steps, "epochs": history.epochs,
        "inner_pairs": len(inner_rows[0]), "best_epoch": history.best_epoch,
        "best_inner_auc": history.best_inner_auc,
        "validation_auc": auc(val["label"].to_numpy(), probs), "validation_pairs": len(val),
        "train_seconds": history.train_seconds, "memory": t.peak_memory(),
    }  # fmt: skip
    del member, embedder
    release()
    return result

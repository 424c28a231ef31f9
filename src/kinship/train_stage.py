"""The train stage of one member: every fold in one process (build and trace once, reset weights per
fold), or one fold alone (`kinship train --member M --fold K`) collected later (`--collect`).

Per fold, `models/<member>/fold<k>/` receives one checkpoint per seed (with its config), the fold's
predictions and its timing, and last its completion marker (`kinship.fold_files`: how a fold
trains in `fold<k>.partial/` and resumes); `collect` joins complete folds' predictions on their
keys into the pipeline's tables and reports. Pairs with an unreadable image are never scored.
"""

from __future__ import annotations

import importlib
import json
import logging
import shutil
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kinship import paths
from kinship.cache import load_cache
from kinship.fold_files import (
    PROGRESS_DIR,
    add_seed,
    check_fold_complete,
    finish_fold,
    fold_dir,
    save_seed,
    seed_done,
    start_fold,
)
from kinship.io import atomic_file, write_json
from kinship.metrics import auc, by_kind, pair_families, score_summary
from kinship.params import Params

log = logging.getLogger(__name__)

PREDICTION_FILES = ("oof.parquet", "holdout.parquet", "test.parquet")


@dataclass
class Prepared:
    """The prepare stage's tables, indexed for training."""

    images: pd.DataFrame
    people: pd.DataFrame
    relationships: pd.DataFrame
    pairs: pd.DataFrame
    holdout: pd.DataFrame
    test: pd.DataFrame

    @classmethod
    def load(cls, directory: Path = paths.PREPARED_DIR) -> Prepared:
        tables = {}
        for name in ("images", "people", "relationships", "pairs", "holdout_pairs", "test_pairs"):
            path = Path(directory) / f"{name}.parquet"
            if not path.is_file():
                raise FileNotFoundError(f"{path}: missing (run `dvc repro prepare`)")
            tables[name] = pd.read_parquet(path)
        return cls(
            tables["images"],
            tables["people"],
            tables["relationships"],
            tables["pairs"],
            tables["holdout_pairs"],
            tables["test_pairs"],
        )

    def rows(self, tokens: pd.Series) -> np.ndarray:
        return tokens.map(self.row_of).to_numpy(dtype=np.int64)

    @property
    def row_of(self) -> dict[str, int]:
        if not hasattr(self, "_row_of"):
            self._row_of = dict(zip(self.images["image"], self.images["row"], strict=True))
        return self._row_of

    def scorable(self, pairs: pd.DataFrame, bad_rows: set[int]) -> np.ndarray:
        """Whether each pair's two images are readable (neither is in `bad_rows`)."""
        bad = np.fromiter(bad_rows, np.int64, len(bad_rows))
        return ~(np.isin(self.rows(pairs["img1"]), bad) | np.isin(self.rows(pairs["img2"]), bad))

    def rows_of_person(self, bad_rows: set[int]) -> dict[str, np.ndarray]:
        """Cache rows of each person's readable images."""
        train = self.images[(self.images["split"] == "train") & ~self.images["row"].isin(bad_rows)]
        return {p: g.to_numpy() for p, g in train.groupby("person")["row"]}


def bad_rows(size: int) -> set[int]:
    report = paths.CACHE_REPORTS_DIR / f"{size}.json"
    if not report.is_file():
        raise FileNotFoundError(f"{report}: missing (run `dvc repro cache@{size}`)")
    return {b["row"] for b in json.loads(report.read_text())["bad"]}


def member_key(name: str) -> int:
    """A stable number per member name: each member draws its own initial weights, training pairs
    and augmentation, so members do not share the accidents of one sample stream."""
    return zlib.crc32(name.encode())


def member_seed(entropy: list[int]) -> int:
    """The framework seed (initial weights) drawn from one member's stream entropy."""
    return int(np.random.SeedSequence(entropy).generate_state(1)[0] % 2**31)


class MemberTrainer:
    """Holds one built member across folds: built (and traced) once per process."""

    def __init__(self, name: str, params: Params, prepared: Prepared):
        from kinship.members import registry
        from kinship.training import Embedder

        self.name, self.params, self.prepared = name, params, prepared
        self.mp = params.members[name]
        size = self.mp.input_size
        self.cache = load_cache(paths.cache_file(size), len(prepared.images), size)
        self.bad = bad_rows(size)
        self.keras_backend = None  # a Keras member's backend (recorded in timing.json)
        if self.mp.model in registry.KERAS_MODELS:  # before Keras is imported
            registry.use_keras_backend(params.train.keras_backend)
        start = time.perf_counter()
        self.member = registry.create_member(name, self.mp)
        self.member.build()
        self.build_seconds = time.perf_counter() - start
        self.embedder = Embedder(self.member, self.cache, self.mp.tta_flip)
        log.info("%s: built %s in %.1f s", name, self.mp.model, self.build_seconds)
        if self.member.framework == "keras":
            self.keras_backend = registry.keras_backend_in_use()
            log.info("%s: Keras backend %s", name, self.keras_backend)
        self.member.check_device()

    def train_fold(self, fold: int, resume: bool = False) -> None:
        """Train every seed on one fold in `fold<k>.partial/`, then put it in place of
        `fold<k>/` with its completion marker written last. With `resume`, continue an
        interrupted run: finished seeds are kept, the running one restarts from its last epoch."""
        from kinship.training import (
            FitCheckpoints,
            GroupSampler,
            fit,
            inner_check,
            inner_check_images,
            split_fold,
            usable_relationships,
        )

        prep, tp = self.prepared, self.params
        split = split_fold(
            prep.images, prep.people, prep.relationships, fold, tp.train.inner_fraction,
            tp.train.seed, tp.pairs.kin_pairs_per_relationship,
        )  # fmt: skip
        rows_of_person = prep.rows_of_person(self.bad)
        inner = split.inner_pairs[prep.scorable(split.inner_pairs, self.bad)]
        inner_rows = (prep.rows(inner["img1"]), prep.rows(inner["img2"]), inner["label"].to_numpy())
        relationships = len(usable_relationships(split, rows_of_person))
        max_images = inner_check_images(self.mp, relationships, tp.train.inner_budget)
        inner_rows = inner_check(inner_rows, max_images, [tp.train.seed, fold])
        log.info(
            "%s fold %d: inner check on %d of %d pairs (%d images; budget %s images)",
            self.name, fold, len(inner_rows[0]), len(inner), len(np.unique(inner_rows[:2])),
            max_images,
        )  # fmt: skip
        targets = fold_targets(prep, fold, self.bad)
        sums = {key: np.zeros(len(t)) for key, t in targets.items()}
        timing = {"fold": fold, "build_seconds": round(self.build_seconds, 2), "seeds": []}
        if self.keras_backend is not None:
            timing["keras_backend"] = self.keras_backend
        work = start_fold(self.name, fold, resume)
        progress = work / PROGRESS_DIR
        with self._live(fold, resume) as live:
            for seed in self.mp.seeds:
                done = seed_done(progress, seed)
                if done is not None:  # finished before the interruption
                    log.info("%s fold %d seed %d: kept from the interrupted run", self.name, fold,
                             seed)  # fmt: skip
                    add_seed(sums, timing, *done)
                    continue
                start = time.perf_counter()
                entropy = [tp.train.seed, seed, fold, member_key(self.name)]
                self.member.reset(member_seed(entropy))
                rng = np.random.default_rng(entropy)
                sampler = GroupSampler(split, rows_of_person, rng)
                history = fit(
                    self.member, self.embedder, sampler, inner_rows, rng,
                    on_epoch=lambda r, s=seed: self._log_epoch(live, fold, s, r),
                    checkpoints=FitCheckpoints(progress / f"seed{seed}.train"), resume=resume,
                )  # fmt: skip
                self.member.save(work / f"seed{seed}")
                predict_start = time.perf_counter()
                probs = predict_targets(prep, targets, self.embedder.predict)
                entry = {
                    "seed": seed,
                    "epochs": len(history.epochs),
                    "best_epoch": history.best_epoch,
                    "train_seconds": round(history.train_seconds, 2),
                    "train_img_per_s": round(
                        history.train_images / max(history.train_seconds, 1e-9), 1
                    ),
                    "predict_seconds": round(time.perf_counter() - predict_start, 2),
                    "total_seconds": round(time.perf_counter() - start, 2),
                }
                save_seed(progress, seed, probs, entry)
                add_seed(sums, timing, probs, entry)
        shutil.rmtree(progress)
        write_fold_predictions(work, targets, sums, len(self.mp.seeds))
        write_json(work / "timing.json", timing)
        finish_fold(work, self.name, fold, asdict(self.mp))
        log_fold(self.name, fold, targets, sums)

    def _live(self, fold: int, resume: bool):
        from dvclive import Live

        return Live(
            dir=str(paths.curves_dir(self.name, fold)),
            resume=resume,
            dvcyaml=False,
            save_dvc_exp=False,
            report=None,
        )

    def _log_epoch(self, live, fold: int, seed: int, record: dict) -> None:
        log.info(
            "%s fold %d seed %d epoch %d: loss %.4f, inner_auc %.4f, lr %.2e, %.0f img/s",
            self.name, fold, seed, record["epoch"], record["loss"], record["inner_auc"],
            record["lr"], record["img_per_s"],
        )  # fmt: skip
        live.step = record["epoch"]
        for key in ("loss", "inner_auc", "lr"):
            live.log_metric(f"seed{seed}/{key}", record[key])


def fold_targets(prepared: Prepared, fold: int, bad_rows: set[int]) -> dict[str, pd.DataFrame]:
    """The pairs a fold's models predict: its validation pairs, the holdout, the test pairs, each
    with a `scorable` column: False when an image of the pair is unreadable (`bad_rows`)."""
    tables = {
        "oof.parquet": prepared.pairs[prepared.pairs["fold"] == fold],
        "holdout.parquet": prepared.holdout,
        "test.parquet": prepared.test,
    }
    return {
        key: table.assign(scorable=prepared.scorable(table, bad_rows))
        for key, table in tables.items()
    }


def predict_targets(prepared: Prepared, targets: dict, predict) -> dict[str, np.ndarray]:
    """`predict(rows1, rows2)` on each target's scorable pairs; NaN for the others."""
    probs = {}
    for key, table in targets.items():
        scorable = table["scorable"].to_numpy()
        probs[key] = np.full(len(table), np.nan)
        probs[key][scorable] = predict(
            prepared.rows(table["img1"][scorable]), prepared.rows(table["img2"][scorable])
        )
    return probs


def write_fold_predictions(out: Path, targets: dict, sums: dict, n_seeds: int) -> None:
    """Each target's mean probability over the seeds (NaN where unscorable) and its `scorable`
    flag, keyed as the pipeline's tables."""
    for key, table in targets.items():
        ids = table[["img_pair"]] if key == "test.parquet" else table[["pair_id", "fold"]]
        ids.assign(prob=sums[key] / n_seeds, scorable=table["scorable"].to_numpy()).to_parquet(
            out / key, index=False
        )


def log_fold(name: str, fold: int, targets: dict, sums: dict) -> None:
    oof, probs = targets["oof.parquet"], sums["oof.parquet"]
    scorable = oof["scorable"].to_numpy()
    log.info(
        "%s fold %d: validation auc %.4f (%d unscorable pairs left out)",
        name, fold, auc(oof["label"][scorable], probs[scorable]), int((~scorable).sum()),
    )  # fmt: skip


def folds_of(prepared: Prepared) -> list[int]:
    return sorted(int(f) for f in prepared.pairs["fold"].unique())


def collect(name: str, params: Params, prepared: Prepared) -> dict:
    """Merge every fold's outputs into the member's OOF/holdout/test tables and reports."""
    folds = folds_of(prepared)
    loaded = {key: [] for key in PREDICTION_FILES}
    timings = []
    for fold in folds:
        directory = fold_dir(name, fold)
        check_fold_complete(name, fold, params)
        for key in PREDICTION_FILES:
            path = directory / key
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path}: fold {fold} of {name} has not been trained "
                    f"(run `kinship train --member {name} --fold {fold}`)"
                )
            loaded[key].append(pd.read_parquet(path))
        timings.append(json.loads((directory / "timing.json").read_text()))
    oof = pd.concat(
        [
            _by_key(table, _fold_path(name, fold, "oof.parquet"), "pair_id", pairs)
            for fold, table, pairs in zip(
                folds, loaded["oof.parquet"], _validation_pairs(prepared, folds), strict=True
            )
        ],
        ignore_index=True,
    )
    holdout = _mean_over_folds(name, folds, loaded["holdout.parquet"], prepared.holdout, "pair_id")
    test = _mean_over_folds(name, folds, loaded["test.parquet"], prepared.test, "img_pair")
    oof, holdout, test = fill_unscorable(prepared, oof, holdout, test)
    outputs = {
        paths.OOF_DIR / f"{name}.parquet": oof,
        paths.HOLDOUT_DIR / f"{name}.parquet": holdout,
        paths.TEST_PRED_DIR / f"{name}.parquet": test,
    }
    for path, table in outputs.items():
        with atomic_file(path, "wb") as fh:
            table.to_parquet(fh, index=False)
    write_crop_spec(name, params)
    metrics = member_metrics(name, params, prepared, oof, holdout)
    metrics["unscorable_pairs"] = {
        split: int((~table["scorable"]).sum())
        for split, table in (("oof", oof), ("holdout", holdout), ("test", test))
    }
    report_dir = paths.REPORTS_DIR / "members" / name
    write_json(report_dir / "metrics.json", metrics)
    write_json(report_dir / "timing.json", {"member": name, "folds": timings})
    log.info("%s: OOF auc %.4f %s", name, metrics["oof"]["auc"], metrics["oof"]["auc_ci95"])
    return metrics


def write_crop_spec(name: str, params: Params) -> None:
    """`models/<member>/crop.json`: the crop_spec stage's measure of how the training images frame
    a face, with this member's own input (`kinship predict` crops ordinary photos by it)."""
    if not paths.CROP_SPEC.is_file():
        raise FileNotFoundError(f"{paths.CROP_SPEC}: missing (run `dvc repro crop_spec`)")
    spec = json.loads(paths.CROP_SPEC.read_text())
    if name in params.members:
        spec["input_size"] = params.members[name].input_size
        spec["then"] = "resized to input_size as the image cache resizes the training images"
    else:
        spec["then"] = (
            f"dlib's face box (embed.face_box: {params.embed.face_box}) and 5-point alignment "
            "inside the crop, as the embed stage on the training images"
        )
    write_json(paths.MODELS_DIR / name / paths.CROP_FILE, spec)


def _fold_path(name: str, fold: int, key: str) -> Path:
    return fold_dir(name, fold) / key


def _validation_pairs(prepared: Prepared, folds: list[int]) -> list[pd.DataFrame]:
    return [prepared.pairs[prepared.pairs["fold"] == f] for f in folds]


def _by_key(table: pd.DataFrame, path: Path, key: str, expected: pd.DataFrame) -> pd.DataFrame:
    """`expected`'s id columns with `table`'s predictions joined on `key` (row order is free);
    a ValueError naming the file and the missing, unknown or duplicated keys otherwise."""
    got = pd.Index(table[key])
    missing = sorted(set(expected[key]) - set(got))
    extra = sorted(set(got) - set(expected[key]))
    duplicated = sorted(set(got[got.duplicated()]))
    if missing or extra or duplicated:
        raise ValueError(
            f"{path}: {len(table)} rows for {len(expected)} expected {key}s: "
            f"{len(missing)} missing (e.g. {missing[:3]}), {len(extra)} unknown "
            f"(e.g. {extra[:3]}), {len(duplicated)} duplicated (e.g. {duplicated[:3]}); "
            "the fold was trained on other prepared pairs: retrain it"
        )
    ids = [key] if key == "img_pair" else [key, "fold"]
    aligned = table.set_index(key).loc[expected[key]].reset_index()
    joined = expected[ids].reset_index(drop=True)
    if "fold" in ids and not (aligned["fold"].to_numpy() == joined["fold"].to_numpy()).all():
        raise ValueError(f"{path}: pairs carry other folds than pairs.parquet; retrain the fold")
    return joined.assign(
        prob=aligned["prob"].to_numpy(dtype=np.float64),
        scorable=aligned["scorable"].to_numpy(dtype=bool),
    )


def _mean_over_folds(
    name: str, folds: list[int], tables: list[pd.DataFrame], expected: pd.DataFrame, key: str
) -> pd.DataFrame:
    """The mean over fold models of each pair's probability, joined on `key`, in `expected`'s
    row order."""
    target = "test.parquet" if key == "img_pair" else "holdout.parquet"
    aligned = [
        _by_key(t, _fold_path(name, f, target), key, expected)
        for f, t in zip(folds, tables, strict=True)
    ]
    merged = aligned[0][aligned[0].columns.drop(["prob", "scorable"])]
    merged["prob"] = np.mean([a["prob"].to_numpy() for a in aligned], axis=0)
    merged["scorable"] = np.logical_and.reduce([a["scorable"].to_numpy() for a in aligned])
    return merged


def fill_unscorable(prepared: Prepared, oof, holdout, test):
    """Give unscorable pairs an uninformed probability: the base rate of the scorable OOF pairs
    (test pairs must all be in the submission; OOF and holdout rows keep `scorable` False so
    that no score is computed on them)."""
    labels = prepared.pairs.set_index("pair_id")["label"].loc[oof["pair_id"]].to_numpy()
    base_rate = float(labels[oof["scorable"].to_numpy()].mean())
    return [
        t.assign(prob=np.where(t["scorable"], t["prob"], base_rate)) for t in (oof, holdout, test)
    ]


def member_metrics(name, params: Params, prepared: Prepared, oof, holdout) -> dict:
    """Scores on the scorable pairs (both images readable)."""
    oof = oof[oof["scorable"]].reset_index(drop=True)
    holdout = holdout[holdout["scorable"]].reset_index(drop=True)
    family_of = dict(zip(prepared.images["image"], prepared.images["family"], strict=True))
    truth = prepared.pairs.set_index("pair_id")
    labels = truth["label"].loc[oof["pair_id"]].to_numpy()
    groups = pair_families(oof["pair_id"], family_of)
    per_fold = {
        str(f): round(auc(labels[oof["fold"] == f], oof["prob"][oof["fold"] == f]), 6)
        for f in sorted(oof["fold"].unique())
    }
    metrics = {
        **params.member_info(name),
        "oof": score_summary(labels, oof["prob"].to_numpy(), groups, seed=params.train.seed),
        "oof_auc_by_kind": by_kind(labels, truth["kind"].loc[oof["pair_id"]], oof["prob"]),
        "per_fold_auc": per_fold,
        "fold_auc_mean": round(float(np.mean(list(per_fold.values()))), 6),
        "fold_auc_std": round(float(np.std(list(per_fold.values()))), 6),
    }
    if len(holdout):
        h_truth = prepared.holdout.set_index("pair_id")
        h_labels = h_truth["label"].loc[holdout["pair_id"]].to_numpy()
        h_groups = pair_families(holdout["pair_id"], family_of)
        metrics["holdout"] = score_summary(h_labels, holdout["prob"].to_numpy(), h_groups)
        metrics["holdout_auc_by_kind"] = by_kind(
            h_labels, h_truth["kind"].loc[holdout["pair_id"]], holdout["prob"]
        )
    return metrics


TRAINERS = {
    "members": "kinship.train_stage:MemberTrainer",
    "frozen_members": "kinship.frozen.stage:FrozenTrainer",
}
"""params.yaml section -> the trainer of its members, imported by name: an image member's stage
never loads the frozen members' code, nor a frozen member's stage the image members'
(tests/test_dvc_deps.py derives each stage's deps this way)."""


def run_train(
    params: Params,
    name: str,
    fold: int | None = None,
    collect_only: bool = False,
    resume: bool = False,
):
    """`kinship train`: all folds then collect; one fold; or collect alone. With `resume`,
    finished folds are kept and an interrupted one continues from its last epoch."""
    check_member(params, name)
    if resume and collect_only:
        raise ValueError("--resume trains: it does not go with --collect")
    prepared = Prepared.load()
    folds = folds_of(prepared)
    if fold is not None and fold not in folds:
        raise ValueError(f"--fold {fold}: folds are {folds}")
    if not collect_only:
        todo = [fold] if fold is not None else folds
        if resume:
            todo = [k for k in todo if not _finished(name, k, params)]
        if todo:
            section = "frozen_members" if name in params.frozen_members else "members"
            module_name, class_name = TRAINERS[section].split(":")
            trainer_class = getattr(importlib.import_module(module_name), class_name)
            trainer = trainer_class(name, params, prepared)
            for k in todo:
                trainer.train_fold(k, resume=resume)
    if fold is None or collect_only:
        collect(name, params, prepared)


def check_member(params: Params, name: str) -> None:
    """A ValueError naming an unknown member, with the closest name and the valid ones."""
    if name not in params.all_members:
        from kinship.config import did_you_mean

        raise ValueError(
            f"unknown member {name!r}{did_you_mean(name, params.all_members)}; "
            f"members in params.yaml: {', '.join(params.all_members)}"
        )


def _finished(name: str, fold: int, params: Params) -> bool:
    """A complete fold trained with these params (kept by `--resume`)."""
    try:
        check_fold_complete(name, fold, params)
    except (FileNotFoundError, ValueError):
        return False
    log.info("%s fold %d: complete, kept", name, fold)
    return True

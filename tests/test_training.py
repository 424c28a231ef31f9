"""The framework-free trainer: selection logic, no peeking at validation pairs, outputs, collect."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import write_crop_spec

from kinship import paths, training
from kinship.cache import build_cache
from kinship.ensemble.inputs import load_inputs
from kinship.io import write_json
from kinship.members import registry
from kinship.members.params import MemberParams
from kinship.metrics import auc
from kinship.params import FoldParams, PairParams, parse_params
from kinship.prepare import prepare
from kinship.synth.config import SynthConfig
from kinship.synth.dataset import generate
from kinship.train_stage import MemberTrainer, Prepared, collect, run_train

SIZE = 32


class ScriptedEmbedder:
    """Inner-slice predictions whose AUC follows a script, one value per epoch."""

    def __init__(self, aucs, labels):
        self.aucs, self.labels, self.epoch = list(aucs), labels, 0

    def predict(self, rows1, rows2, tta=True):
        target = self.aucs[self.epoch]
        self.epoch += 1
        # positives score above a fraction `target` of negatives: AUC = target exactly
        n_neg = (self.labels == 0).sum()
        probs = np.where(self.labels == 1, 0.0, np.arange(len(self.labels)) / len(self.labels))
        neg_scores = np.sort(probs[self.labels == 0])
        cut = neg_scores[int(round(target * n_neg)) - 1] + 1e-9 if target > 0 else -1
        return np.where(self.labels == 1, cut, probs)


class StateMember:
    """Records state snapshots and learning rates; `state` is the epoch it was taken after."""

    device_path = False

    def __init__(self, params):
        self.params, self.lr, self.frozen, self.epoch = params, params.lr, False, 0

    def train_step(self, images, partners, labels):
        return 0.0

    def get_state(self):
        return self.epoch

    def set_state(self, state):
        self.restored = state

    def get_learning_rate(self):
        return self.lr

    def set_learning_rate(self, lr):
        self.lr = lr


def _fit_scripted(inner_aucs: list[float], **params) -> tuple[training.History, StateMember, list]:
    """`fit` on a member whose inner AUC after each epoch is scripted; returns the history, the
    member (`restored`: the epoch whose state was put back) and each epoch's record."""
    params = MemberParams(
        model="facenet", input_size=96, epochs=10, steps_per_epoch=1, lr=1.0,
        lr_factor=0.5, lr_patience=1, early_stopping_patience=2, **params,
    )  # fmt: skip
    labels = np.array([1, 0] * 20)
    embedder = ScriptedEmbedder(inner_aucs, labels)
    embedder.cache = np.zeros((4, 2, 2, 3), np.uint8)
    member = StateMember(params)
    sampler = SimpleNamespace(
        sample=lambda n: (np.zeros(n, int), np.zeros(n, int), np.zeros(n)), kin=np.zeros((3, 2))
    )
    records = []

    def on_epoch(record):
        records.append(record)
        member.epoch = record["epoch"]

    history = training.fit(
        member, embedder, sampler, (None, None, labels), np.random.default_rng(0), on_epoch
    )
    return history, member, records


def test_fit_selects_on_inner_auc_with_plateau_and_early_stopping():
    history, member, records = _fit_scripted([0.6, 0.8, 0.7, 0.75, 0.9, 0.5])
    # epoch 1 best (0.8); epochs 2 and 3 stall → lr halved twice → early stop after epoch 3
    assert [round(r["inner_auc"], 3) for r in history.epochs] == [0.6, 0.8, 0.7, 0.75]
    assert history.best_epoch == 1 and member.restored == 1
    assert [r["lr"] for r in records] == [1.0, 1.0, 1.0, 0.5]
    assert member.lr == 0.25


def test_warm_up_epochs_neither_checkpoint_nor_cut_the_rate_nor_stop():
    spike = [0.8, 0.5, 0.6, 0.7, 0.75, 0.7, 0.65, 0.5]  # a lucky epoch 0, then real progress
    history, member, _ = _fit_scripted(spike)
    assert history.best_epoch == 0 and len(history.epochs) == 3  # the spike stopped training
    history, member, records = _fit_scripted(spike, start_from_epoch=2)
    assert [round(r["inner_auc"], 3) for r in history.epochs] == spike[:7]
    assert history.best_epoch == 4 and member.restored == 4
    assert [r["lr"] for r in records] == [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5]


class PhaseMember(StateMember):
    """Records, per step, which path trained and at which learning rate."""

    def __init__(self, params):
        super().__init__(params)
        self.steps = []

    def train_step(self, images, partners, labels):
        self.steps.append(("all", self.lr))
        return 0.0

    def train_head_step(self, embeddings, partners, labels):
        self.steps.append(("head", self.lr))
        return 0.0


class PhaseEmbedder(ScriptedEmbedder):
    def __init__(self, aucs, labels):
        super().__init__(aucs, labels)
        self.cache = np.zeros((8, 2, 2, 3), np.uint8)
        self.stored = []  # whether embeddings came from the pretrained store, per call

    def embed_rows(self, rows, flipped=False):
        self.stored.append(self.pretrained_backbone)
        return np.zeros((len(rows), 3), np.float32)


def _fit_phases(aucs, **params):
    params = MemberParams(
        model="facenet", input_size=96, weights="w.pt", batch_size=8, lr=1.0, lr_factor=0.5,
        lr_patience=1, early_stopping_patience=9, **params,
    )  # fmt: skip
    labels = np.array([1, 0] * 20)
    embedder = PhaseEmbedder(aucs, labels)
    embedder.pretrained_backbone = False
    member = PhaseMember(params)
    sampler = SimpleNamespace(
        sample=lambda n: (np.arange(n), np.zeros((n, 4), int), np.zeros((n, 4))),
        kin=np.zeros((10, 2)),
    )
    rng = np.random.default_rng(0)
    history = training.fit(member, embedder, sampler, (None, None, labels), rng)
    return history, member, embedder


def test_a_frozen_phase_trains_the_head_on_stored_embeddings_then_the_whole_net():
    history, member, embedder = _fit_phases([0.6, 0.7, 0.8, 0.9], epochs=4, freeze_epochs=2,
                                            steps_per_epoch=3)  # fmt: skip
    assert [kind for kind, _ in member.steps] == ["head"] * 6 + ["all"] * 6
    assert [r["phase"] for r in history.epochs] == ["head", "head", "all", "all"]
    assert embedder.stored and all(embedder.stored)  # head steps read the pretrained store
    assert embedder.pretrained_backbone is False  # the fine-tuned best state embeds afresh


def test_warm_up_ramps_the_rate_linearly_from_the_first_backbone_step():
    _, member, _ = _fit_phases([0.6, 0.7, 0.8, 0.9], epochs=3, freeze_epochs=1,
                               steps_per_epoch=4, warmup_epochs=1.5)  # fmt: skip
    rates = [lr for kind, lr in member.steps]
    assert rates[:4] == [1.0] * 4  # the frozen phase: the head at its rate
    np.testing.assert_allclose(rates[4:], [1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6, 1, 1, 1])


def test_plateau_cuts_scale_the_rate_and_the_warm_up_alike():
    history, member, _ = _fit_phases([0.9, 0.5, 0.5, 0.5], epochs=4, steps_per_epoch=2,
                                     warmup_epochs=3)  # fmt: skip
    # epoch 1 stalls: the rate halves; the warm-up's last steps run at half their share
    ramp = np.array([1, 2, 3, 4, 5, 6]) / 6
    np.testing.assert_allclose([lr for _, lr in member.steps][:6], ramp * [1, 1, 1, 1, 0.5, 0.5])
    np.testing.assert_allclose([r["lr"] for r in history.epochs][:3], [2 / 6, 4 / 6, 0.5])


def test_auto_steps_cover_each_relationship_once_per_epoch():
    history, member, _ = _fit_phases([0.6, 0.7], epochs=2, steps_per_epoch="auto")
    # 10 relationship rows × 4 images / 8 images per step
    assert len(member.steps) == 2 * 5
    params = MemberParams(model="facenet", input_size=96, batch_size=64, steps_per_epoch="auto")
    assert training.epoch_steps(params, 2900) == 182  # ceil(2900 × 4 / 64)
    assert training.epoch_steps(dataclasses.replace(params, steps_per_epoch=7), 2900) == 7


def test_the_inner_check_fits_its_image_budget_keeps_the_balance_and_repeats():
    rng = np.random.default_rng(0)
    rows1, rows2 = rng.integers(0, 400, 600), rng.integers(400, 800, 600)
    labels = np.r_[np.ones(300), np.zeros(300)]
    everything = training.inner_check((rows1, rows2, labels), None, [0, 1])
    assert everything[0] is rows1
    r1, r2, y = training.inner_check((rows1, rows2, labels), 200, [0, 1])
    assert len(np.unique(np.r_[r1, r2])) <= 200 and len(y) >= 100
    assert abs(y.mean() - 0.5) < 0.1  # kin and non-kin alike
    again = training.inner_check((rows1, rows2, labels), 200, [0, 1])
    assert all(np.array_equal(a, b) for a, b in zip((r1, r2, y), again, strict=True))
    other = training.inner_check((rows1, rows2, labels), 200, [0, 2])
    assert not np.array_equal(r1, other[0])
    # a budget of a tenth of an epoch: 10 steps × 32 images, a forward pass a third of a step
    params = MemberParams(model="facenet", input_size=96, steps_per_epoch=10, batch_size=32)
    assert training.inner_check_images(params, 50, 0.1) == 96
    assert training.inner_check_images(params, 50, None) is None


@pytest.mark.parametrize("start", [-1, 10])
def test_start_from_epoch_must_leave_a_monitored_epoch(start):
    with pytest.raises(ValueError, match=rf"start_from_epoch must be an integer in 0..epochs-1 "
                       rf"\(epochs is 10\), got {start}"):  # fmt: skip
        MemberParams(model="facenet", input_size=96, epochs=10, start_from_epoch=start).check("m")


@pytest.fixture
def numpy_pipeline(tmp_path, monkeypatch):
    """A small synthetic dataset prepared and cached in tmp_path (the cwd), with the numpy
    member registered; returns the params."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(registry.MODELS, "numpy_test", "numpy_member:NumpyMember")
    monkeypatch.setitem(registry.LIMITS, "numpy_test", registry.ModelLimits(min_input_size=16))
    generate(paths.SYNTHETIC_DIR, SynthConfig(n_families=16, n_test_families=4, image_size=48))
    prepare(paths.SYNTHETIC_DIR, FoldParams(k=2, seed=0), PairParams())
    images = pd.read_parquet(paths.IMAGES_TABLE)
    report = build_cache(images, paths.SYNTHETIC_DIR, SIZE, paths.cache_file(SIZE), 0.0, workers=1)
    write_json(paths.CACHE_REPORTS_DIR / f"{SIZE}.json", report)
    write_crop_spec(output_size=SIZE)
    raw = {
        "cache": {"sizes": [SIZE]},
        "folds": {"k": 2},
        "train": {"inner_fraction": 0.25},
        "members": {
            "tiny": {
                "model": "numpy_test", "input_size": SIZE, "epochs": 3, "steps_per_epoch": 5,
                "batch_size": 8, "lr": 0.5, "seeds": [0, 1], "tta_flip": True,
            }
        },
    }  # fmt: skip
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))  # for stage subprocesses
    return parse_params(raw)


def test_train_writes_the_contract_tables_and_reports(numpy_pipeline):
    params = numpy_pipeline
    run_train(params, "tiny")
    prepared = Prepared.load()
    oof = pd.read_parquet(paths.OOF_DIR / "tiny.parquet")
    assert list(oof.columns) == ["pair_id", "fold", "prob", "scorable"]
    assert oof["prob"].dtype == np.float64 and oof["scorable"].all()
    assert sorted(oof["pair_id"]) == sorted(prepared.pairs["pair_id"])
    assert oof["prob"].between(0, 1).all()
    test = pd.read_parquet(paths.TEST_PRED_DIR / "tiny.parquet")
    assert list(test.columns) == ["img_pair", "prob", "scorable"]
    assert list(test["img_pair"]) == list(prepared.test["img_pair"])
    holdout = pd.read_parquet(paths.HOLDOUT_DIR / "tiny.parquet")
    assert list(holdout.columns) == ["pair_id", "fold", "prob", "scorable"] and len(holdout) == 0
    metrics = json.loads((paths.REPORTS_DIR / "members/tiny/metrics.json").read_text())
    assert set(metrics["per_fold_auc"]) == {"0", "1"}
    low, high = metrics["oof"]["auc_ci95"]
    assert low <= metrics["oof"]["auc"] <= high
    assert "seconds" not in json.dumps(metrics)  # timings live in timing.json
    timing = json.loads((paths.REPORTS_DIR / "members/tiny/timing.json").read_text())
    assert [len(f["seeds"]) for f in timing["folds"]] == [2, 2]
    for fold in (0, 1):
        for seed in (0, 1):
            config = json.loads(
                (paths.MODELS_DIR / f"tiny/fold{fold}/seed{seed}/config.json").read_text()
            )
            assert config["params"]["model"] == "numpy_test"
        assert (
            paths.REPORTS_DIR / f"curves/tiny/fold{fold}/plots/metrics/seed0/inner_auc.tsv"
        ).is_file()


def test_one_fold_at_a_time_then_collect_equals_one_process(numpy_pipeline):
    params = numpy_pipeline
    run_train(params, "tiny")
    whole = pd.read_parquet(paths.OOF_DIR / "tiny.parquet")
    with pytest.raises(ValueError, match="--fold 5: folds are"):
        run_train(params, "tiny", fold=5)
    run_train(params, "tiny", fold=1)
    run_train(params, "tiny", fold=0)
    run_train(params, "tiny", collect_only=True)
    pd.testing.assert_frame_equal(whole, pd.read_parquet(paths.OOF_DIR / "tiny.parquet"))


def test_each_member_draws_its_own_stream_and_repeats_it(numpy_pipeline):
    """Two members with one config differ (own initial weights, pairs and augmentation: their
    errors are less alike, which is what an ensemble needs); one member repeats bit for bit."""
    tiny = numpy_pipeline.members["tiny"]
    params = dataclasses.replace(numpy_pipeline, members={"tiny": tiny, "twin": tiny})
    run_train(params, "tiny")
    first = pd.read_parquet(paths.OOF_DIR / "tiny.parquet")
    run_train(params, "twin")
    twin = pd.read_parquet(paths.OOF_DIR / "twin.parquet")
    assert list(twin["pair_id"]) == list(first["pair_id"])
    assert not np.allclose(twin["prob"], first["prob"])
    run_train(params, "tiny")
    pd.testing.assert_frame_equal(first, pd.read_parquet(paths.OOF_DIR / "tiny.parquet"))


def test_collect_names_the_untrained_fold(numpy_pipeline):
    params = numpy_pipeline
    run_train(params, "tiny", fold=0)
    with pytest.raises(FileNotFoundError, match=r"fold 1 of tiny has not been trained"):
        collect("tiny", params, Prepared.load())


def test_unknown_member_suggests(numpy_pipeline):
    with pytest.raises(ValueError, match=r"unknown member 'tinny' \(did you mean 'tiny'\?\)"):
        run_train(numpy_pipeline, "tinny")


def test_selection_never_embeds_validation_holdout_or_test_images(numpy_pipeline, monkeypatch):
    params = numpy_pipeline
    phase, seen = {"now": "other"}, []
    real_fit, real_embed = training.fit, training.Embedder.embed_rows

    def spy_fit(*args, **kwargs):
        phase["now"] = "fit"
        try:
            return real_fit(*args, **kwargs)
        finally:
            phase["now"] = "other"

    def spy_embed(self, rows, flipped=False):
        if phase["now"] == "fit":
            seen.extend(int(r) for r in rows)
        return real_embed(self, rows, flipped)

    monkeypatch.setattr(training, "fit", spy_fit)
    monkeypatch.setattr(training.Embedder, "embed_rows", spy_embed)
    run_train(params, "tiny", fold=0)
    prepared = Prepared.load()
    val = prepared.pairs[prepared.pairs["fold"] == 0]
    forbidden = set(prepared.rows(val["img1"])) | set(prepared.rows(val["img2"]))
    forbidden |= set(prepared.images.loc[prepared.images["split"] == "test", "row"])
    assert seen and not forbidden & set(seen)


def test_group_batches_pair_each_image_with_kin_and_other_families(numpy_pipeline):
    prepared = Prepared.load()
    split = training.split_fold(
        prepared.images, prepared.people, prepared.relationships, 0, 0.25, 0, 2
    )
    rows_of_person = prepared.rows_of_person(set())
    sampler = training.GroupSampler(split, rows_of_person, np.random.default_rng(0))
    person_of = dict(zip(prepared.images["row"], prepared.images["person"], strict=True))
    family_of = dict(zip(prepared.people["person"], prepared.people["family"], strict=True))
    kin = {frozenset(r) for r in split.fit_relationships[["p1", "p2"]].to_numpy()}
    fitting = set(split.fit_people["person"])
    for _ in range(20):
        rows, partners, labels = sampler.sample(16)
        assert rows.shape == (16,) and partners.shape == labels.shape == (16, 4)
        assert {person_of[r] for r in rows} <= fitting  # never inner, validation or test
        assert (labels.sum(axis=1) == 2).all()  # half kin, half non-kin, for every image
        for i, j in np.ndindex(partners.shape):
            a, b = person_of[rows[i]], person_of[rows[partners[i, j]]]
            if labels[i, j] == 1:
                assert frozenset((a, b)) in kin
            else:
                assert family_of[a] != family_of[b]
    with pytest.raises(ValueError, match="batch_size must be a multiple of 4 and at least 8"):
        sampler.sample(10)


def test_group_batches_need_two_families_with_relationships(numpy_pipeline):
    prepared = Prepared.load()
    split = training.split_fold(
        prepared.images, prepared.people, prepared.relationships, 0, 0.25, 0, 2
    )
    one_family = split.fit_people["family"].iloc[0]
    people = set(split.fit_people.loc[split.fit_people["family"] == one_family, "person"])
    rels = split.fit_relationships
    split.fit_relationships = rels[rels["p1"].isin(people)]
    with pytest.raises(ValueError, match="usable relationships in 1 family"):
        training.GroupSampler(split, prepared.rows_of_person(set()), np.random.default_rng(0))


def test_collect_joins_fold_predictions_by_key(numpy_pipeline):
    """Folds trained elsewhere may write their rows in any order: collect joins them on the key
    and refuses a fold whose keys differ from the prepared pairs, naming the file and the keys."""
    params = numpy_pipeline
    run_train(params, "tiny")
    outputs = {d: pd.read_parquet(d / "tiny.parquet") for d in (paths.OOF_DIR, paths.TEST_PRED_DIR)}
    for key in ("oof.parquet", "test.parquet"):
        path = paths.MODELS_DIR / "tiny/fold1" / key
        table = pd.read_parquet(path)
        table.iloc[::-1].to_parquet(path, index=False)
    collect("tiny", params, Prepared.load())
    for directory, table in outputs.items():
        pd.testing.assert_frame_equal(table, pd.read_parquet(directory / "tiny.parquet"))

    path = paths.MODELS_DIR / "tiny/fold1/test.parquet"
    table = pd.read_parquet(path)
    table.iloc[1:].to_parquet(path, index=False)
    missing = table["img_pair"].iloc[0]
    with pytest.raises(ValueError, match=rf"{path}: .* 1 missing \(e\.g\. \['{missing}'\]\)"):
        collect("tiny", params, Prepared.load())
    extra = pd.DataFrame({"img_pair": ["nobody.jpg-noone.jpg"], "prob": [0.5], "scorable": True})
    pd.concat([table, extra]).to_parquet(path, index=False)
    with pytest.raises(ValueError, match=r"0 missing .* 1 unknown \(e\.g\. \['nobody"):
        collect("tiny", params, Prepared.load())
    path = paths.MODELS_DIR / "tiny/fold0/oof.parquet"
    table = pd.read_parquet(path)
    pd.concat([table, table.iloc[:1]]).to_parquet(path, index=False)
    with pytest.raises(ValueError, match=rf"{path}: .* 1 duplicated"):
        collect("tiny", params, Prepared.load())


# --- interruption and resume ---------------------------------------------------------------------


class Interrupted(Exception):
    """Stands for a kill between two epochs."""


def _interrupt_after(monkeypatch, seed: int, epochs: int) -> None:
    """Make `FitCheckpoints.save` stop the run once `seed` has saved `epochs` epochs."""
    real_save = training.FitCheckpoints.save

    def save(self, member, loop, rng):
        real_save(self, member, loop, rng)
        if self.directory.name == f"seed{seed}.train" and loop.epoch == epochs:
            raise Interrupted

    monkeypatch.setattr(training.FitCheckpoints, "save", save)


def _fold_outputs(fold: int) -> dict[str, object]:
    directory = paths.MODELS_DIR / f"tiny/fold{fold}"
    outputs = {key: pd.read_parquet(directory / key) for key in ("oof.parquet", "test.parquet")}
    for seed in (0, 1):
        with np.load(directory / f"seed{seed}/weights.npz") as weights:
            outputs[f"seed{seed}"] = {k: weights[k] for k in weights.files}
    return outputs


def test_an_interrupted_fold_resumes_to_the_uninterrupted_result(numpy_pipeline, monkeypatch):
    tiny = dataclasses.replace(
        numpy_pipeline.members["tiny"], epochs=6, lr_patience=1, early_stopping_patience=10
    )
    params = dataclasses.replace(numpy_pipeline, members={"tiny": tiny})
    run_train(params, "tiny", fold=0)
    whole = _fold_outputs(0)
    shutil.rmtree(paths.MODELS_DIR / "tiny")

    # 1. stopped after epoch 3 of the second seed: nothing collect would take for a finished fold
    with monkeypatch.context() as patch:
        _interrupt_after(patch, seed=1, epochs=3)
        with pytest.raises(Interrupted):
            run_train(params, "tiny", fold=0)
    assert not (paths.MODELS_DIR / "tiny/fold0").exists()
    with pytest.raises(FileNotFoundError, match=r"fold 0 of tiny .* --fold 0 --resume"):
        collect("tiny", params, Prepared.load())

    # 2. resumed: seed 0 kept, seed 1 trains its last three epochs only
    trained = []
    real_log = MemberTrainer._log_epoch
    monkeypatch.setattr(
        MemberTrainer,
        "_log_epoch",
        lambda self, live, fold, seed, r: (
            trained.append((seed, r["epoch"])) or real_log(self, live, fold, seed, r)
        ),
    )
    run_train(params, "tiny", fold=0, resume=True)
    assert trained == [(1, 3), (1, 4), (1, 5)]
    resumed = _fold_outputs(0)
    for key in ("oof.parquet", "test.parquet"):
        pd.testing.assert_frame_equal(whole[key], resumed[key])  # identical, not just close
    for seed in ("seed0", "seed1"):
        for name, array in whole[seed].items():
            np.testing.assert_array_equal(array, resumed[seed][name])
    assert not (paths.MODELS_DIR / "tiny/fold0.partial").exists()
    timing = json.loads((paths.MODELS_DIR / "tiny/fold0/timing.json").read_text())
    assert [s["epochs"] for s in timing["seeds"]] == [6, 6]


def test_resume_keeps_finished_folds_and_a_fresh_run_discards_partial_work(
    numpy_pipeline, monkeypatch
):
    params = numpy_pipeline
    with monkeypatch.context() as patch:
        _interrupt_after(patch, seed=0, epochs=1)
        with pytest.raises(Interrupted):
            run_train(params, "tiny", fold=1)
    assert (paths.MODELS_DIR / "tiny/fold1.partial/progress/seed0.train/last").is_dir()
    run_train(params, "tiny", fold=0)
    marker = paths.MODELS_DIR / "tiny/fold0/complete.json"
    stamp = marker.stat().st_mtime_ns
    run_train(params, "tiny", resume=True)  # fold 0 kept, fold 1 resumed, then collected
    assert marker.stat().st_mtime_ns == stamp
    assert (paths.OOF_DIR / "tiny.parquet").is_file()
    with monkeypatch.context() as patch:
        _interrupt_after(patch, seed=0, epochs=1)
        with pytest.raises(Interrupted):
            run_train(params, "tiny", fold=1)
    run_train(params, "tiny", fold=1)  # without --resume: from scratch, partial work discarded
    assert not (paths.MODELS_DIR / "tiny/fold1.partial").exists()


def test_collect_refuses_a_fold_trained_with_other_params(numpy_pipeline):
    params = numpy_pipeline
    run_train(params, "tiny")
    tiny = dataclasses.replace(params.members["tiny"], lr=0.25)
    changed = dataclasses.replace(params, members={"tiny": tiny})
    with pytest.raises(ValueError, match=r"fold0/complete.json: fold 0 of tiny was trained with "
                       r"other params \(lr differ"):  # fmt: skip
        collect("tiny", changed, Prepared.load())


RUN_STAGE = """
import sys
sys.path.insert(0, sys.argv[1])
from kinship.members import registry
from kinship.metrics import auc
registry.MODELS["numpy_test"] = "numpy_member:NumpyMember"
registry.LIMITS["numpy_test"] = registry.ModelLimits(min_input_size=16)
from kinship.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _stage(*args: str) -> list[str]:
    return [sys.executable, "-c", RUN_STAGE, str(Path(__file__).parent), *args]


def test_a_killed_training_process_leaves_nothing_taken_for_complete(numpy_pipeline, tmp_path):
    raw = yaml.safe_load((tmp_path / "params.yaml").read_text())
    raw["members"]["tiny"].update(epochs=100_000, early_stopping_patience=100_000, seeds=[0])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(_stage("train", "--member", "tiny"), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    loop = paths.MODELS_DIR / "tiny/fold0.partial/progress/seed0.train/last/loop.json"
    try:
        deadline = time.monotonic() + 120
        while not (loop.is_file() and json.loads(loop.read_text())["loop"]["epoch"] >= 3):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "training never reached epoch 3"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (paths.MODELS_DIR / "tiny/fold0").exists()
    for directory in (paths.OOF_DIR, paths.HOLDOUT_DIR, paths.TEST_PRED_DIR):
        assert not (directory / "tiny.parquet").exists()
    assert not (paths.REPORTS_DIR / "members/tiny/metrics.json").exists()
    refused = subprocess.run(_stage("train", "--member", "tiny", "--collect"), env=env,
                             capture_output=True, text=True)  # fmt: skip
    assert refused.returncode == 2
    assert "fold 0 of tiny has not been trained" in refused.stderr
    assert "--member tiny --fold 0 --resume" in refused.stderr

    # the interrupted fold resumes from its last epoch (here to a nearer end) and then collects
    saved_epoch = json.loads(loop.read_text())["loop"]["epoch"]
    raw["members"]["tiny"].update(epochs=saved_epoch + 2)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    resumed = subprocess.run(_stage("train", "--member", "tiny", "--resume"), env=env,
                             capture_output=True, text=True)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming after epoch {saved_epoch - 1}" in resumed.stderr
    assert (paths.OOF_DIR / "tiny.parquet").is_file()
    timing = json.loads((paths.MODELS_DIR / "tiny/fold0/timing.json").read_text())
    assert timing["seeds"][0]["epochs"] == saved_epoch + 2


# --- unreadable images ----------------------------------------------------------------------------


def test_pairs_with_an_unreadable_image_are_neither_scored_nor_fitted_but_counted(
    numpy_pipeline, monkeypatch
):
    """A corrupt validation image and a corrupt test image: their pairs are never scored on the
    cache's black rows; OOF pairs are flagged and left out of the metrics and of the ensemble,
    test pairs stay in the table with the uninformed base rate; every count is reported."""
    params = numpy_pipeline
    prepared = Prepared.load()
    val_image = prepared.pairs.loc[prepared.pairs["fold"] == 0, "img1"].iloc[0]
    test_image = prepared.test["img1"].iloc[0]
    images = prepared.images.set_index("image")
    for image in (val_image, test_image):
        (paths.SYNTHETIC_DIR / images.at[image, "split"] / image).write_bytes(b"not a jpeg")
    report = build_cache(
        prepared.images, paths.SYNTHETIC_DIR, SIZE, paths.cache_file(SIZE), 0.1, workers=1
    )
    write_json(paths.CACHE_REPORTS_DIR / f"{SIZE}.json", report)
    bad = {images.at[val_image, "row"], images.at[test_image, "row"]}
    assert {b["row"] for b in report["bad"]} == bad

    embedded = []
    real_embed = training.Embedder.embed_rows
    monkeypatch.setattr(
        training.Embedder,
        "embed_rows",
        lambda self, rows, flipped=False: embedded.extend(rows) or real_embed(self, rows, flipped),
    )
    run_train(params, "tiny")
    assert not bad & set(embedded)  # never embedded, in training, selection or prediction

    def uses(table, image):
        return ((table["img1"] == image) | (table["img2"] == image)).to_numpy()

    oof = pd.read_parquet(paths.OOF_DIR / "tiny.parquet")
    truth = prepared.pairs.set_index("pair_id").loc[oof["pair_id"]]
    unscorable = uses(truth, val_image)
    assert unscorable.sum() >= 1 and (oof["scorable"].to_numpy() == ~unscorable).all()
    base_rate = truth["label"][~unscorable].mean()
    assert np.allclose(oof["prob"][unscorable], base_rate)
    test = pd.read_parquet(paths.TEST_PRED_DIR / "tiny.parquet")
    assert list(test["img_pair"]) == list(prepared.test["img_pair"])  # every test row stays
    test_unscorable = uses(prepared.test, test_image)
    assert (test["scorable"].to_numpy() == ~test_unscorable).all()
    assert np.allclose(test["prob"][test_unscorable], base_rate)
    metrics = json.loads((paths.REPORTS_DIR / "members/tiny/metrics.json").read_text())
    assert metrics["unscorable_pairs"] == {
        "oof": int(unscorable.sum()), "holdout": 0, "test": int(test_unscorable.sum()),
    }  # fmt: skip
    assert metrics["oof"]["pairs"] == len(oof) - unscorable.sum()
    scorable = oof[oof["scorable"]]
    labels = prepared.pairs.set_index("pair_id")["label"].loc[scorable["pair_id"]]
    assert metrics["oof"]["auc"] == pytest.approx(auc(labels, scorable["prob"]), abs=1e-6)

    inputs = load_inputs(["tiny"])
    assert len(inputs.pairs) == len(oof) - unscorable.sum()
    assert not set(inputs.pairs["pair_id"]) & set(oof.loc[~oof["scorable"], "pair_id"])
    assert inputs.test.shape == (len(test), 1)
    assert inputs.unscorable == {
        "oof": int(unscorable.sum()), "holdout": 0, "test": int(test_unscorable.sum()),
    }  # fmt: skip


def test_the_report_says_how_many_pairs_were_left_out():
    from kinship.report.sections import unscorable_note

    member = SimpleNamespace(unscorable={"oof": 3, "holdout": 0, "test": 2})
    clean = SimpleNamespace(unscorable={"oof": 0, "holdout": 0, "test": 0})
    inputs = SimpleNamespace(
        members={"tiny": member, "other": clean},
        ensemble={"unscorable_pairs": {"oof": 4, "holdout": 1, "test": 2}},
    )
    note = unscorable_note(inputs)
    assert "tiny 3 validation, 0 holdout, 2 test; ensemble 4 validation, 1 holdout, 2 test" in note
    assert "other" not in note
    assert unscorable_note(SimpleNamespace(members={"other": clean}, ensemble={})) == ""

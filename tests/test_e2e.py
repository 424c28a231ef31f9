"""End-to-end: `dvc repro` of the tiny CI pipeline, and what reruns when params change."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import run

from kinship.params import load_params

pytestmark = pytest.mark.e2e


def _rerun_stages(work) -> str:
    return run(["dvc", "status"], work).stdout


def test_repro_writes_every_output(ci_pipeline):
    work = ci_pipeline
    params = load_params(work / "params.yaml")
    root = work / params.data.root
    assert (root / "train_relationships.csv").is_file() and (root / "test_labels.csv").is_file()
    images = pd.read_parquet(work / "data/prepared/images.parquet")
    for name in ("pairs", "holdout_pairs", "test_pairs", "people", "families", "relationships"):
        assert (work / f"data/prepared/{name}.parquet").is_file()
    pairs = pd.read_parquet(work / "data/prepared/pairs.parquet")
    assert sorted(pairs["fold"].unique()) == list(range(params.folds.k))
    for size in params.cache.sizes:
        cache = np.load(work / f"data/cache/{size}.npy", mmap_mode="r")
        assert cache.shape == (len(images), size, size, 3)
        assert cache[len(images) // 2].any()
        report = json.loads((work / f"reports/cache/{size}.json").read_text())
        assert report["bad_images"] == 0
    summary = json.loads((work / "reports/prepare/summary.json").read_text())
    assert summary["train_images"] == (images["split"] == "train").sum()


def test_second_repro_runs_nothing(ci_pipeline):
    out = run(["dvc", "repro"], ci_pipeline).stdout
    assert "Running stage" not in out
    assert "up to date" in _rerun_stages(ci_pipeline)


def test_metrics_show_lists_prepare_summary(ci_pipeline):
    out = run(["dvc", "metrics", "show"], ci_pipeline).stdout
    assert "reports/prepare/summary.json" in out and "usable_relationships" in out


def _edit_params(work, edit):
    path = work / "params.yaml"
    raw = yaml.safe_load(path.read_text())
    edit(raw)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


def _stages_in_status(work) -> set[str]:
    """Names of the stages `dvc status` reports as changed."""
    return {
        line.strip().rstrip(":")
        for line in _rerun_stages(work).splitlines()
        if line.endswith(":") and not line.startswith("\t")
    }


def test_one_member_params_rerun_only_that_member(ci_pipeline):
    work = ci_pipeline
    try:
        _edit_params(work, lambda raw: raw["members"]["siamese_cnn"].update(lr=0.0123))
        assert _stages_in_status(work) == {"train@siamese_cnn"}
    finally:
        run(["git", "checkout", "params.yaml"], work)


def test_frozen_member_params_rerun_only_that_member(ci_pipeline):
    work = ci_pipeline
    try:
        _edit_params(work, lambda raw: raw["frozen_members"]["dlib"].update(c=0.5))
        assert _stages_in_status(work) == {"train_frozen@dlib"}
        _edit_params(work, lambda raw: raw["embed"].update(jitter=1))
        assert _stages_in_status(work) == {"train_frozen@dlib", "embed"}
    finally:
        run(["git", "checkout", "params.yaml"], work)


def test_every_member_writes_oof_test_and_metrics(ci_pipeline):
    work = ci_pipeline
    params = load_params(work / "params.yaml")
    pairs = pd.read_parquet(work / "data/prepared/pairs.parquet")
    test_pairs = pd.read_parquet(work / "data/prepared/test_pairs.parquet")
    shown = run(["dvc", "metrics", "show"], work).stdout
    for name in params.all_members:
        oof = pd.read_parquet(work / f"data/oof/{name}.parquet")
        assert sorted(oof["pair_id"]) == sorted(pairs["pair_id"])
        assert oof["prob"].between(0, 1).all()
        test = pd.read_parquet(work / f"data/test/{name}.parquet")
        assert list(test["img_pair"]) == list(test_pairs["img_pair"])
        metrics = json.loads((work / f"reports/members/{name}/metrics.json").read_text())
        assert 0 <= metrics["oof"]["auc"] <= 1
        assert f"reports/members/{name}/metrics.json" in shown
        for fold in range(params.folds.k):
            assert (work / f"models/{name}/fold{fold}/seed0/config.json").is_file()


def test_fold_seed_reruns_prepare_but_not_the_cache(ci_pipeline):
    work = ci_pipeline
    try:
        _edit_params(work, lambda raw: raw["folds"].update(seed=raw["folds"]["seed"] + 1))
        assert "prepare" in _stages_in_status(work)
        out = run(["dvc", "repro", "prepare"], work).stdout
        assert "Running stage 'prepare'" in out
        changed = _stages_in_status(work)
        # new folds: every member must retrain; the images table is byte-identical: no cache reruns
        params = load_params(work / "params.yaml")
        assert {s for s in changed if s.startswith("train")} == {
            *(f"train@{m}" for m in params.members),
            *(f"train_frozen@{m}" for m in params.frozen_members),
        }
        assert not {s for s in changed if s.startswith(("cache@", "synthesize", "embed"))}
    finally:
        run(["git", "checkout", "params.yaml"], work)
        run(["dvc", "repro", "prepare"], work)
    assert _stages_in_status(work) == set()  # prepare is deterministic: back to the locked state


def test_folds_trained_one_by_one_then_collected_and_committed(ci_pipeline):
    work = ci_pipeline
    for fold in range(load_params(work / "params.yaml").folds.k):
        run(["kinship", "train", "--member", "siamese_cnn", "--fold", str(fold)], work)
    run(["kinship", "train", "--member", "siamese_cnn", "--collect"], work)
    run(["dvc", "commit", "--force", "train@siamese_cnn"], work)
    # the member's stage is committed; only what consumes its new predictions is stale
    assert _stages_in_status(work) <= {"ensemble", "report"}
    run(["dvc", "repro"], work)
    assert _stages_in_status(work) == set()


def test_ensemble_params_rerun_only_ensemble_and_report(ci_pipeline):
    work = ci_pipeline
    downstream = {"ensemble", "report"} & set(
        run(["dvc", "stage", "list", "--name-only"], work).stdout.split()
    )
    assert "ensemble" in downstream
    try:
        member = next(iter(load_params(work / "params.yaml").members))
        _edit_params(work, lambda raw: raw["ensemble"]["weights"].update({member: 2.0}))
        # dvc status lists the stages whose own deps changed: the ensemble alone
        assert _stages_in_status(work) == {"ensemble"}
        out = run(["dvc", "repro"], work).stdout
        ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
        assert "ensemble" in ran and ran <= downstream  # the report follows when its inputs change
    finally:
        run(["git", "checkout", "params.yaml"], work)
        run(["dvc", "repro"], work)
    assert (work / "submission.csv").is_file()


@pytest.mark.slow
def test_fresh_clone_repro_touches_only_the_runs_record(tmp_path):
    """The README's main command on a fresh clone of HEAD: `dvc repro` on the committed params
    leaves nothing untracked, and modifies at most the committed record of a run — dvc.lock (its
    hashes of timing-bearing outputs change with every run) and, on another CPU model, the metrics
    files. About 8 minutes on 2 cores: the whole demo pipeline."""
    from conftest import REPO

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(REPO), str(clone)], tmp_path)
    run(["dvc", "repro"], clone, timeout=3600)
    record = ("dvc.lock", "reports/prepare/summary.json", "reports/embed/dlib.json")
    for line in run(["git", "status", "--porcelain"], clone).stdout.splitlines():
        status, path = line[:2], line[3:]
        # modified, staged or not (.dvc/config has core.autostage: DVC stages dvc.lock itself)
        assert status in (" M", "M ", "MM"), f"after dvc repro: {line!r} (only tracked files)"
        assert path in record or path.endswith("metrics.json"), f"after dvc repro: {line!r}"
    assert "up to date" in run(["dvc", "status"], clone).stdout

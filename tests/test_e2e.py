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


def test_member_params_do_not_touch_prepare_or_cache(ci_pipeline):
    work = ci_pipeline
    try:

        def edit(raw):
            member = next(iter(raw["members"].values()))
            others = [s for s in raw["cache"]["sizes"] if s != member["input_size"]]
            member["input_size"] = others[0] if others else member["input_size"]

        _edit_params(work, edit)
        status = _rerun_stages(work)
        assert "prepare" not in status and "cache@" not in status and "synthesize" not in status
    finally:
        run(["git", "checkout", "params.yaml"], work)


def test_fold_seed_reruns_prepare_but_not_the_cache(ci_pipeline):
    work = ci_pipeline
    try:
        _edit_params(work, lambda raw: raw["folds"].update(seed=raw["folds"]["seed"] + 1))
        assert "prepare" in _rerun_stages(work)
        out = run(["dvc", "repro"], work).stdout
        assert "Running stage 'prepare'" in out
        # the images table is byte-identical, so no cache stage reruns
        assert "Running stage 'cache@" not in out and "Running stage 'synthesize'" not in out
    finally:
        run(["git", "checkout", "params.yaml"], work)
        run(["dvc", "repro"], work)

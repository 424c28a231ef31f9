"""The GPU profile's schedule, run on the CPU through the real train stage: profiles/fiw-gpu.yaml's
FaceNet settings (a published-format weight file, a frozen phase, backbone_lr, warm-up, auto
steps, device augmentation, the inner check's budget) at a small input size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import write_crop_spec

from kinship import paths
from kinship.cache import build_cache
from kinship.io import write_json
from kinship.params import FoldParams, PairParams, parse_params
from kinship.prepare import prepare
from kinship.synth.config import SynthConfig
from kinship.synth.dataset import generate
from kinship.train_stage import run_train

REPO = Path(__file__).resolve().parents[1]
SIZE = 80


def facenet_weight_file(path: Path) -> None:
    """A state dict written by facenet-pytorch itself under the published file name."""
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    model = InceptionResnetV1(classify=True, num_classes=8631).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)


@pytest.fixture
def gpu_recipe(tmp_path, monkeypatch):
    """A small prepared dataset and the GPU profile's facenet member, shrunk to run on 2 cores."""
    monkeypatch.chdir(tmp_path)
    generate(paths.SYNTHETIC_DIR, SynthConfig(n_families=16, n_test_families=4, image_size=SIZE))
    prepare(paths.SYNTHETIC_DIR, FoldParams(k=2, seed=0), PairParams())
    images = pd.read_parquet(paths.IMAGES_TABLE)
    report = build_cache(images, paths.SYNTHETIC_DIR, SIZE, paths.cache_file(SIZE), 0.0, workers=1)
    write_json(paths.CACHE_REPORTS_DIR / f"{SIZE}.json", report)
    write_crop_spec(output_size=SIZE)
    profile = yaml.safe_load((REPO / "profiles" / "fiw-gpu.yaml").read_text())
    facenet = profile["members"]["facenet"]
    facenet_weight_file(tmp_path / facenet["weights"])
    small = {"input_size": SIZE, "batch_size": 8, "epochs": 3, "start_from_epoch": 0,
             "seeds": [0]}  # fmt: skip
    raw = {
        "cache": {"sizes": [SIZE]},
        "folds": {"k": 2},
        "train": {**profile["train"], "inner_fraction": 0.25},
        "members": {"facenet": {"model": "facenet", **facenet, **small}},
    }
    return parse_params(raw), facenet


def test_the_gpu_schedule_runs_its_phases_on_a_real_member(gpu_recipe, caplog, monkeypatch):
    from kinship.members.facenet import FacenetMember

    params, recipe = gpu_recipe
    assert recipe["freeze_epochs"] == 2 and recipe["backbone_lr"] < recipe["lr"]
    assert recipe["steps_per_epoch"] == "auto" and recipe["warmup_epochs"] > 0
    calls = {"head": 0, "device": 0}
    for method, kind in (("train_head_step", "head"), ("train_uploaded", "device")):
        original = getattr(FacenetMember, method)

        def counted(self, *args, _original=original, _kind=kind):
            calls[_kind] += 1
            return _original(self, *args)

        monkeypatch.setattr(FacenetMember, method, counted)
    caplog.set_level("INFO")
    run_train(params, "facenet", fold=0)
    # two frozen epochs of head steps, then one of the whole net on the device data path
    assert calls["head"] > 0 and calls["head"] == 2 * calls["device"]
    # the inner check's budget was applied and logged
    assert any("inner check on" in r.getMessage() for r in caplog.records)
    curves = paths.REPORTS_DIR / "curves/facenet/fold0/plots/metrics/seed0"
    rates = pd.read_csv(curves / "lr.tsv", sep="\t")["lr"].to_numpy()
    losses = pd.read_csv(curves / "loss.tsv", sep="\t")["loss"].to_numpy()
    assert len(rates) == 3 and np.isfinite(losses).all()
    # the frozen phase at the head's rate, then a warm-up over the unfrozen epoch's steps
    assert rates[0] == rates[1] == pytest.approx(recipe["lr"])
    assert rates[2] == pytest.approx(recipe["lr"] / recipe["warmup_epochs"])
    timing = json.loads((paths.MODELS_DIR / "facenet/fold0/timing.json").read_text())
    assert timing["seeds"][0]["epochs"] == 3
    oof = pd.read_parquet(paths.MODELS_DIR / "facenet/fold0/oof.parquet")
    assert oof["prob"].between(0, 1).all()

"""Any FIW-format dataset: `dvc repro` on a shape unlike Kaggle's, end to end.

Hundreds of two-person families, one photo per person, one relationship per family, every
photo 40 px (smaller than the 64 px members' input) and every other one greyscale; the data
folder lives outside the repository. The faces are the project's synthetic ones (nothing here
is real data).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import copy_project, run
from PIL import Image

from kinship.ensemble.submission import read_sample
from kinship.synth.config import SynthConfig
from kinship.synth.dataset import generate

pytestmark = pytest.mark.e2e

N_FAMILIES = 240


def two_person_fiw(root):
    """A two-person-family dataset of 40 px photos, every other one greyscale."""
    generate(
        root,
        SynthConfig(
            n_families=N_FAMILIES, n_test_families=20, image_size=40, family_size=[2, 2],
            photos_per_person=[1, 1], missing_folder_rate=0.0, reverse_duplicate_rate=0.0,
        ),
        workers=1,
    )  # fmt: skip
    photos = sorted([*root.glob("train/*/*/*.jpg"), *root.glob("test/*.jpg")])
    for path in photos[::2]:
        with Image.open(path) as image:
            grey = image.convert("L")
        grey.save(path, format="JPEG", quality=90)
    return root


@pytest.fixture(scope="module")
def two_person_pipeline(tmp_path_factory):
    root = two_person_fiw(tmp_path_factory.mktemp("fiw") / "two_person")
    work = copy_project(tmp_path_factory.mktemp("pipeline"))
    dropped = ["vggface_resnet50", "vggface_senet50", "vggface_vgg16", "vggface_resnet50_wide"]
    profile = {
        "data": {"root": str(root)},
        "folds": {"k": 3},
        "cache": {"sizes": [64, 75]},
        "members": {
            **dict.fromkeys(dropped),
            "siamese_cnn": {"input_size": 64, "width": 0.25, "epochs": 2, "steps_per_epoch": 8,
                            "batch_size": 16},
            "facenet": {"input_size": 75, "epochs": 1, "steps_per_epoch": 2, "batch_size": 8,
                        "start_from_epoch": 0},
        },
        "frozen_members": {
            "dlib": {"model": "dlib"},
            "dlib_landmarks": {"model": "dlib_landmarks"},
        },
    }  # fmt: skip
    (work / "two_person.yaml").write_text(yaml.safe_dump(profile))
    run(["kinship", "profile", "two_person.yaml"], work)
    run(["git", "commit", "-qam", "two-person profile"], work)
    run(["dvc", "repro"], work)
    return work, root


def test_pipeline_runs_on_two_person_families_with_tiny_grey_photos(two_person_pipeline):
    work, root = two_person_pipeline
    summary = json.loads((work / "reports/prepare/summary.json").read_text())
    assert summary["families"] == N_FAMILIES and summary["train_images"] == 2 * N_FAMILIES
    assert summary["usable_relationships"] == N_FAMILIES
    images = pd.read_parquet(work / "data/prepared/images.parquet")
    cache = np.load(work / "data/cache/64.npy", mmap_mode="r")
    grey = [(row[..., 0] == row[..., 1]).all() and (row[..., 1] == row[..., 2]).all()
            for row in cache[: 2 * N_FAMILIES]]  # fmt: skip
    assert 0.3 < np.mean(grey) < 0.7  # grey photos upscaled to 64 px become RGB rows
    embed = json.loads((work / "reports/embed/dlib.json").read_text())
    assert embed["bad_images"] == 0 and embed["images"] == len(images)
    pairs = pd.read_parquet(work / "data/prepared/pairs.parquet")
    assert (pairs.groupby("fold")["label"].sum() > 0).all()  # every fold has kin pairs
    ensemble = json.loads((work / "reports/ensemble/metrics.json").read_text())
    assert ensemble["members"] == ["siamese_cnn", "facenet", "dlib", "dlib_landmarks"]
    for name in ensemble["members"]:
        auc = ensemble["oof"]["members"][name]["auc"]
        assert 0.0 <= auc <= 1.0, name
    # the familial signal survives 40 px and grey photos: the ensemble finds it out of fold
    assert ensemble["oof"]["ensemble"]["auc"] > 0.53
    submission = pd.read_csv(work / "submission.csv")
    sample = read_sample(root)
    assert list(submission["img_pair"]) == list(sample["img_pair"])
    assert submission["is_related"].between(0, 1).all()
    assert (work / "reports/index.html").is_file()

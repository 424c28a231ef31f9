"""`kinship predict` / `kinship evaluate`: user photos, face crops like the training images, and the
trained pipeline applied exactly as to the test pairs.

Photos with faces come from scikit-image (licence-clean): astronaut() and camera() have one face
each, two astronauts side by side have two, coffee() and chelsea() have none. No dataset image is
ever committed.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import pipeline_env
from PIL import Image
from skimage import data as skdata

from kinship.evaluate import read_pairs
from kinship.faces import CropSpec, Detection, FaceDetector, measure
from kinship.photos import NoFaceError, PhotoError, PhotoLimits, open_photo, read_photo


def encode(image: np.ndarray, fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def astronaut() -> np.ndarray:
    return skdata.astronaut()


def camera() -> np.ndarray:
    return np.stack([skdata.camera()] * 3, axis=-1)


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector(min_confidence=0.9)


# -- photos: limits and errors ----------------------------------------------------------------
def test_photo_errors_name_the_photo_and_the_problem():
    with pytest.raises(PhotoError, match=r"^up\.jpg: empty file"):
        open_photo(b"", "up.jpg")
    with pytest.raises(PhotoError, match=r"^a: not an image"):
        open_photo(b"%PDF-1.4 not a picture", "a")
    with pytest.raises(PhotoError, match=r"over the limit of 1 MiB"):
        open_photo(b"\xff" * (2 * 2**20), "big", PhotoLimits(max_bytes=2**20))
    jpeg = encode(astronaut())
    with pytest.raises(PhotoError, match=r"^cut: corrupt or truncated"):
        read_photo(jpeg[: len(jpeg) // 3], "cut")


def test_decompression_bomb_is_refused_before_decoding():
    bomb = encode(np.zeros((6000, 8000, 3), np.uint8), "PNG")  # 48 Mpx in a small file
    assert len(bomb) < 1_000_000
    with pytest.raises(PhotoError, match=r"6000 pixels is over the limit of 40,000,000"):
        open_photo(bomb, "bomb.png")
    with pytest.raises(PhotoError, match="over the limit of 1,000 pixels"):
        read_photo(encode(astronaut()), "small limit", PhotoLimits(max_pixels=1000))


def test_read_photo_turns_phone_photos_upright():
    image = astronaut()[:, :300]  # 512 × 300: portrait
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(np.rot90(image))).save(buffer, "JPEG", exif=exif)
    upright = read_photo(buffer.getvalue(), "phone.jpg")
    assert upright.shape == (512, 300, 3)


# -- faces: the detector and the crop spec ------------------------------------------------------
def test_detector_counts_the_faces_of_the_test_photos(detector):
    assert len(detector.detect(astronaut())) == 1
    assert len(detector.detect(camera())) == 1
    two = detector.detect(np.hstack([astronaut(), astronaut()[:, ::-1]]))
    assert len(two) == 2 and two[0].area >= two[1].area
    assert detector.detect(skdata.coffee()) == []
    assert detector.detect(skdata.chelsea()) == []
    assert detector.detect(np.zeros((1, 10000, 3), np.uint8)) == []  # too thin for MTCNN's net


def training_like_crops(photo, face: Detection, scale: float, dx: float, dy: float, sizes):
    """Square crops framing `face` as a dataset would: `scale` box sides wide, centred (dx, dy)
    box sides off the box's centre, at several sizes."""
    spec = CropSpec("mtcnn", 0.9, scale, dx, dy, 0, 0, 0, (scale, scale))
    return [spec.crop(photo, face, size) for size in sizes]


def test_crop_spec_measures_how_training_images_frame_a_face(detector):
    """Crops made at a known framing are measured back, and the spec then cuts the same window
    out of the whole photo: the framing is measured, not assumed."""
    photos = [astronaut(), camera(), np.ascontiguousarray(astronaut()[:, ::-1])]
    faces = [detector.detect(p)[0] for p in photos]
    crops = [
        crop
        for photo, face in zip(photos, faces, strict=True)
        for crop in training_like_crops(photo, face, 1.8, 0.05, -0.1, [96, 120, 150, 180])
    ]
    spec = measure(crops, detector)
    assert spec.detected == len(crops) == 12
    assert spec.scale == pytest.approx(1.8, rel=0.08)
    assert spec.offset_x == pytest.approx(0.05, abs=0.05)
    assert spec.offset_y == pytest.approx(-0.1, abs=0.05)
    assert spec.output_size == 135  # the median side
    expected = training_like_crops(photos[0], faces[0], 1.8, 0.05, -0.1, [96])[0]
    got = spec.crop(photos[0], faces[0], 96).astype(float)
    assert np.corrcoef(got.ravel(), expected.astype(float).ravel())[0, 1] > 0.9


def test_crop_spec_needs_faces_to_measure(detector):
    with pytest.raises(ValueError, match=r"found a face in 0 of 3 sampled training images"):
        measure([skdata.coffee(), skdata.chelsea(), skdata.coffee()], detector)


def test_crop_outside_the_photo_is_black():
    spec = CropSpec("mtcnn", 0.9, 4.0, 0.0, 0.0, 64, 1, 1, (4.0, 4.0))
    photo = np.full((100, 100, 3), 200, np.uint8)
    crop = spec.crop(photo, Detection((0, 0, 20, 20), 0.99))
    assert crop.shape == (64, 64, 3)
    assert crop[0, 0].tolist() == [0, 0, 0] and crop[-1, -1].tolist() == [200, 200, 200]


def test_crop_spec_file_is_checked():
    with pytest.raises(ValueError, match=r"crop\.json: not a crop spec"):
        CropSpec.from_json({"detector": "mtcnn"}, "models/x/crop.json")


# -- evaluate: the pairs table ---------------------------------------------------------------
@pytest.fixture
def pairs_dir(tmp_path):
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / name).write_bytes(encode(astronaut()))
    return tmp_path


@pytest.mark.parametrize(
    ("csv", "error"),
    [
        ("img1,img2\na.jpg,b.jpg\n", r"missing column\(s\) label; expected img1, img2, label"),
        ("img1,img2,label\na.jpg,b.jpg,1\na.jpg,b.jpg,yes\n", r"pairs\.csv row 3: label 'yes'"),
        ("img1,img2,label\na.jpg,c.jpg,1\n", r"pairs\.csv row 2: img2 .*c\.jpg: no such file"),
        ("img1,img2,label\n,b.jpg,0\n", r"pairs\.csv row 2: img1 is empty"),
        ("img1,img2,label\n", r"pairs\.csv: no pairs"),
    ],
)
def test_evaluate_names_the_bad_row(pairs_dir, csv, error):
    (pairs_dir / "pairs.csv").write_text(csv)
    with pytest.raises((ValueError, FileNotFoundError), match=error):
        read_pairs(pairs_dir / "pairs.csv")


def test_evaluate_resolves_paths_from_the_csv_folder(pairs_dir):
    (pairs_dir / "pairs.csv").write_text(f"img1,img2,label\na.jpg,{pairs_dir / 'b.jpg'},1\n")
    table = read_pairs(pairs_dir / "pairs.csv")
    assert table["img1"].iloc[0] == str(pairs_dir / "a.jpg")
    assert table["img2"].iloc[0] == str(pairs_dir / "b.jpg")


def test_predict_cli_names_a_missing_photo(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "kinship.cli", "predict", "nope1.jpg", "nope2.jpg"],
        cwd=tmp_path, env=pipeline_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "kinship predict: error: nope1.jpg: no such file" in proc.stderr


# -- the trained pipeline (the tiny CI workspace) ----------------------------------------------
def kinship(work, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kinship.cli", *args],
        cwd=work, env=pipeline_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip


@pytest.fixture(scope="module")
def predictor(ci_pipeline):
    from kinship.predictor import Predictor

    return Predictor.load(ci_pipeline)


@pytest.mark.e2e
def test_predict_no_detect_reproduces_the_submission(ci_pipeline):
    """The CLI on two test images gives that pair's submission.csv value within 1e-5."""
    submission = pd.read_csv(ci_pipeline / "submission.csv")
    img_pair, expected = submission.iloc[3]
    first, second = img_pair.split("-")
    proc = kinship(
        ci_pipeline, "predict", "--no-detect", "--json",
        f"data/synthetic/test/{first}", f"data/synthetic/test/{second}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert abs(result["probability"] - expected) < 1e-5
    assert result["trained_on"]["dataset"]["synthetic"] is True


@pytest.mark.e2e
def test_every_member_reproduces_its_test_predictions(ci_pipeline, predictor):
    """Image members and dlib members alike, on several pairs, against their test tables."""
    work = ci_pipeline
    test = pd.read_parquet(work / "reports/ensemble/test.parquet").iloc[:6]
    assert set(predictor.names) >= {"dlib", "dlib_landmarks", "facenet", "vggface_vgg16"}
    for img_pair, row in zip(test["img_pair"], test.to_dict("records"), strict=True):
        first, second = (work / "data/synthetic/test" / p for p in img_pair.split("-"))
        result = predictor.predict(first, second, detect=False)
        assert result.probability == pytest.approx(row["ensemble_prob"], abs=1e-5)
        for name in predictor.names:
            assert result.members[name] == pytest.approx(row[name], abs=1e-5), name


@pytest.mark.e2e
def test_models_alone_are_enough(ci_pipeline, predictor, tmp_path):
    """As after `dvc pull` of the models: no params.yaml, data, reports or weight files."""
    import shutil

    from kinship.predictor import Predictor

    shutil.copytree(ci_pipeline / "models", tmp_path / "models")
    alone = Predictor.load(tmp_path)
    photos = encode(astronaut()), encode(camera())
    assert alone.predict(*photos).probability == predictor.predict(*photos).probability
    assert alone.info() == predictor.info()


@pytest.mark.e2e
def test_predict_detects_and_crops_faces_in_photos(ci_pipeline, predictor):
    result = predictor.predict(encode(astronaut()), encode(camera()))
    assert 0 <= result.probability <= 1 and set(result.members) == set(predictor.names)
    assert result.notes == []
    size = predictor.spec.output_size
    assert [f.crop.shape for f in result.faces] == [(size, size, 3)] * 2
    assert all(f.faces_found == 1 and f.confidence > 0.9 for f in result.faces)
    # the same photo twice: the same crop, and a symmetric score
    again = predictor.predict(encode(camera()), encode(astronaut()))
    assert again.probability == pytest.approx(result.probability, abs=1e-9)
    two = predictor.predict(encode(np.hstack([astronaut(), astronaut()])), encode(camera()))
    assert two.faces[0].faces_found == 2
    assert two.notes == [
        f"photo1: 2 faces found; the largest was used (box "
        f"{', '.join(f'{v:.0f}' for v in two.faces[0].box)})"
    ]
    for image in (skdata.coffee(), skdata.chelsea()):
        with pytest.raises(NoFaceError, match=r"^photo2: no face found"):
            predictor.predict(encode(astronaut()), encode(image))


@pytest.mark.e2e
def test_members_keep_the_crop_spec_and_the_ensemble_its_card(ci_pipeline):
    work = ci_pipeline
    card = json.loads((work / "models/ensemble/ensemble.json").read_text())
    assert card["trained_on"]["synthetic"] is True and card["trained_on"]["families"] > 0
    assert 0 < card["threshold"]["probability"] < 1
    spec = json.loads((work / "data/crop_spec.json").read_text())
    assert spec["detected"] >= 10
    for name in card["members"]:
        crop = json.loads((work / "models" / name / "crop.json").read_text())
        assert {k: crop[k] for k in spec} == spec
        assert ("input_size" in crop) == (not name.startswith("dlib"))


@pytest.mark.e2e
def test_evaluate_scores_labelled_pairs_as_the_pipeline(ci_pipeline):
    """On the test pairs with their labels: the AUC of the ensemble's test table."""
    from kinship.metrics import auc

    work = ci_pipeline
    labels = pd.read_csv(work / "data/synthetic/test_labels.csv").iloc[:40]
    first, second = zip(*labels["img_pair"].str.split("-"), strict=True)
    pairs = pd.DataFrame(
        {
            "img1": [f"synthetic/test/{p}" for p in first],
            "img2": [f"synthetic/test/{p}" for p in second],
            "label": labels["is_related"],
        }
    )
    pairs.to_csv(work / "data/pairs.csv", index=False)
    proc = kinship(work, "evaluate", "--no-detect", "data/pairs.csv", "--out", "scores.csv")
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = pd.read_parquet(work / "reports/ensemble/test.parquet").set_index("img_pair")
    expected = auc(labels["is_related"], table.loc[labels["img_pair"], "ensemble_prob"])
    assert f"AUC {expected:.4f}" in proc.stdout
    assert "Brier score:" in proc.stdout and "accuracy at the ensemble's threshold" in proc.stdout
    scores = pd.read_csv(work / "scores.csv")
    assert len(scores) == 40 and scores["probability"].between(0, 1).all()
    (work / "scores.csv").unlink()
    (work / "data/pairs.csv").unlink()

"""The embed stage: dlib's pretrained models on real (public-domain) photos and odd inputs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from skimage import data

from kinship import embed, paths
from kinship.cli import main
from kinship.embed import DlibModels, Embeddings, describe, embed_images, write_embeddings
from kinship.params import EmbedParams


@pytest.fixture(scope="module")
def models():
    return DlibModels.load()


@pytest.fixture(scope="module")
def astronaut_face():
    """A FIW-like face crop of skimage's astronaut (public domain): the detector's box, widened."""
    image = data.astronaut()
    box, found = embed.face_box(image, "detect", DlibModels.load())
    assert found
    margin = box.width() // 2
    top, left = max(box.top() - margin, 0), max(box.left() - margin, 0)
    return np.ascontiguousarray(image[top : box.bottom() + margin, left : box.right() + margin])


def distance(a, b) -> float:
    return float(np.linalg.norm(a.descriptors[0] - b.descriptors[0]))


def test_descriptor_of_a_real_face_and_its_mirror_image(models, astronaut_face):
    features = describe(astronaut_face, EmbedParams(face_box="detect", flip=True), models)
    assert features.detected
    assert features.descriptors.shape == (2, 128) and features.descriptors.dtype == np.float32
    assert np.isfinite(features.descriptors).all()
    mirror = np.linalg.norm(features.descriptors[0] - features.descriptors[1])
    assert 0 < mirror < 0.4  # the same face: dlib's same-person threshold is 0.6
    one_view = describe(astronaut_face, EmbedParams(face_box="detect"), models)
    np.testing.assert_array_equal(one_view.descriptors[0], features.descriptors[0])


def test_same_face_smaller_and_grey_stays_the_same_person(models, astronaut_face):
    """dlib's documented same-person threshold is a distance of 0.6; FIW has tiny, grey photos."""
    params = EmbedParams(face_box="detect")
    face = describe(astronaut_face, params, models)
    for side in (120, 60):
        for mode in ("RGB", "L"):
            small = Image.fromarray(astronaut_face).resize((side, side)).convert(mode)
            same = describe(np.asarray(small.convert("RGB")), params, models)
            assert same.detected and distance(face, same) < 0.45, (side, mode)


def test_landmarks_sit_on_the_face(models, astronaut_face):
    features = describe(astronaut_face, EmbedParams(face_box="detect"), models)
    points = features.landmarks
    assert points.shape == (68, 2)
    height, width = astronaut_face.shape[:2]
    assert (points[:, 0] > -0.1 * width).all() and (points[:, 0] < 1.1 * width).all()
    eyes, mouth, chin = points[36:48, 1].mean(), points[48:68, 1].mean(), points[8, 1]
    assert eyes < mouth < chin


def test_whole_box_never_reports_a_detection_and_detect_falls_back(models):
    coffee = data.coffee()  # no face: the detector finds none, the whole image is the box
    detected = describe(coffee, EmbedParams(face_box="detect"), models)
    whole = describe(coffee, EmbedParams(face_box="whole"), models)
    assert not detected.detected and not whole.detected
    np.testing.assert_array_equal(detected.descriptors, whole.descriptors)


def _folder(tmp_path, astronaut_face):
    """Six images in FIW layout: a face, its grey and tiny versions, RGBA-in-PNG, a corrupt one."""
    root = tmp_path / "fiw"
    face = Image.fromarray(astronaut_face)
    files = {
        "F0001/MID1/P1_face1.jpg": face,
        "F0001/MID2/P2_face1.jpg": face.convert("L"),
        "F0002/MID1/P3_face1.jpg": face.resize((24, 24)),
        "F0002/MID2/P4_face1.jpg": face.convert("RGBA"),
        "F0003/MID1/P5_face1.jpg": Image.fromarray(data.coffee()),
    }
    rows = []
    for token, image in files.items():
        path = root / "train" / token
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, format="PNG" if image.mode == "RGBA" else "JPEG")
        rows.append(token)
    corrupt = root / "train/F0003/MID2/P6_face1.jpg"
    corrupt.parent.mkdir(parents=True, exist_ok=True)
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    rows.append("F0003/MID2/P6_face1.jpg")
    images = pd.DataFrame(
        {"image": rows, "split": "train", "person": [r.rsplit("/", 1)[0] for r in rows]}
    ).assign(family=lambda t: t["person"].str[:5], row=range(len(rows)))
    return root, images


def test_embed_images_handles_grey_tiny_alpha_and_corrupt_files(tmp_path, astronaut_face):
    root, images = _folder(tmp_path, astronaut_face)
    params = EmbedParams(face_box="detect", flip=True)
    arrays, report = embed_images(images, root, params, max_bad_fraction=0.5, workers=1)
    assert arrays["descriptors"].shape == (6, 2, 128)
    assert report["bad_images"] == 1 and report["bad"][0]["image"] == "F0003/MID2/P6_face1.jpg"
    assert not arrays["descriptors"][5].any()  # the corrupt image is a zero row
    assert arrays["descriptors"][:5].any(axis=(1, 2)).all()
    assert arrays["detected"][0] and not arrays["detected"][4]
    # the same face as grey and as RGBA-in-PNG (no JPEG loss) stays the same person
    d = arrays["descriptors"][:, 0]
    assert np.linalg.norm(d[0] - d[1]) < 0.3 and np.linalg.norm(d[0] - d[3]) < 0.3
    again, _ = embed_images(images, root, params, max_bad_fraction=0.5, workers=2)
    for key in arrays:  # the same bytes whatever the worker count
        np.testing.assert_array_equal(arrays[key], again[key])


def test_too_many_unreadable_images_fail_and_write_nothing(tmp_path, astronaut_face, monkeypatch):
    root, images = _folder(tmp_path, astronaut_face)
    monkeypatch.chdir(tmp_path)
    images.to_parquet(tmp_path / "images.parquet")
    paths.IMAGES_TABLE.parent.mkdir(parents=True)
    images.to_parquet(paths.IMAGES_TABLE)
    (tmp_path / "params.yaml").write_text(
        f"data: {{root: {root}}}\ncache: {{sizes: [64], max_bad_fraction: 0.1}}\n"
    )
    assert main(["embed"]) == 2
    assert not paths.EMBEDDINGS_DIR.exists() and not paths.EMBED_REPORT.exists()
    with pytest.raises(ValueError, match=r"1 of 6 images unreadable .*P6_face1.jpg"):
        embed_images(images, root, EmbedParams(), max_bad_fraction=0.1, workers=1)


def test_embed_stage_writes_arrays_the_members_load(tmp_path, astronaut_face, monkeypatch):
    root, images = _folder(tmp_path, astronaut_face)
    monkeypatch.chdir(tmp_path)
    paths.IMAGES_TABLE.parent.mkdir(parents=True)
    images.to_parquet(paths.IMAGES_TABLE)
    (tmp_path / "params.yaml").write_text(
        f"data: {{root: {root}}}\ncache: {{max_bad_fraction: 0.5}}\n"
    )
    assert main(["embed"]) == 0
    loaded = Embeddings.load(len(images))
    assert loaded.descriptors.shape == (6, 1, 128) and loaded.bad_rows == {5}
    report = json.loads(paths.EMBED_REPORT.read_text())
    assert report["images"] == 6 and "seconds" not in json.dumps(report)
    with pytest.raises(
        ValueError, match=r"dlib_descriptors.npy: expected shape \(7, V, 128\) .*`dvc repro embed`"
    ):
        Embeddings.load(7)


def test_stale_or_missing_embeddings_name_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"dlib_descriptors.npy: missing \(run `dvc repro"):
        Embeddings.load(3)
    write_embeddings({"descriptors": np.zeros((3, 1, 128), np.float32),
                      "landmarks": np.zeros((3, 67, 2), np.float32),
                      "detected": np.zeros(3, bool)})  # fmt: skip
    with pytest.raises(ValueError, match="dlib_landmarks.npy: expected shape"):
        Embeddings.load(3)


def test_missing_model_package_is_an_error_not_a_skip(monkeypatch):
    monkeypatch.setattr(embed.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="face-recognition-models is not installed"):
        embed.model_dir()


def test_embed_params_are_checked():
    from kinship.params import parse_params

    with pytest.raises(ValueError, match="embed.face_box must be one of 'whole', 'detect'"):
        parse_params({"embed": {"face_box": "detected"}})
    with pytest.raises(ValueError, match=r"embed.jitter must be an integer in 0..100"):
        parse_params({"embed": {"jitter": -1}})

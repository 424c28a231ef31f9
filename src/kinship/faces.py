"""Faces in ordinary photos, cropped the way the training images were cropped.

The dataset's images are face crops already (FIW: 224 px squares around one face). A user's photo
is not, so `kinship predict` and `kinship serve` detect the face with MTCNN (facenet-pytorch; its
weights ship in the wheel) and cut the window that frames it as the training images frame theirs.

That framing is measured, not assumed: the crop_spec stage runs the same detector on a seeded
sample of training images and records, relative to the detected box, where the square the members
saw lies (its side and its centre's offset, medians over the sample). The train stages copy this
spec, with the member's own input size, next to every member's checkpoint (`crop.json`); the
predictor applies it. Image members then resize the crop as the cache did; the dlib members run
their own detector and 5-point aligner inside it, as the embed stage did on the training images.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

DETECTOR = "mtcnn"
DETECT_MIN_SIDE = 160  # smaller images are upscaled before detection (MTCNN's smallest face: 20 px)
DETECT_MAX_SIDE = 1024  # larger ones downscaled: detection cost grows with the pixels
MTCNN_MIN_SIDE = 12  # MTCNN's first net's input: a smaller image cannot hold a face (and errs)
MIN_MEASURED = 10  # fewer detected training faces than this: the framing cannot be measured


@dataclass(frozen=True)
class Detection:
    """A face box (x0, y0, x1, y1) in the image's pixels and the detector's confidence."""

    box: tuple[float, float, float, float]
    confidence: float

    @property
    def side(self) -> float:
        """The box's size as one number: the geometric mean of its width and height."""
        x0, y0, x1, y1 = self.box
        return math.sqrt(max(x1 - x0, 1e-6) * max(y1 - y0, 1e-6))

    @property
    def centre(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box
        return (x0 + x1) / 2, (y0 + y1) / 2

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return (x1 - x0) * (y1 - y0)


class FaceDetector:
    """MTCNN on the CPU, every face above `min_confidence`, largest first. Images are rescaled
    to a side between DETECT_MIN_SIDE and DETECT_MAX_SIDE for detection; boxes come back in the
    image's own pixels."""

    def __init__(self, min_confidence: float):
        import torch  # noqa: F401  (torch before anything that may load TensorFlow)
        from facenet_pytorch import MTCNN

        self.min_confidence = min_confidence
        self.mtcnn = MTCNN(keep_all=True, device="cpu", select_largest=True)

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in a uint8 RGB image (H, W, 3), largest first."""
        height, width = image.shape[:2]
        upscale = max(DETECT_MIN_SIDE / min(height, width), 1.0)
        scale = min(upscale, DETECT_MAX_SIDE / max(height, width))
        if min(height, width) * scale < MTCNN_MIN_SIDE:  # a strip: no face fits MTCNN's net
            return []
        pil = Image.fromarray(image)
        if scale != 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            pil = pil.resize(size, Image.Resampling.BILINEAR)
        boxes, probs = self.mtcnn.detect(pil)
        if boxes is None:
            return []
        found = [
            Detection(tuple(float(v) / scale for v in box), float(p))
            for box, p in zip(np.asarray(boxes, float), np.asarray(probs, float), strict=True)
            if p >= self.min_confidence
        ]
        return sorted(found, key=lambda d: -d.area)


@dataclass(frozen=True)
class CropSpec:
    """Where a training image's square lies relative to the detected face box: its side is
    `scale` box sides, its centre `offset` box sides from the box's centre (x right, y down).
    `output_size` is the side the crop is resized to: the training images' median side (the dlib
    members' input) or, in a member's `crop.json`, that member's input size."""

    detector: str
    min_confidence: float
    scale: float
    offset_x: float
    offset_y: float
    output_size: int
    measured_on: int  # training images sampled
    detected: int  # ... in which the detector found a face (the medians are over these)
    scale_iqr: tuple[float, float]

    @classmethod
    def from_json(cls, data: dict, source: str) -> CropSpec:
        try:
            spec = cls(**{k: data[k] for k in cls.__dataclass_fields__})
        except (KeyError, TypeError) as err:
            raise ValueError(f"{source}: not a crop spec ({err}); rerun `dvc repro`") from None
        if spec.detector != DETECTOR:
            raise ValueError(f"{source}: detector {spec.detector!r}, expected {DETECTOR!r}")
        return spec

    def to_json(self) -> dict:
        return asdict(self)

    def window(self, face: Detection) -> tuple[float, float, float, float]:
        """The square (x0, y0, x1, y1) that frames `face` as the training images framed theirs."""
        side = self.scale * face.side
        cx, cy = face.centre
        cx, cy = cx + self.offset_x * face.side, cy + self.offset_y * face.side
        return cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2

    def crop(self, image: np.ndarray, face: Detection, size: int | None = None) -> np.ndarray:
        """The window around `face`, resized to `size` (default `output_size`) px; parts outside
        the photo are black."""
        size = size or self.output_size
        x0, y0, x1, y1 = (round(v) for v in self.window(face))
        window = Image.fromarray(image).crop((x0, y0, x1, y1))  # pads outside with black
        return np.asarray(window.resize((size, size), Image.Resampling.BILINEAR), np.uint8)


def training_window(width: int, height: int) -> tuple[float, float, float]:
    """The square the members saw of a training image (the cache's centre square): centre, side."""
    return width / 2, height / 2, float(min(width, height))


def measure(images: list[np.ndarray], detector: FaceDetector) -> CropSpec:
    """The framing of the training images: the medians, over the images where a face is found,
    of the square's side and centre offset in units of the largest face box's side."""
    scales, dx, dy, sides = [], [], [], []
    for image in images:
        height, width = image.shape[:2]
        sides.append(min(height, width))
        faces = detector.detect(image)
        if not faces:
            continue
        face = faces[0]
        cx, cy, side = training_window(width, height)
        fx, fy = face.centre
        scales.append(side / face.side)
        dx.append((cx - fx) / face.side)
        dy.append((cy - fy) / face.side)
    if len(scales) < MIN_MEASURED:
        raise ValueError(
            f"crop spec: {DETECTOR} found a face in {len(scales)} of {len(images)} sampled "
            f"training images; at least {MIN_MEASURED} are needed to measure how the training "
            "images frame a face (are they face photos? lower crop.min_confidence?)"
        )
    q1, q3 = np.percentile(scales, [25, 75])
    return CropSpec(
        detector=DETECTOR,
        min_confidence=detector.min_confidence,
        scale=round(float(np.median(scales)), 6),
        offset_x=round(float(np.median(dx)), 6),
        offset_y=round(float(np.median(dy)), 6),
        output_size=int(np.median(sides)),
        measured_on=len(images),
        detected=len(scales),
        scale_iqr=(round(float(q1), 6), round(float(q3), 6)),
    )


def run_crop_spec(params) -> dict:
    """The crop_spec stage: measure the training images' framing on a seeded sample."""
    import pandas as pd

    from kinship import paths
    from kinship.cache import image_path
    from kinship.embed import read_rgb
    from kinship.io import write_json

    if not paths.IMAGES_TABLE.is_file():
        raise FileNotFoundError(f"{paths.IMAGES_TABLE}: run the prepare stage first")
    images = pd.read_parquet(paths.IMAGES_TABLE)
    train = images[images["split"] == "train"]
    cp = params.crop
    sample = train.sample(n=min(cp.sample, len(train)), random_state=cp.seed)
    arrays, unreadable = [], 0
    for token in sample["image"]:
        try:
            arrays.append(read_rgb(image_path(params.data.root_path, token, "train")))
        except (OSError, ValueError, SyntaxError):
            unreadable += 1  # the cache stage reports these; the sample just skips them
    spec = measure(arrays, FaceDetector(cp.min_confidence))
    write_json(paths.CROP_SPEC, spec.to_json())
    log.info(
        "crop_spec: a face in %d of %d sampled training images (%d unreadable); the square is "
        "%.3f face boxes wide (IQR %.3f-%.3f), centred %+.3f, %+.3f boxes off the face; %d px",
        spec.detected, spec.measured_on, unreadable, spec.scale, *spec.scale_iqr,
        spec.offset_x, spec.offset_y, spec.output_size,
    )  # fmt: skip
    return spec.to_json()

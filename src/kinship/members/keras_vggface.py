"""The VGGFace members (VGG16, ResNet50, SENet50): Keras 3 backbones + the shared pair head.

`build()` makes five models once and compiles two of them:
- `embedding`: images → concat(global max, global avg) of the backbone's last feature map;
- `head`: [e1, e2] → pair logit (`keras_head`), used to score;
- `group_head`: [embeddings (B, D), partners (B, M)] → the head on each row's in-batch pairs →
  logits (B, M) (`base` explains group batches); compiled with its own Adam for
  `train_head_step`;
- `siamese`: [images, partners] → the embedding model once on the batch → `group_head`;
  compiled with Adam + BCE for `train_step`.
Steps go through `train_on_batch` / `predict_on_batch`, so each function is traced once per
process; `reset` only assigns variables (donor models built from the seed, or the pretrained
backbone kept at build) and never recompiles. Inference pads batches to a few fixed sizes so
new batch sizes do not retrace (or recompile under XLA on a GPU).

On the torch backend the member takes the device data path (`kinship.device_data`): `upload`
copies uint8 batches to the device in the trainer's prefetch thread, `train_uploaded` augments
them there from the member's own seeded torch generator, preprocesses, and runs the siamese
model's forward, `compute_loss`, backward and optimiser step directly (as Keras' own torch
`train_step` does), returning the loss as a device scalar: no step waits on the host. On
TensorFlow the trainer augments on the host and calls `train_step` (`train_on_batch`).

`freeze` (pretrained weights only) makes the backbone non-trainable, which in Keras 3 also runs
its BatchNorm in inference mode. `mixed_precision` builds the models under the `mixed_bfloat16`
policy (set while building, then restored) when a GPU is present, as the torch members autocast
only on CUDA; on CPU it is ignored (float32), and the log says which policy was chosen. Pair
features, logits, embeddings and probabilities stay float32. Only `keras.*` APIs: the members run
on the TensorFlow and torch backends (`KERAS_BACKEND`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import keras
import numpy as np
from keras import layers, ops

from kinship.io import atomic_file, write_json
from kinship.members import keras_head
from kinship.members.base import CONFIG_FILE, Member, check_groups, check_pairs
from kinship.members.params import MemberParams
from kinship.members.vggface_arch import (
    MEANS_BGR,
    PREPROCESS_VERSION,
    build_backbone,
    pooled_features,
    preprocess_input,
)
from kinship.members.vggface_weights import load_vggface_weights

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.weights.h5"
TRAINING_STATE_FILE = "training_state.weights.h5"
SEED_STATE_FILE = "seed_states.npz"
TORCH_STATE_PREFIX = "torch_"
"""Names in SEED_STATE_FILE of torch's random states (torch backend: `_torch_random_states`)."""
SCORE_BATCH = 4096


class GroupPairs(layers.Layer):
    """[embeddings (B, D), partners (B, M)] → the B·M pairs' two embeddings, (B·M, D) each."""

    def call(self, embeddings, partners):
        anchors = ops.expand_dims(ops.arange(ops.shape(embeddings)[0], dtype="int32"), 1)
        anchors = ops.reshape(anchors + ops.zeros_like(partners), (-1,))
        return (
            ops.take(embeddings, anchors, axis=0),
            ops.take(embeddings, ops.reshape(partners, (-1,)), axis=0),
        )

    def compute_output_shape(self, embeddings_shape, partners_shape):
        pairs = (None, embeddings_shape[-1])
        return pairs, pairs


class Regroup(layers.Layer):
    """[pair logits (B·M, 1), partners (B, M)] → logits (B, M)."""

    def call(self, logits, partners):
        return ops.reshape(logits, ops.shape(partners))

    def compute_output_shape(self, logits_shape, partners_shape):
        return tuple(partners_shape)


@dataclass
class _Models:
    backbone: keras.Model
    embedding: keras.Model
    head: keras.Model
    group_head: keras.Model
    siamese: keras.Model


class KerasMember(Member):
    """A siamese VGGFace member; subclasses set `ARCH` (see `vggface_arch.ARCHS`)."""

    framework: ClassVar[str] = "keras"
    ARCH: ClassVar[str]

    def __init__(self, name: str, params: MemberParams):
        super().__init__(name, params)
        self._models: _Models | None = None
        self._pretrained_backbone: list[np.ndarray] | None = None
        self._policy: str | None = None
        self._device_path = None  # device_data.DeviceTraining, on the torch backend

    @property
    def device_path(self) -> bool:
        """On Keras' torch backend: uint8 batches to the device, augmented there."""
        return keras.config.backend() == "torch"

    def preprocess(self, images: np.ndarray) -> np.ndarray:
        return preprocess_input(images, self.ARCH)

    # -- the model ----------------------------------------------------------------------------
    @property
    def models(self) -> _Models:
        if self._models is None:
            raise RuntimeError(f"member {self.name!r}: call build() before using the model")
        return self._models

    def build(self) -> None:
        self._policy = dtype_policy(self.params.mixed_precision)
        log.info("%s: dtype policy %s", self.name, self._policy)
        with self._dtype_policy():
            backbone = self._new_backbone()
            if self.params.weights_path is not None:
                load_vggface_weights(backbone, self.params.weights_path, self.ARCH)
                self._pretrained_backbone = backbone.get_weights()
            backbone.trainable = not self.frozen  # before compiling
            embedding = pooled_features(backbone, name="embedding")
            head = self._new_head(embedding.output_shape[-1])
            group_head = _group_head(head, embedding.output_shape[-1])
            siamese = _siamese(embedding, group_head, self.params.input_size)
        optimizers = {
            siamese: backbone_scaled_adam(
                self.params.lr, backbone.trainable_variables, self.params.backbone_lr_ratio
            ),
            group_head: keras.optimizers.Adam(self.params.lr),
        }
        for model, optimizer in optimizers.items():
            model.compile(optimizer=optimizer, loss=keras_head.loss())
            # its variables now, not inside the first step (TensorFlow would trace that twice)
            model.optimizer.build(model.trainable_variables)
        self._models = _Models(backbone, embedding, head, group_head, siamese)
        if self.device_path:
            from kinship import device_data

            # on the device where Keras puts its tensors
            self._device_path = device_data.DeviceTraining(ops.convert_to_tensor(0).device)

    def reset(self, seed: int) -> None:
        models = self.models
        # 1. one seed drives the donors' init and the head's dropout: Keras draws the seed of
        #    every unseeded initializer and dropout layer from Python's `random`. Not
        #    keras.utils.set_random_seed: its tf.random.set_seed clears TensorFlow's function
        #    caches (~5 s to re-optimise a ResNet50 step) and imports TensorFlow on any backend.
        random.seed(seed)
        with self._dtype_policy():
            # 2. backbone: pretrained weights restored, or a fresh random init
            if self._pretrained_backbone is not None:
                models.backbone.set_weights(self._pretrained_backbone)
            else:
                _copy_variables(self._new_backbone(), models.backbone)
            # 3. head from scratch (its dropout seed state too)
            _copy_variables(self._new_head(models.embedding.output_shape[-1]), models.head)
        # 4. optimisers cleared, learning rate back to params.lr
        for model in (models.siamese, models.group_head):
            _restart_optimizer(model.optimizer, self.params.lr)
        # 5. on torch: the device augmentation's own stream, and torch's global one, which
        #    Keras' torch backend draws unseeded dropout masks from (not the seed generators)
        if self._device_path is not None:
            import torch

            torch.manual_seed(seed)
            self._device_path.seed(seed)

    def check_device(self) -> None:
        warn_if_cpu_beside_a_gpu(self.name)

    def _new_backbone(self) -> keras.Model:
        return build_backbone(self.ARCH, self.params.input_size, self.params.width)

    def _new_head(self, embedding_dim: int) -> keras.Model:
        return keras_head.build_head(embedding_dim, self.params.head)

    @contextlib.contextmanager
    def _dtype_policy(self) -> Iterator[None]:
        """Models built inside use the policy chosen at build (`dtype_policy`)."""
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(self._policy or "float32")
        try:
            yield
        finally:
            keras.config.set_dtype_policy(previous)

    # -- training -----------------------------------------------------------------------------
    def train_step(self, images: np.ndarray, partners: np.ndarray, labels: np.ndarray) -> float:
        check_groups(len(images), partners, labels)
        inputs = [self.preprocess(images), _rows(partners)]
        return float(self.models.siamese.train_on_batch(inputs, _floats(labels)))

    def upload(self, images: np.ndarray, partners: np.ndarray, labels: np.ndarray) -> Any:
        check_groups(len(images), partners, labels)
        return self._device_path.upload(images, partners, labels)

    def train_uploaded(self, batch: Any) -> Any:
        import torch

        from kinship import device_data

        images, partners, labels = batch.wait()
        images = self._device_path.augment(images, self.params.augment)
        inputs = [device_data.vggface_input(images, MEANS_BGR[PREPROCESS_VERSION[self.ARCH]]),
                  partners]  # fmt: skip
        siamese = self.models.siamese
        siamese.zero_grad()
        logits = siamese(inputs, training=True)
        loss = siamese.compute_loss(x=inputs, y=labels, y_pred=logits, training=True)
        loss.backward()
        variables = siamese.trainable_weights
        with torch.no_grad():
            siamese.optimizer.apply([v.value.grad for v in variables], variables)
        return loss.detach()

    def train_head_step(
        self, embeddings: np.ndarray, partners: np.ndarray, labels: np.ndarray
    ) -> float:
        check_groups(len(embeddings), partners, labels)
        inputs = [_floats(embeddings), _rows(partners)]
        return float(self.models.group_head.train_on_batch(inputs, _floats(labels)))

    def set_learning_rate(self, lr: float) -> None:
        for model in (self.models.siamese, self.models.group_head):
            model.optimizer.learning_rate = float(lr)

    def get_learning_rate(self) -> float:
        return float(ops.convert_to_numpy(self.models.siamese.optimizer.learning_rate))

    # -- inference ----------------------------------------------------------------------------
    def embed(self, images: np.ndarray) -> np.ndarray:
        batch = self.params.batch_size * 4
        return _predict(self.models.embedding, [self.preprocess(images)], batch)

    def score(self, e1: np.ndarray, e2: np.ndarray) -> np.ndarray:
        check_pairs(e1, e2)
        logits = _predict(self.models.head, [_floats(e1), _floats(e2)], SCORE_BATCH)
        return keras_head.probabilities(logits)

    # -- state --------------------------------------------------------------------------------
    def get_state(self) -> list[np.ndarray]:
        return [np.array(w, copy=True) for w in self.models.siamese.get_weights()]

    def set_state(self, state: Any) -> None:
        self.models.siamese.set_weights(state)

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        partial = directory / f".partial.{WEIGHTS_FILE}"  # Keras wants the .weights.h5 suffix
        try:
            keras.saving.save_weights(
                self.models.siamese, partial, objects_to_skip=self._optimizers()
            )
            os.replace(partial, directory / WEIGHTS_FILE)
        finally:
            partial.unlink(missing_ok=True)
        write_json(directory / CONFIG_FILE, self.member_config())

    def load(self, directory: Path) -> None:
        directory = Path(directory)
        self.check_checkpoint_config(directory / CONFIG_FILE)
        path = directory / WEIGHTS_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: checkpoint weights not found (written by save)")
        keras.saving.load_weights(self.models.siamese, path, objects_to_skip=self._optimizers())

    def save_training_state(self, directory: Path) -> None:
        """The weights with both optimisers' variables (moments, iterations, learning rate), and
        the dropout layers' seed states (which Keras leaves out of weight files)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        partial = directory / f".partial.{TRAINING_STATE_FILE}"
        try:
            keras.saving.save_weights(self.models.siamese, partial)
            os.replace(partial, directory / TRAINING_STATE_FILE)
        finally:
            partial.unlink(missing_ok=True)
        # by position: seed generators are numbered per process, so their paths differ
        seeds = {f"s{i}": ops.convert_to_numpy(v.value) for i, v in enumerate(self._seed_states())}
        if self._device_path is not None:
            seeds.update(_torch_random_states(self._device_path.augment_rng))
        with atomic_file(directory / SEED_STATE_FILE, "wb") as fh:
            np.savez(fh, **seeds)
        write_json(directory / CONFIG_FILE, self.member_config())

    def load_training_state(self, directory: Path) -> None:
        directory = Path(directory)
        self.check_checkpoint_config(directory / CONFIG_FILE)
        path = directory / TRAINING_STATE_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: training state not found (written each epoch)")
        keras.saving.load_weights(self.models.siamese, path)
        with np.load(directory / SEED_STATE_FILE) as seeds:
            states = self._seed_states()
            names = [name for name in seeds.files if not name.startswith(TORCH_STATE_PREFIX)]
            if self._device_path is not None:
                _set_torch_random_states(self._device_path.augment_rng, seeds)
            if len(names) != len(states):
                raise ValueError(f"{directory}: {len(names)} seed states for {len(states)}")
            for i, variable in enumerate(states):
                variable.assign(seeds[f"s{i}"])

    def _seed_states(self) -> list:
        return [v for v in self.models.siamese.variables if "seed_generator_state" in v.path]

    def _optimizers(self) -> list[keras.optimizers.Optimizer]:
        """Left out of checkpoints (as in the torch members): a fold's best state is the model."""
        return [self.models.siamese.optimizer, self.models.group_head.optimizer]


class VggFace16Member(KerasMember):
    """vggface_vgg16: VGGFace1 VGG16 (preprocessing v1)."""

    ARCH = "vgg16"


class VggFaceResNet50Member(KerasMember):
    """vggface_resnet50 (and vggface_resnet50_wide): VGGFace2 ResNet50 (preprocessing v2)."""

    ARCH = "resnet50"


class VggFaceSeNet50Member(KerasMember):
    """vggface_senet50: VGGFace2 SENet50 (preprocessing v2)."""

    ARCH = "senet50"


_SCALED_ADAM: dict[type, type] = {}


def backbone_scaled_adam(
    lr: float, backbone_variables: list, ratio: float
) -> keras.optimizers.Optimizer:
    """Adam whose update of `backbone_variables` uses `ratio` times the learning rate (the
    backbone's own rate, `backbone_lr`), all other variables the rate itself.

    Keras 3 has no per-variable learning rates. This subclasses the backend's own Adam (on
    torch, its fused multi-tensor `_parallel_update_step`) and runs its update twice per step,
    on the head's and on the backbone's variables, with one iteration count, so the moments and
    bias correction are Adam's. With `ratio` 1 it is one plain update.
    """
    base = type(keras.optimizers.Adam(lr))  # the backend's class (torch maps Adam to its own)
    if base not in _SCALED_ADAM:

        class BackboneScaledAdam(base):
            backbone_ids: frozenset[int] = frozenset()
            ratio: float = 1.0

            def _backend_update_step(self, grads, trainable_variables, learning_rate):
                if self.ratio == 1.0:
                    return super()._backend_update_step(grads, trainable_variables, learning_rate)
                pairs = list(zip(grads, trainable_variables, strict=True))
                rates = ((False, learning_rate), (True, learning_rate * self.ratio))
                for in_backbone, rate in rates:
                    part = [(g, v) for g, v in pairs if (id(v) in self.backbone_ids) == in_backbone]
                    if part:
                        super()._backend_update_step(
                            [g for g, _ in part], [v for _, v in part], rate
                        )
                return None

        _SCALED_ADAM[base] = BackboneScaledAdam
    optimizer = _SCALED_ADAM[base](lr)
    optimizer.backbone_ids = frozenset(id(v) for v in backbone_variables)
    optimizer.ratio = float(ratio)
    return optimizer


def _torch_random_states(augment_rng) -> dict[str, np.ndarray]:
    """On the torch backend, what draws random numbers in training: the device augmentation's
    generator and torch's global generators (Keras' unseeded dropout), as arrays."""
    import torch

    states = {"torch_augment": augment_rng.get_state(), "torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["torch_cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    return {key: state.numpy() for key, state in states.items()}


def _set_torch_random_states(augment_rng, saved) -> None:
    """Restore what `_torch_random_states` saved (a state file from before it had them: none)."""
    import torch

    if "torch_augment" in saved.files:
        augment_rng.set_state(torch.from_numpy(saved["torch_augment"]))
        torch.set_rng_state(torch.from_numpy(saved["torch_cpu"]))
    if "torch_cuda" in saved.files and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(torch.from_numpy(saved["torch_cuda"])))


def dtype_policy(mixed_precision: bool) -> str:
    """`mixed_bfloat16` when mixed precision is asked for and a GPU is present, else `float32`
    (bfloat16 on CPU is slower than float32 on most CPUs, and the README says it is ignored)."""
    return "mixed_bfloat16" if mixed_precision and has_gpu() else "float32"


def has_gpu() -> bool:
    """Whether the Keras backend sees a GPU."""
    backend = keras.config.backend()
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return any(d.platform == "gpu" for d in jax.devices())
    return False


def warn_if_cpu_beside_a_gpu(name: str) -> bool:
    """Log one warning when this member will run on the CPU while torch sees a CUDA GPU (the
    TensorFlow backend from tensorflow-cpu on a GPU machine); return whether it warned."""
    if keras.config.backend() == "torch" or has_gpu() or not torch_sees_cuda():
        return False
    log.warning(
        "%s: Keras runs on the CPU (backend %s sees no GPU) while torch sees a CUDA GPU; set "
        "train.keras_backend: torch in params.yaml to train on the GPU (docs/gpu.md)",
        name, keras.config.backend(),
    )  # fmt: skip
    return True


def torch_sees_cuda() -> bool:
    """Whether torch sees a CUDA GPU. Without the CUDA driver library it cannot, and torch is not
    imported (~0.5 GB and 1.5 s in a TensorFlow process that does not need it)."""
    import ctypes.util

    if ctypes.util.find_library("cuda") is None:
        return False
    import torch

    return torch.cuda.is_available()


def _group_head(head: keras.Model, embedding_dim: int) -> keras.Model:
    """[embeddings (B, D), partners (B, M)] → the head on every in-batch pair → logits (B, M)."""
    embeddings = keras.Input((embedding_dim,), name="embeddings")
    partners = keras.Input((None,), dtype="int32", name="partners")
    e1, e2 = GroupPairs(name="group_pairs")(embeddings, partners)
    logits = Regroup(name="regroup")(head([e1, e2]), partners)
    return keras.Model([embeddings, partners], logits, name="group_head")


def _siamese(embedding: keras.Model, group_head: keras.Model, input_size: int) -> keras.Model:
    """[images, partners] → the embedding model once on the batch → group logits (B, M)."""
    images = keras.Input((input_size, input_size, 3), name="images")
    partners = keras.Input((None,), dtype="int32", name="partners")
    return keras.Model(
        [images, partners], group_head([embedding(images), partners]), name="siamese"
    )


def _copy_variables(source: keras.Model, target: keras.Model) -> None:
    """Assign every variable of `source` (weights and seed states) to the same-built `target`."""
    pairs = list(zip(source.variables, target.variables, strict=True))
    for src, dst in pairs:
        if tuple(src.shape) != tuple(dst.shape):
            raise RuntimeError(f"donor variable {src.path} {src.shape} != {dst.path} {dst.shape}")
    for src, dst in pairs:
        dst.assign(src.value)


def _restart_optimizer(optimizer: keras.optimizers.Optimizer, lr: float) -> None:
    """Zero every optimiser variable (iteration count, moments), then set the learning rate."""
    for variable in optimizer.variables:
        variable.assign(ops.zeros(variable.shape, variable.dtype))
    optimizer.learning_rate = float(lr)


def _predict(model: keras.Model, inputs: list[np.ndarray], batch: int) -> np.ndarray:
    """Inference in chunks of `batch` rows, each zero-padded to a power of two or `batch` rows
    (a handful of shapes, so `predict_on_batch` traces a handful of times) → float32."""
    rows = len(inputs[0])
    chunks = [np.zeros((0, *model.output_shape[1:]), np.float32)]
    for start in range(0, rows, batch):
        part = [x[start : start + batch] for x in inputs]
        n = len(part[0])
        padded = min(batch, 1 << (n - 1).bit_length())
        part = [np.concatenate([p, np.zeros((padded - n, *p.shape[1:]), p.dtype)]) for p in part]
        out = model.predict_on_batch(part if len(part) > 1 else part[0])
        chunks.append(np.asarray(ops.convert_to_numpy(out), np.float32)[:n])
    return np.concatenate(chunks)


def _floats(array: np.ndarray) -> np.ndarray:
    return np.asarray(array, np.float32)


def _rows(partners: np.ndarray) -> np.ndarray:
    return np.asarray(partners, np.int32)

"""Member registry: architecture name → "module:Class", imported only when that member is built.

Importing this module loads no framework, so prepare, ensemble and report can validate member
names without TensorFlow or torch (as timm's `create_model` and Gymnasium's registry do). The
Keras members' backend is chosen here too, before their module (and so Keras) is first imported.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from dataclasses import dataclass

from kinship.config import did_you_mean

MODELS: dict[str, str] = {
    "vggface_vgg16": "kinship.members.keras_vggface:VggFace16Member",
    "vggface_resnet50": "kinship.members.keras_vggface:VggFaceResNet50Member",
    "vggface_senet50": "kinship.members.keras_vggface:VggFaceSeNet50Member",
    "siamese_cnn": "kinship.members.siamese_cnn:SiameseCnnMember",
    "facenet": "kinship.members.facenet:FacenetMember",
}

KERAS_MODELS = frozenset({"vggface_vgg16", "vggface_resnet50", "vggface_senet50"})
"""Architectures built with Keras 3, on the backend `train.keras_backend` names (a test checks
this set against the classes' `framework`)."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelLimits:
    """What params validation must know about an architecture without importing it (a test checks
    these against the members' own code)."""

    min_input_size: int
    fixed_width: bool = False  # no width multiplier (facenet-pytorch's architecture has none)
    has_pretrained: bool = True  # published weights exist


LIMITS: dict[str, ModelLimits] = {
    "vggface_vgg16": ModelLimits(min_input_size=32),
    "vggface_resnet50": ModelLimits(min_input_size=32),
    "vggface_senet50": ModelLimits(min_input_size=32),
    "siamese_cnn": ModelLimits(min_input_size=58, has_pretrained=False),
    "facenet": ModelLimits(min_input_size=75, fixed_width=True),
}


def check_model_name(model: str, path: str = "model") -> None:
    """Raise a ValueError listing the valid names (with a suggestion) for an unknown one."""
    if model not in MODELS:
        raise ValueError(
            f"{path}: unknown model {model!r}{did_you_mean(model, MODELS)}; "
            f"valid models: {', '.join(sorted(MODELS))}"
        )


def member_class(model: str) -> type:
    """Import and return the class registered for `model`."""
    check_model_name(model)
    module_name, class_name = MODELS[model].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def create_member(name: str, params):
    """Build the member called `name` (a key of params.yaml `members`) from its params."""
    return member_class(params.model)(name, params)


def use_keras_backend(backend: str) -> None:
    """Make Keras, when it is first imported in this process, run on `backend` (the value of
    `train.keras_backend`), so that a train stage's results depend on params.yaml alone.

    Keras reads its backend once, at import: from `KERAS_BACKEND`, else `~/.keras/keras.json`,
    else TensorFlow. This sets `KERAS_BACKEND`, overriding (with a warning) a different value in
    the environment. A RuntimeError when Keras is already loaded on another backend (the choice
    can no longer be made in this process: run it in a fresh one)."""
    keras = sys.modules.get("keras")
    if keras is not None:
        loaded = keras.config.backend()
        if loaded != backend:
            raise RuntimeError(
                f"train.keras_backend is {backend!r}, but Keras was already imported in this "
                f"process on the {loaded!r} backend; run the train stage in a fresh process"
            )
        return
    environment = os.environ.get("KERAS_BACKEND")
    if environment is not None and environment != backend:
        log.warning(
            "KERAS_BACKEND=%s in the environment is overridden by params.yaml "
            "train.keras_backend: %s",
            environment, backend,
        )  # fmt: skip
    os.environ["KERAS_BACKEND"] = backend


def keras_backend_in_use() -> str | None:
    """The backend of the Keras loaded in this process; None when Keras is not loaded."""
    keras = sys.modules.get("keras")
    return None if keras is None else keras.config.backend()

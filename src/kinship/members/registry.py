"""Member registry: architecture name → "module:Class", imported only when that member is built.

Importing this module loads no framework, so prepare, ensemble and report can validate member
names without TensorFlow or torch (as timm's `create_model` and Gymnasium's registry do).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from kinship.config import did_you_mean

MODELS: dict[str, str] = {
    "vggface_vgg16": "kinship.members.keras_vggface:VggFace16Member",
    "vggface_resnet50": "kinship.members.keras_vggface:VggFaceResNet50Member",
    "vggface_senet50": "kinship.members.keras_vggface:VggFaceSeNet50Member",
    "siamese_cnn": "kinship.members.siamese_cnn:SiameseCnnMember",
    "facenet": "kinship.members.facenet:FacenetMember",
}


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

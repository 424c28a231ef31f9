"""The pair head shared by the Keras members: two embeddings → one kinship logit.

The same head as `torch_head`: pair features chosen by `head.features` and concatenated in the
order given — `sq_diff` (x1−x2)², `sq_sub` x1²−x2², `prod` x1·x2, `abs_diff` |x1−x2| (D values
each) and `cosine` (one value), on embeddings scaled to unit root-mean-square when
`head.normalize` is set — then `head.hidden` dense layers (ReLU, dropout) and one unit.
That unit is a logit: the loss is BCE on it (`from_logits`) and probabilities are its sigmoid,
which is the 1-unit sigmoid head with a numerically stable loss.

Pair features and the logit are computed in float32 under a mixed-precision policy. Only
`keras.layers` / `keras.ops`: the head runs on the TensorFlow and torch backends.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from kinship.members.params import HeadParams

COSINE_EPS = 1e-8  # as torch.nn.functional.cosine_similarity
RMS_EPS = 1e-6  # as torch_head


def _cosine(a, b):
    """Cosine similarity per row, (N, 1); the norms' product is clamped at COSINE_EPS."""
    dot = ops.sum(a * b, axis=1, keepdims=True)
    norms = ops.sum(ops.square(a), axis=1, keepdims=True) * ops.sum(
        ops.square(b), axis=1, keepdims=True
    )
    return dot / ops.sqrt(ops.maximum(norms, COSINE_EPS**2))


FEATURES = {  # one entry per name in kinship.members.params.PAIR_FEATURES (a test checks it)
    "sq_diff": lambda a, b: ops.square(a - b),
    "sq_sub": lambda a, b: ops.square(a) - ops.square(b),
    "prod": lambda a, b: a * b,
    "abs_diff": lambda a, b: ops.abs(a - b),
    "cosine": _cosine,
}


def feature_width(features: list[str], embedding_dim: int) -> int:
    """Length of the concatenated pair-feature vector."""
    return sum(1 if name == "cosine" else embedding_dim for name in features)


class PairFeatures(layers.Layer):
    """Embeddings (N, D) × 2 → the named pair features concatenated, (N, feature_width)."""

    def __init__(self, features: list[str], **kwargs):
        super().__init__(**kwargs)
        unknown = [name for name in features if name not in FEATURES]
        if unknown or not features:
            raise ValueError(f"pair features must be a non-empty subset of {list(FEATURES)}")
        self.features = list(features)

    def call(self, e1, e2):
        return ops.concatenate([FEATURES[name](e1, e2) for name in self.features], axis=1)

    def compute_output_shape(self, e1_shape, e2_shape):
        if tuple(e1_shape) != tuple(e2_shape) or len(e1_shape) != 2:
            raise ValueError(
                f"pair head expects two (N, D) embeddings, got {e1_shape} and {e2_shape}"
            )
        return (e1_shape[0], feature_width(self.features, e1_shape[1]))

    def get_config(self) -> dict:
        return {**super().get_config(), "features": self.features}


class RmsNormalize(layers.Layer):
    """Each row scaled to unit root-mean-square (no weights)."""

    def call(self, e):
        return e / ops.sqrt(ops.mean(ops.square(e), axis=1, keepdims=True) + RMS_EPS)


def build_head(embedding_dim: int, head: HeadParams, name: str = "pair_head") -> keras.Model:
    """[e1, e2] (N, D) each → pair features → dense ReLU + dropout layers → logit (N, 1)."""
    e1 = keras.Input(shape=(embedding_dim,), name="embedding1")
    e2 = keras.Input(shape=(embedding_dim,), name="embedding2")
    a, b = e1, e2
    if head.normalize:
        norm = RmsNormalize(dtype="float32", name="rms_normalize")
        a, b = norm(e1), norm(e2)
    x = PairFeatures(head.features, dtype="float32", name="pair_features")(a, b)
    for i, units in enumerate(head.hidden):
        x = layers.Dense(units, activation="relu", name=f"hidden{i}")(x)
        x = layers.Dropout(head.dropout, name=f"dropout{i}")(x)
    logit = layers.Dense(1, dtype="float32", name="logit")(x)
    return keras.Model([e1, e2], logit, name=name)


def loss() -> keras.losses.Loss:
    """Mean binary cross-entropy on logits."""
    return keras.losses.BinaryCrossentropy(from_logits=True)


def probabilities(logits: np.ndarray) -> np.ndarray:
    """Sigmoid of logits (N, 1) or (N,) → float32 (N,), computed stably in float64."""
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    return (0.5 * (1.0 + np.tanh(0.5 * z))).astype(np.float32)

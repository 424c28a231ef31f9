"""Per-image feature vectors from the embed stage, and the pair features a frozen head reads."""

from __future__ import annotations

import numpy as np

from kinship.embed import Embeddings

EPS = 1e-6

# 68-point landmark indices (iBUG 300-W): jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67
LEFT_EYE, RIGHT_EYE = slice(36, 42), slice(42, 48)
KEY_POINTS = (0, 4, 8, 12, 16, 17, 21, 22, 26, 27, 30, 31, 33, 35, 36, 39, 42, 45, 48, 51, 54, 57)
"""Jaw ends, corners and chin; brow ends; nose bridge, tip, wings; eye corners; mouth corners."""
ANGLES = ((0, 8, 16), (4, 8, 12), (31, 30, 35), (48, 57, 54), (36, 30, 45), (17, 27, 26))
"""(a, vertex, b): jaw at the chin, lower jaw, nose tip, mouth, eyes to nose tip, brows."""


def landmark_geometry(landmarks: np.ndarray) -> np.ndarray:
    """Face geometry that does not depend on position, scale or in-plane rotation.

    (N, 68, 2) landmarks in pixels → (N, D) float32: every point in an eye-aligned frame (origin
    between the eyes, x along the eye line, unit = inter-ocular distance), the distances between
    `KEY_POINTS` in that unit, and the `ANGLES` in radians.
    """
    points = np.asarray(landmarks, dtype=np.float64)
    left, right = points[:, LEFT_EYE].mean(axis=1), points[:, RIGHT_EYE].mean(axis=1)
    centre, axis = (left + right) / 2, right - left
    iod = np.maximum(np.linalg.norm(axis, axis=1), EPS)
    cos, sin = axis[:, 0] / iod, axis[:, 1] / iod
    shifted = points - centre[:, None, :]
    aligned = (
        np.stack(
            [
                (shifted[..., 0] * cos[:, None] + shifted[..., 1] * sin[:, None]),
                (-shifted[..., 0] * sin[:, None] + shifted[..., 1] * cos[:, None]),
            ],
            axis=-1,
        )
        / iod[:, None, None]
    )
    key = aligned[:, KEY_POINTS]
    i, j = np.triu_indices(len(KEY_POINTS), k=1)
    distances = np.linalg.norm(key[:, i] - key[:, j], axis=-1)
    angles = []
    for a, v, b in ANGLES:
        u, w = aligned[:, a] - aligned[:, v], aligned[:, b] - aligned[:, v]
        cosine = (u * w).sum(-1) / np.maximum(
            np.linalg.norm(u, axis=-1) * np.linalg.norm(w, axis=-1), EPS
        )
        angles.append(np.arccos(np.clip(cosine, -1, 1)))
    features = np.concatenate([aligned.reshape(len(points), -1), distances, np.stack(angles, 1)], 1)
    return features.astype(np.float32)


def image_features(model: str, embeddings: Embeddings) -> np.ndarray:
    """(N, V, D) per-image features of one frozen model: V views (the image, its mirror image)."""
    if model == "dlib":
        return embeddings.descriptors
    if model == "dlib_landmarks":
        return landmark_geometry(embeddings.landmarks)[:, None, :]
    raise ValueError(f"unknown frozen model {model!r}")


PAIR_FEATURES = {
    "sq_diff": lambda a, b: (a - b) ** 2,
    "abs_diff": lambda a, b: np.abs(a - b),
    "prod": lambda a, b: a * b,
    "sq_sub": lambda a, b: a**2 - b**2,
    "abs_sq_sub": lambda a, b: np.abs(a**2 - b**2),
    "abs_sum": lambda a, b: np.abs(a + b),
    "norm_prod": lambda a, b: a * b / (a**2 + b**2 + EPS),
    "sides": lambda a, b: np.concatenate([np.minimum(a, b), np.maximum(a, b)], axis=1),
    "cosine": lambda a, b: (
        (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), EPS)
    )[:, None],
    "distance": lambda a, b: np.linalg.norm(a - b, axis=1)[:, None],
}
"""Each name of `kinship.frozen.params.FROZEN_PAIR_FEATURES`: (P, D) pairs → (P, k) columns."""


def pair_features(a: np.ndarray, b: np.ndarray, names: list[str]) -> np.ndarray:
    """The head's input for pairs of feature vectors (P, D) → (P, F) float32, in `names` order."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    unknown = [n for n in names if n not in PAIR_FEATURES]
    if unknown:
        raise ValueError(f"unknown pair feature {unknown[0]!r}; valid: {', '.join(PAIR_FEATURES)}")
    return np.concatenate([PAIR_FEATURES[n](a, b) for n in names], axis=1).astype(np.float32)


def view_mean(features: np.ndarray, rows: np.ndarray, tta_flip: bool) -> np.ndarray:
    """Each row's feature vector for prediction: the mean over its views (the image and its
    mirror image) under `tta_flip`, the image's own view otherwise."""
    views = features.shape[1] if tta_flip else 1
    return features[rows, :views].mean(axis=1)


def symmetric_scores(head, a: np.ndarray, b: np.ndarray, names: list[str]) -> np.ndarray:
    """A head's probabilities for pairs of vectors: the mean of (a, b) and (b, a)."""
    return (head.predict(pair_features(a, b, names)) + head.predict(pair_features(b, a, names))) / 2

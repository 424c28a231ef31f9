"""Training-time augmentation on uint8 RGB batches, before each member's own preprocessing."""

from __future__ import annotations

import numpy as np

from kinship.members.params import AugmentParams


def flip_horizontal(images: np.ndarray) -> np.ndarray:
    """Mirror images (N, H, W, C) left to right."""
    return images[:, :, ::-1]


def augment(images: np.ndarray, rng: np.random.Generator, params: AugmentParams) -> np.ndarray:
    """Random flips, small shifts (edge-padded) and colour jitter, drawn per image."""
    out = np.array(images, copy=True)
    n, size = out.shape[0], out.shape[1]
    if params.flip:
        mirrored = rng.random(n) < 0.5
        out[mirrored] = flip_horizontal(out[mirrored])
    max_shift = int(round(params.shift * size))
    if max_shift > 0:
        out = _shift(out, rng.integers(-max_shift, max_shift + 1, size=(n, 2)), max_shift)
    if params.colour > 0:
        out = _colour(out, rng, params.colour)
    return out


def _shift(images: np.ndarray, shifts: np.ndarray, pad: int) -> np.ndarray:
    size = images.shape[1]
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    out = np.empty_like(images)
    for i, (dy, dx) in enumerate(shifts):
        out[i] = padded[i, pad + dy : pad + dy + size, pad + dx : pad + dx + size]
    return out


def _colour(images: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    n = images.shape[0]
    x = images.astype(np.float32)
    brightness = rng.uniform(1 - strength, 1 + strength, size=(n, 1, 1, 1))
    contrast = rng.uniform(1 - strength, 1 + strength, size=(n, 1, 1, 1))
    saturation = rng.uniform(1 - strength, 1 + strength, size=(n, 1, 1, 1))
    grey = x.mean(axis=3, keepdims=True)
    x = grey + (x - grey) * saturation
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    x = (mean + (x - mean) * contrast) * brightness
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)

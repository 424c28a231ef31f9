"""Drawing primitives: soft-edged shapes painted onto a batch of float RGB canvases, and palettes.

Every shape is a signed distance (negative inside) turned into coverage by `soft`; `paint`
blends a colour where coverage is above 0. Canvases are N×H×W×3 (N photos of one person).
"""

from __future__ import annotations

import numpy as np

_DARK_SKIN = np.array([86.0, 55.0, 40.0])
_LIGHT_SKIN = np.array([242.0, 206.0, 182.0])
_HAIR_STOPS = np.array([[26.0, 21.0, 19.0], [96.0, 62.0, 40.0], [214.0, 180.0, 118.0]])
_AUBURN = np.array([150.0, 62.0, 32.0])
_GREY_HAIR = np.array([205.0, 205.0, 210.0])
_BROWN_IRIS = np.array([85.0, 52.0, 30.0])
_BLUE_IRIS = np.array([70.0, 120.0, 175.0])
_GREEN_IRIS = np.array([90.0, 130.0, 75.0])


def soft(distance: np.ndarray, edge: float) -> np.ndarray:
    """Coverage of a shape at a signed distance from its outline (negative inside)."""
    return np.clip(0.5 - distance / edge, 0.0, 1.0)


def ellipse(u: np.ndarray, v: np.ndarray, cu: float, cv: float, ru: float, rv: float):
    """Approximate signed distance to an axis-aligned ellipse."""
    smaller = np.minimum(ru, rv)
    return (np.hypot((u - cu) / ru, (v - cv) / rv) - 1.0) * (
        float(smaller) if np.ndim(smaller) == 0 else smaller
    )


def paint(canvas: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> None:
    """Blend a colour into a batch of canvases (N×H×W×3) where alpha (N×H×W) is above 0.

    The colour is one RGB, one per photo (N×1×1×3) or one per pixel (N×H×W×3)."""
    box = extent(alpha)
    if box is None:
        return
    colour = np.asarray(colour, dtype=np.float32)
    target = colour[box] if colour.ndim == 4 and colour.shape[1] > 1 else colour
    canvas[box] += alpha[box][..., None] * (target - canvas[box])


def extent(alpha: np.ndarray) -> tuple[slice, slice, slice] | None:
    """The smallest (all photos, rows, columns) box holding every alpha > 0, or None."""
    rows, cols = np.flatnonzero(alpha.any(axis=(0, 2))), np.flatnonzero(alpha.any(axis=(0, 1)))
    if rows.size == 0:
        return None
    return slice(None), slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def rounded_box(u, v, half: float, bottom: float, radius: float) -> np.ndarray:
    """Signed distance to the region |u| < half, v < bottom, with rounded lower corners."""
    du = np.maximum(np.abs(u) - (half - radius), 0.0)
    dv = np.maximum(v - (bottom - radius), 0.0)
    inside = np.minimum(np.maximum(np.abs(u) - half, v - bottom), 0.0)
    return np.hypot(du, dv) - radius + inside


def segment_distance(u, v, start: tuple[float, float], end: tuple[float, float]) -> np.ndarray:
    du, dv = end[0] - start[0], end[1] - start[1]
    t = np.clip(((u - start[0]) * du + (v - start[1]) * dv) / (du * du + dv * dv), 0.0, 1.0)
    return np.hypot(u - start[0] - t * du, v - start[1] - t * dv)


def skin_colour(looks: dict) -> np.ndarray:
    base = _DARK_SKIN + looks["skin_light"] ** 0.8 * (_LIGHT_SKIN - _DARK_SKIN)
    return base + np.array([16.0, 0.0, -16.0]) * (2.0 * looks["skin_warm"] - 1.0)


def hair_colour(looks: dict) -> np.ndarray:
    h = looks["hair_light"]
    base = np.array([np.interp(h, [0.0, 0.5, 1.0], _HAIR_STOPS[:, c]) for c in range(3)])
    base += max(0.0, 2.0 * looks["hair_red"] - 1.1) * (_AUBURN - base) * min(1.0, 3.0 * h)
    return base + looks["grey"] * (_GREY_HAIR - base)


def iris_colour(looks: dict) -> np.ndarray:
    light = looks["iris_light"] ** 1.5
    cool = _BLUE_IRIS + looks["iris_green"] * (_GREEN_IRIS - _BLUE_IRIS)
    return _BROWN_IRIS + light * (cool - _BROWN_IRIS)

"""The head: long hair behind it, neck and clothes, ears, face skin, skin marks and the hair cap.

Drawn in face coordinates (u, v): x right, y down, lengths in image half-widths at scale 1.
"""

from __future__ import annotations

import math

import numpy as np

from kinship.synth.drawing import (
    ellipse,
    extent,
    hair_colour,
    paint,
    rounded_box,
    skin_colour,
    soft,
)


def head_distance(u: np.ndarray, v: np.ndarray, looks: dict) -> np.ndarray:
    """Signed distance to the face outline: an ellipse whose lower half narrows to the jaw."""
    a, b = looks["face_width"], looks["face_height"]
    t = np.clip(v / b, 0.0, 1.0)
    width = a * (1.0 - (1.0 - looks["jaw_width"]) * t ** looks["chin_shape"])
    return (np.hypot(u / width, v / b) - 1.0) * a


def _hair_texture(u: np.ndarray, v: np.ndarray, looks: dict) -> np.ndarray:
    """Strands fanning out from the crown; curly hair gets a finer, wavier pattern."""
    crown_v = v + 0.9 * looks["face_height"]
    crown_u = u - 0.3 * looks["hair_part"] * looks["face_width"]
    theta, radius = np.arctan2(crown_u, crown_v), np.hypot(crown_u, crown_v)
    curl = looks["hair_curl"]
    phase = (24.0 + 30.0 * curl) * theta + 2.5 * curl * np.sin(radius * (14.0 + 30.0 * curl))
    return 1.0 + (0.04 + 0.06 * curl) * np.sin(phase)


def _paint_hair(canvas, u, v, looks, alpha) -> None:
    box = extent(alpha)
    if box is None:
        return
    colour = hair_colour(looks).astype(np.float32) * _hair_texture(u[box], v[box], looks)[..., None]
    paint(canvas[box], alpha[box], colour)


def draw_head(canvas, u, v, looks: dict, cond: dict, edge: float) -> dict:
    """Long hair behind, neck, clothes, ears and the face skin; returns masks for later parts."""
    a, b = looks["face_width"], looks["face_height"]
    skin = skin_colour(looks)
    mask = np.zeros_like(u)
    if looks["long_hair"]:
        half, bottom = a * (1.12 + 0.18 * looks["hair_volume"]), b * looks["hair_length"]
        alpha = soft(rounded_box(u, v, half, bottom, 0.15), edge)
        _paint_hair(canvas, u, v, looks, alpha)
        mask = np.maximum(mask, alpha)
    neck = soft(np.maximum(np.abs(u) - a * 0.46, b * 0.3 - v), edge)
    paint(canvas, neck, skin * 0.78)
    collar = b * 0.98 + 0.3 * np.clip(1.0 - np.abs(u) / (a * 0.8), 0.0, 1.0)
    paint(canvas, soft(collar - v, edge), cond["clothes"])
    mask = np.maximum(mask, neck)
    ears = _draw_ears(canvas, u, v, looks, skin, edge)
    face = soft(head_distance(u, v, looks), edge)
    paint(canvas, face, skin)
    return {"mask": np.maximum.reduce([mask, ears, face]), "face": face, "skin": skin}


def _draw_ears(canvas, u, v, looks, skin, edge) -> np.ndarray:
    a, b, ey = looks["face_width"], looks["face_height"], looks["eye_height"]
    size = looks["ear_size"]
    side_u = a * math.sqrt(max(0.0, 1.0 - (ey / b) ** 2)) * 0.98
    total = np.zeros_like(u)
    for side in (-1.0, 1.0):
        cu, cv = side * side_u, ey + 0.06
        ear = soft(ellipse(u, v, cu, cv, 0.06 * size, 0.115 * size), edge)
        paint(canvas, ear, skin * 0.92)
        inner = soft(ellipse(u, v, cu + side * 0.008, cv, 0.028 * size, 0.07 * size), edge)
        paint(canvas, 0.6 * inner, skin * 0.68)
        total = np.maximum(total, ear)
    return total


def skin_marks_box(looks: dict) -> tuple[float, float, float, float]:
    """Face-coordinate box of the forehead and cheeks (wrinkles, cheek shadows, freckles)."""
    half = looks["face_width"]
    return -half, half, looks["hairline"] - 0.02, looks["eye_height"] + 0.3


def draw_skin_marks(canvas, u, v, looks: dict, edge: float) -> None:
    """Cheekbone shadows, freckles and forehead lines, drawn on the skin before the hair."""
    skin = skin_colour(looks)
    _draw_cheeks(canvas, u, v, looks, skin)
    _draw_freckles(canvas, u, v, looks, looks["eye_height"])
    _draw_forehead_lines(canvas, u, v, looks, skin, edge)


def _draw_cheeks(canvas, u, v, looks, skin) -> None:
    a, ey = looks["face_width"], looks["eye_height"]
    for side in (-1.0, 1.0):
        d = ellipse(u, v, side * a * 0.6, ey + 0.19, 0.11, 0.065)
        paint(canvas, 0.25 * looks["cheek"] * np.clip(-d / 0.05, 0.0, 1.0), skin * 0.72)


def _draw_freckles(canvas, u, v, looks, ey) -> None:
    count = int(max(0.0, looks["freckles"] - 0.55) * 90)
    if count == 0:
        return
    spots = np.random.default_rng(int(looks["freckle_seed"]))  # same layout in every photo
    du = spots.uniform(-0.33, 0.33, count).astype(np.float32)[:, None, None, None]
    dv = spots.uniform(ey + 0.04, ey + 0.24, count).astype(np.float32)[:, None, None, None]
    density = np.exp(-((u - du) ** 2 + (v - dv) ** 2) / (2 * 0.011**2)).sum(axis=0)
    paint(canvas, 0.45 * np.clip(density, 0.0, 1.0), np.array([120.0, 70.0, 45.0]))


def _draw_forehead_lines(canvas, u, v, looks, skin, edge) -> None:
    if looks["wrinkles"] <= 0.0:
        return
    top, bottom = looks["hairline"], looks["eye_height"] - 0.13
    for k in range(3):
        vk = top + (bottom - top) * (0.3 + 0.22 * k)
        d = np.maximum(np.abs(v - vk - 0.012 * np.sin(6.0 * u)) - 0.004, np.abs(u) - 0.22)
        paint(canvas, 0.45 * looks["wrinkles"] * soft(d, edge), skin * 0.68)


def draw_hair(canvas, u, v, looks: dict, person: dict, edge: float) -> None:
    """The hair cap: inside the hair outline, above the hairline or beside the face."""
    a, b, ey = looks["face_width"], looks["face_height"], looks["eye_height"]
    vol = looks["hair_volume"]
    outline = ellipse(u, v, 0.0, -b * 0.18, a * (1.1 + 0.16 * vol), b * (0.95 + 0.12 * vol))
    curve = looks["hairline"] + 0.45 * b * (u / a) ** 2 + 0.06 * looks["hair_part"] * u / a
    alpha = soft(outline, edge) * np.maximum(soft(v - curve, edge), 1.0 - person["face"])
    if not looks["long_hair"]:
        alpha *= soft(v - (ey - 0.02), edge)  # short hair stops above the ears
    _paint_hair(canvas, u, v, looks, alpha)
    person["mask"] = np.maximum(person["mask"], alpha)

"""Draw face photos with numpy: a person's looks under each photo's own random conditions.

Coordinates: the image spans [-1, 1] on both axes (y down). Each photo places the face with its
own rotation, offset and scale, so every part is drawn in face coordinates (u, v). Parts are
soft-edged masks composited back to front; light, colour cast, noise, blur and JPEG quality are
drawn per photo, never per person or family.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageFilter

from kinship.synth.features import (
    draw_eyes,
    draw_lower_face,
    draw_nose,
    eyes_box,
    mouth_box,
    nose_box,
)
from kinship.synth.head import draw_hair, draw_head, draw_skin_marks, skin_marks_box

_CENTRE_Y = 0.02  # where an unshifted face centre sits in the image
_ZOOM = 1.12  # face size in the frame at scale 1


def photo_conditions(rng: np.random.Generator, difficulty: float) -> dict[str, float | np.ndarray]:
    """Everything that varies from one photo of a person to the next (pose, light, camera)."""
    d, capped = difficulty, min(1.0, difficulty)
    azimuth = rng.uniform(0.0, 2.0 * np.pi)
    slant = rng.uniform(0.2, 0.9) * capped
    return {
        "angle": float(np.clip(rng.normal(0.0, 0.05 * d), -0.25, 0.25)),
        "shift_x": float(rng.normal(0.0, 0.025 * d)),
        "shift_y": float(rng.normal(0.0, 0.025 * d)),
        "scale": float(_ZOOM * np.exp(rng.normal(0.0, 0.05 * d))),
        "yaw": float(np.clip(rng.normal(0.0, 0.3 * d), -1.0, 1.0)),
        "smile": float(rng.uniform(-0.2, 1.0) * capped),
        "mouth_open": float(rng.uniform(0.3, 1.0) * (rng.random() < 0.3 * capped)),
        "eye_open": float(1.0 - 0.45 * capped * rng.beta(1.0, 3.0)),
        "gaze_x": float(rng.normal(0.0, 0.25 * capped)),
        "gaze_y": float(rng.normal(0.0, 0.25 * capped)),
        "light_x": float(np.cos(azimuth) * slant),
        "light_y": float(np.sin(azimuth) * slant),
        "light_strength": float(rng.uniform(0.1, 0.4) * min(2.0, d)),
        "brightness": float(np.exp(rng.normal(0.0, 0.15 * d))),
        "contrast": float(np.exp(rng.normal(0.0, 0.15 * d))),
        "noise": float(rng.uniform(0.0, 5.0 * d)),
        "blur": float(rng.uniform(0.0, 0.7 * d)),
        "quality": int(rng.integers(max(30, round(95 - 45 * d)), 96)),
        "gain": 1.0 + rng.normal(0.0, 0.05 * d, 3),
        "clothes": rng.uniform(20.0, 235.0, 3),
    }


def render_photos(
    looks: dict[str, float], size: int, difficulty: float, rngs: list[np.random.Generator]
) -> list[tuple[np.ndarray, int]]:
    """Photos of one person, one per random stream: (size×size×3 uint8, JPEG quality) each.

    All photos of a person are drawn at once (a leading batch axis), so numpy's per-call cost
    is paid once per person; each photo still draws everything from its own stream.
    """
    conds = [photo_conditions(rng, difficulty) for rng in rngs]
    cond = _stack(conds)
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
    x, y = np.meshgrid(coords, coords)
    u, v = _face_coordinates(x, y, cond)
    edge = 2.4 / size / cond["scale"]  # soft-edge width: a little over one pixel
    canvas = np.stack([_background(size, difficulty, rng) for rng in rngs])
    person = draw_head(canvas, u, v, looks, cond, edge)
    rows, cols = _window(skin_marks_box(looks), cond, size)
    draw_skin_marks(canvas[:, rows, cols], u[:, rows, cols], v[:, rows, cols], looks, edge)
    draw_hair(canvas, u, v, looks, person, edge)
    for draw, box in ((draw_eyes, eyes_box), (draw_nose, nose_box), (draw_lower_face, mouth_box)):
        rows, cols = _window(box(looks, cond), cond, size)
        draw(canvas[:, rows, cols], u[:, rows, cols], v[:, rows, cols], looks, cond, edge)
    _light(canvas, u, v, looks, cond, person["mask"])
    return [(_camera(canvas[k], conds[k], rng), conds[k]["quality"]) for k, rng in enumerate(rngs)]


def _stack(conds: list[dict]) -> dict[str, np.ndarray]:
    """Per-photo conditions -> float32 arrays with a batch axis that broadcasts over pixels."""
    stacked = {}
    for key in conds[0]:
        values = np.array([c[key] for c in conds], dtype=np.float32)
        stacked[key] = values.reshape(len(conds), 1, 1, *values.shape[1:])
    return stacked


def encode_jpeg(photo: np.ndarray, quality: int) -> bytes:
    """JPEG bytes of a photo (no metadata, so the same pixels give the same bytes)."""
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _window(box: tuple[float, float, float, float], cond: dict, size: int) -> tuple[slice, slice]:
    """Pixel rows and columns that hold a face-coordinate box (u0, u1, v0, v1) in every photo."""
    u0, u1, v0, v1 = box
    corners_u, corners_v = np.array([u0, u1, u0, u1]), np.array([v0, v0, v1, v1])
    cos, sin, scale = np.cos(cond["angle"]), np.sin(cond["angle"]), cond["scale"]
    x = cond["shift_x"] + scale * (cos * corners_u - sin * corners_v)
    y = _CENTRE_Y + cond["shift_y"] + scale * (sin * corners_u + cos * corners_v)
    to_pixel = lambda t: (t + 1.0) / 2.0 * size  # noqa: E731
    c0, c1 = int(max(0, np.floor(to_pixel(x.min())) - 2)), int(np.ceil(to_pixel(x.max())) + 2)
    r0, r1 = int(max(0, np.floor(to_pixel(y.min())) - 2)), int(np.ceil(to_pixel(y.max())) + 2)
    return slice(r0, min(r1, size)), slice(c0, min(c1, size))


def _face_coordinates(x: np.ndarray, y: np.ndarray, cond: dict) -> tuple[np.ndarray, np.ndarray]:
    """Image coordinates -> face coordinates (rotation about the face centre, then scale)."""
    dx, dy = x - cond["shift_x"], y - (_CENTRE_Y + cond["shift_y"])
    cos, sin = np.cos(cond["angle"]), np.sin(cond["angle"])
    return (cos * dx + sin * dy) / cond["scale"], (-sin * dx + cos * dy) / cond["scale"]


def _background(size: int, difficulty: float, rng: np.random.Generator) -> np.ndarray:
    """A gradient between two colours with a few out-of-focus blobs (clutter).

    Drawn on a coarse grid and smoothly enlarged: it is out of focus anyway, and cheap so."""
    coarse = max(8, size // 4)
    coords = (np.arange(coarse, dtype=np.float32) + 0.5) / coarse * 2.0 - 1.0
    x, y = np.meshgrid(coords, coords)
    strength = min(1.0, difficulty)
    grey = np.full(3, 128.0, dtype=np.float32)
    c1, c2 = (grey + strength * (_muted_colour(rng) - grey) for _ in range(2))
    angle = rng.uniform(0.0, 2.0 * np.pi)
    t = np.clip(0.5 + 0.5 * (x * math.cos(angle) + y * math.sin(angle)), 0.0, 1.0)[..., None]
    canvas = c1 + t * (c2 - c1)
    for _ in range(int(rng.integers(0, 4))):
        cx, cy, rx, ry = rng.uniform([-1.0, -1.0, 0.15, 0.15], [1.0, 1.0, 0.6, 0.6]).tolist()
        dist = np.hypot((x - cx) / rx, (y - cy) / ry)
        alpha = strength * rng.uniform(0.3, 0.9) * np.clip(1.5 - dist, 0.0, 1.0)
        canvas += alpha[..., None] * (_muted_colour(rng) - canvas)
    small = Image.fromarray(np.clip(canvas, 0.0, 255.0).astype(np.uint8))
    return np.asarray(small.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)


def _muted_colour(rng: np.random.Generator) -> np.ndarray:
    """A random colour, half-way to its own grey (rooms are rarely saturated)."""
    colour = rng.uniform(15.0, 240.0, 3).astype(np.float32)
    return 0.5 * colour + 0.5 * colour.mean()


def _light(
    canvas: np.ndarray, u: np.ndarray, v: np.ndarray, looks: dict, cond: dict, mask: np.ndarray
) -> None:
    """Directional light on the person, treating the head as an ellipsoid."""
    nx = u / (looks["face_width"] * 1.25)
    ny = (v + 0.05) / (looks["face_height"] * 1.2)
    nz = np.sqrt(np.clip(1.0 - nx**2 - ny**2, 0.0, 1.0))
    lx, ly = cond["light_x"], cond["light_y"]
    norm = np.sqrt(lx**2 + ly**2 + 1.0)
    lambert = np.clip((nx * lx + ny * ly + nz) / norm, 0.0, 1.0)
    k = cond["light_strength"]
    shade = (1.0 - k) + k * 1.25 * lambert
    canvas *= (1.0 + mask * (shade - 1.0))[..., None]


def _camera(canvas: np.ndarray, cond: dict, rng: np.random.Generator) -> np.ndarray:
    """Colour cast, exposure, contrast, blur and sensor noise of this photo."""
    gain = cond["gain"].astype(np.float32) * (cond["brightness"] * cond["contrast"])
    img = canvas * gain
    img += 127.5 * (1.0 - cond["contrast"])
    img = np.clip(img, 0.0, 255.0).astype(np.uint8)
    if cond["blur"] > 0.05:
        blurred = Image.fromarray(img).filter(ImageFilter.GaussianBlur(cond["blur"]))
        img = np.asarray(blurred)
    noisy = img + cond["noise"] * rng.standard_normal(img.shape, dtype=np.float32)
    return np.clip(noisy, 0.0, 255.0).astype(np.uint8)

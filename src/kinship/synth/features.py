"""Eyes, brows, nose and the lower face (beard, smile folds, lips, mouth), in face coordinates.

Shapes come from the person's looks (inherited traits); expression, gaze and yaw from each
photo's conditions. Each part also gives the face-coordinate box it is drawn in.
"""

from __future__ import annotations

import numpy as np

from kinship.synth.drawing import (
    ellipse,
    hair_colour,
    iris_colour,
    paint,
    segment_distance,
    skin_colour,
    soft,
)
from kinship.synth.head import head_distance

_SCLERA = np.array([238.0, 234.0, 228.0])
_LASH = np.array([30.0, 22.0, 22.0])
_PUPIL = np.array([12.0, 10.0, 10.0])
_MOUTH_INSIDE = np.array([70.0, 22.0, 28.0])
_TEETH = np.array([232.0, 228.0, 215.0])


def eyes_box(looks: dict, cond: dict) -> tuple[float, float, float, float]:
    """Face-coordinate box (u0, u1, v0, v1) holding both eyes and brows."""
    half = looks["eye_spacing"] + 1.6 * looks["eye_width"] + 0.1 * _largest_yaw(cond) + 0.05
    top = looks["eye_height"] - looks["eye_width"] - looks["brow_gap"] - looks["brow_arch"] - 0.12
    return -half, half, top, looks["eye_height"] + looks["eye_width"] + 0.06


def nose_box(looks: dict, cond: dict) -> tuple[float, float, float, float]:
    half = looks["nose_width"] + 0.15 * _largest_yaw(cond) + 0.05
    bottom = looks["eye_height"] + looks["nose_length"] + 0.06
    return -half, half, looks["eye_height"], bottom


def _largest_yaw(cond: dict) -> float:
    return float(np.max(np.abs(cond["yaw"])))


def mouth_box(looks: dict, cond: dict) -> tuple[float, float, float, float]:
    """The lower face from the nose wings down (beard, folds, mouth, chin shadow)."""
    half = looks["face_width"] + 0.02
    top = looks["eye_height"] + looks["nose_length"] - 0.05
    return -half, half, top, looks["face_height"] + 0.03


def draw_eyes(canvas, u, v, looks: dict, cond: dict, edge: float) -> None:
    """Eye sockets, whites, irises, pupils, lids and brows."""
    ex, ew = looks["eye_spacing"], looks["eye_width"]
    eh = ew * looks["eye_open"] * cond["eye_open"] * (1.0 - 0.2 * np.maximum(cond["smile"], 0.0))
    skin = skin_colour(looks)
    for side in (-1.0, 1.0):
        cu = side * ex + 0.08 * cond["yaw"]
        p = side * (u - cu)  # positive towards the outer corner, for both eyes
        q = v - looks["eye_height"] + looks["eye_tilt"] * p
        socket = ellipse(u, v, cu, looks["eye_height"] - 0.01, ew * 1.5, ew * 0.9 + 0.02)
        paint(canvas, 0.16 * np.clip(-socket / 0.05, 0.0, 1.0), skin * 0.7)
        pn = np.clip(p / ew, -1.0, 1.0)
        upper = -eh * (1.0 - pn**2) * (1.0 + 0.15 * pn)
        lower = 0.55 * eh * (1.0 - pn**2)
        white = soft(np.maximum.reduce([upper - q, q - lower, np.abs(p) - ew]), edge * 0.7)
        paint(canvas, white, _SCLERA)
        _draw_iris(canvas, u, v, cu, looks, cond, white, eh, edge)
        lid = np.maximum(np.abs(q - upper) - 0.011, np.abs(p) - ew * 1.05)
        paint(canvas, 0.9 * soft(lid, edge), _LASH)
        crease = np.maximum(np.abs(q - upper + 0.035 * (1 - pn**2)) - 0.004, np.abs(p) - ew * 0.9)
        paint(canvas, 0.4 * soft(crease, edge), skin * 0.65)
        _draw_brow(canvas, u, v, p, looks, edge)


def _draw_iris(canvas, u, v, cu, looks, cond, white, eh, edge) -> None:
    ew = looks["eye_width"]
    iu = cu + cond["gaze_x"] * ew * 0.35
    iv = looks["eye_height"] + cond["gaze_y"] * eh * 0.3 - 0.1 * eh
    radius = ew * 0.5
    ring = np.clip(np.hypot(u - iu, v - iv) / radius, 0.0, 1.0)
    colour = iris_colour(looks) * (1.15 - 0.4 * ring)[..., None]
    paint(canvas, white * soft(ellipse(u, v, iu, iv, radius, radius), edge), colour)
    pupil = soft(ellipse(u, v, iu, iv, radius * 0.42, radius * 0.42), edge)
    paint(canvas, white * pupil, _PUPIL)


def _draw_brow(canvas, u, v, p, looks, edge) -> None:
    ew = looks["eye_width"]
    width = ew * 1.35
    pb = p - 0.1 * ew
    pn = np.clip(pb / width, -1.0, 1.0)
    top_of_eye = looks["eye_height"] - ew * looks["eye_open"]
    centre = top_of_eye - looks["brow_gap"] - 0.02 - looks["brow_arch"] * (1.0 - pn**2)
    centre = centre - 0.06 * looks["brow_tilt"] * pn
    thick = looks["brow_thick"] * (1.0 - 0.45 * (pn + 1.0) / 2.0)
    d = np.maximum(np.abs(v - centre) - thick, np.abs(pb) - width)
    paint(canvas, 0.9 * soft(d, edge), hair_colour(looks) * 0.55 + skin_colour(looks) * 0.1)


def draw_nose(canvas, u, v, looks: dict, cond: dict, edge: float) -> None:
    """Bridge shadows, nose tip, wings, nostrils and the shadow under the nose."""
    skin = skin_colour(looks)
    nw, top = looks["nose_width"], looks["eye_height"] + 0.02
    bottom = looks["eye_height"] + looks["nose_length"]
    nu = u - 0.12 * cond["yaw"]
    t = np.clip((v - top) / (bottom - top), 0.0, 1.0)
    for side in (-1.0, 1.0):
        line = np.abs(nu - side * nw * (0.18 + 0.2 * t)) - 0.008
        d = np.maximum.reduce([line, top - v, v - (bottom - 0.04)])
        paint(canvas, 0.22 * soft(d, edge * 2.0), skin * 0.7)
        wing = ellipse(nu, v, side * nw * 0.48, bottom - 0.022, nw * 0.26, 0.03)
        d = np.maximum(np.abs(wing) - 0.005, v - bottom)
        paint(canvas, 0.55 * soft(d, edge), skin * 0.6)
        nostril = ellipse(nu, v, side * nw * 0.2, bottom - 0.004, nw * 0.13, 0.011)
        paint(canvas, 0.8 * soft(nostril, edge), skin * 0.3)
    tip = ellipse(nu, v, 0.0, bottom - 0.035, nw * 0.3 * looks["nose_tip"], 0.03)
    paint(canvas, 0.3 * np.clip(-tip / 0.03, 0.0, 1.0), np.minimum(skin * 1.12, 255.0))
    under = ellipse(nu, v, 0.0, bottom + 0.018, nw * 0.42, 0.016)
    paint(canvas, 0.35 * soft(under, edge * 2.0), skin * 0.72)


def draw_lower_face(canvas, u, v, looks: dict, cond: dict, edge: float) -> None:
    """Beard, smile folds, lips, open mouth and the chin shadow."""
    nose_bottom = looks["eye_height"] + looks["nose_length"]
    mw = looks["mouth_width"] * (1.0 + 0.12 * cond["smile"])
    my = nose_bottom + looks["mouth_gap"] * 0.75
    mu = u - 0.1 * cond["yaw"]
    _draw_beard(canvas, u, v, looks, nose_bottom, edge)
    _draw_folds(canvas, mu, v, looks, cond, nose_bottom, mw, my, edge)
    _draw_mouth(canvas, mu, v, looks, cond, mw, my, edge)
    chin = ellipse(mu, v, 0.0, my + looks["lip_lower"] + 0.06, mw * 0.55, 0.022)
    paint(canvas, 0.2 * np.clip(-chin / 0.03, 0.0, 1.0), skin_colour(looks) * 0.7)


def _draw_mouth(canvas, mu, v, looks, cond, mw, my, edge) -> None:
    """Lips curved by the resting mouth shape and the smile; teeth when the mouth is open."""
    skin = skin_colour(looks)
    pn = np.clip(mu / mw, -1.0, 1.0)
    q = v - my + (0.02 * looks["mouth_curve"] + 0.035 * cond["smile"]) * pn**2
    shape = 1.0 - pn**2
    gap = 0.03 * cond["mouth_open"] * shape
    across = np.abs(mu) - mw
    cupid = 1.0 - 0.35 * np.exp(-((mu / 0.03) ** 2))
    lip = skin * np.array([0.8, 0.52, 0.52]) + np.array([38.0, 6.0, 12.0])
    up = np.maximum.reduce([-gap / 2 - looks["lip_upper"] * shape * cupid - q, q + gap / 2, across])
    low = np.maximum.reduce([gap / 2 - q, q - gap / 2 - looks["lip_lower"] * shape, across])
    paint(canvas, soft(np.minimum(up, low), edge), lip)
    inside = np.maximum(np.abs(q) - gap / 2, across)
    paint(canvas, soft(inside, edge * 0.7), _MOUTH_INSIDE)
    paint(canvas, soft(np.maximum(inside, q + gap * 0.05), edge * 0.7), _TEETH)
    line = np.maximum(np.abs(q) - 0.004, across + 0.01)
    paint(canvas, 0.7 * soft(line, edge), skin * 0.35)


def _draw_beard(canvas, u, v, looks, nose_bottom, edge) -> None:
    if looks["beard"] <= 0.0:
        return
    region = soft(head_distance(u, v, looks), edge) * soft(nose_bottom + 0.03 - v, edge * 3.0)
    paint(canvas, 0.8 * looks["beard"] * region, hair_colour(looks) * 0.8)


def _draw_folds(canvas, mu, v, looks, cond, nose_bottom, mw, my, edge) -> None:
    """Nasolabial folds: deeper with age and with a smile."""
    depth = 0.12 + 0.35 * looks["wrinkles"] + 0.25 * np.maximum(cond["smile"], 0.0)
    skin = skin_colour(looks)
    for side in (-1.0, 1.0):
        start = (side * looks["nose_width"] * 0.62, nose_bottom - 0.01)
        end = (side * mw * 1.15, my + 0.035)
        d = segment_distance(mu, v, start, end) - 0.005
        paint(canvas, depth * soft(d, edge * 1.5), skin * 0.7)

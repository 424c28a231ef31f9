"""Heritable facial traits: a standard-normal genome per person, inherited from both parents.

A genome holds one z-score per trait. A child takes, trait by trait, a random mix of the two
parents' values (so a child may take after one parent more than the other), rescaled so that the
population variance stays 1 in every generation, plus a fresh mutation. `phenotype` maps a
genome, sex and age to the physical drawing parameters the renderer reads.
"""

from __future__ import annotations

import numpy as np

# trait name -> (value at z = -inf, value at z = +inf); lengths in face units (image half-width)
TRAITS: dict[str, tuple[float, float]] = {
    "face_width": (0.46, 0.64),
    "face_height": (0.64, 0.82),
    "jaw_width": (0.45, 0.92),
    "chin_shape": (0.9, 2.6),
    "hairline": (-0.62, -0.36),
    "hair_volume": (0.0, 1.0),
    "hair_part": (-1.0, 1.0),
    "hair_curl": (0.0, 1.0),
    "hair_light": (0.0, 1.0),
    "hair_red": (0.0, 1.0),
    "skin_light": (0.0, 1.0),
    "skin_warm": (0.0, 1.0),
    "eye_spacing": (0.19, 0.3),
    "eye_height": (-0.16, 0.02),
    "eye_width": (0.085, 0.14),
    "eye_open": (0.28, 0.62),
    "eye_tilt": (-0.3, 0.3),
    "iris_light": (0.0, 1.0),
    "iris_green": (0.0, 1.0),
    "brow_gap": (0.02, 0.10),
    "brow_thick": (0.014, 0.042),
    "brow_arch": (-0.01, 0.06),
    "brow_tilt": (-0.25, 0.25),
    "nose_length": (0.16, 0.32),
    "nose_width": (0.1, 0.19),
    "nose_tip": (0.5, 1.5),
    "mouth_width": (0.15, 0.27),
    "mouth_gap": (0.06, 0.18),
    "lip_upper": (0.015, 0.05),
    "lip_lower": (0.02, 0.065),
    "mouth_curve": (-0.6, 0.6),
    "ear_size": (0.7, 1.3),
    "cheek": (0.0, 1.0),
    "freckles": (0.0, 1.0),
}
TRAIT_NAMES = tuple(TRAITS)
N_TRAITS = len(TRAITS)
_LOW = np.array([lo for lo, _ in TRAITS.values()])
_HIGH = np.array([hi for _, hi in TRAITS.values()])
# variance of w*a + (1-w)*b for independent unit a, b and w ~ U(0, 1): E[w^2 + (1-w)^2] = 2/3
_MIX_VARIANCE = 2.0 / 3.0
BASE_MUTATION = 0.3  # share of a child's trait z-score that is new, at difficulty 1


def founder_genome(rng: np.random.Generator) -> np.ndarray:
    """A genome drawn from the population (someone whose parents are not in the data)."""
    return rng.standard_normal(N_TRAITS)


def child_genome(
    mother: np.ndarray, father: np.ndarray, difficulty: float, rng: np.random.Generator
) -> np.ndarray:
    """Inherit every trait from a random mix of both parents, then mutate it."""
    weight = rng.uniform(0.0, 1.0, N_TRAITS)
    inherited = (weight * mother + (1.0 - weight) * father) / np.sqrt(_MIX_VARIANCE)
    mutation = min(1.0, BASE_MUTATION * difficulty)
    return np.sqrt(1.0 - mutation**2) * inherited + mutation * rng.standard_normal(N_TRAITS)


def phenotype(genome: np.ndarray, sex: str, age: float) -> dict[str, float]:
    """Physical drawing parameters of one person: traits, then sex and age adjustments."""
    share = 1.0 / (1.0 + np.exp(-1.7 * genome))  # about the normal CDF of each z-score
    traits = dict(zip(TRAIT_NAMES, (_LOW + (_HIGH - _LOW) * share).tolist(), strict=True))
    male = sex == "M"
    traits["jaw_width"] *= 1.08 if male else 0.94
    traits["brow_thick"] *= 1.3 if male else 0.8
    traits["lip_upper"] *= 0.8 if male else 1.15
    traits["lip_lower"] *= 0.85 if male else 1.15
    traits["face_width"] *= 1.03 if male else 0.98
    traits["grey"] = float(np.clip((age - 45.0) / 30.0, 0.0, 0.9))
    traits["wrinkles"] = float(np.clip((age - 38.0) / 40.0, 0.0, 1.0))
    return traits

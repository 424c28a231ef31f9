"""Is this pair related? The trained pipeline applied to two photos, exactly as to the test pairs.

`Predictor.load()` reads the artefacts behind `submission.csv` — every fold checkpoint of every
member of the fitted ensemble, the ensemble and its calibrator — once, and `predict` scores a
pair of photos (bytes or paths) the way the train and ensemble stages scored the test pairs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class FaceResult:
    """What was scored for one photo: the face crop the members saw (at the training images'
    size, uint8 RGB), its box in the photo (x0, y0, x1, y1; None with `detect=False`), how many
    faces the detector found, and its confidence in the chosen one."""

    crop: np.ndarray
    box: tuple[float, float, float, float] | None
    faces_found: int
    confidence: float | None


@dataclass(frozen=True)
class PairPrediction:
    """The calibrated ensemble probability that the two people are related, each member's
    probability (mean over its fold models, as in its test table), the faces, and notes (e.g.
    several faces found: the largest was used)."""

    probability: float
    members: dict[str, float]
    faces: tuple[FaceResult, FaceResult]
    method: str
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "probability": self.probability,
            "members": dict(self.members),
            "ensemble_method": self.method,
            "faces": [
                {
                    "box": None if f.box is None else [round(float(v), 1) for v in f.box],
                    "faces_found": f.faces_found,
                    "confidence": f.confidence,
                }
                for f in self.faces
            ],
            "notes": list(self.notes),
        }

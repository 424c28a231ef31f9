"""What every request handler reads, fixed when the app is built: the predictor, its training
summary and its limits (the app keeps no other state); and what both the page and the API do
with them."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import flask
import numpy as np
from PIL import Image

from kinship.photos import PhotoLimits
from kinship.serve.uploads import PHOTO_FIELDS, Upload


@dataclass(frozen=True)
class Service:
    """The loaded predictor (`kinship.predictor.Predictor`: thread-safe), `predictor.info()`
    read once, and `predictor.limits`."""

    predictor: object
    info: dict
    limits: PhotoLimits

    def predict(self, photos: dict[str, Upload], detect: bool):
        """The PairPrediction for the uploaded photos; a PhotoError names the field."""
        data = (photos[name].data for name in PHOTO_FIELDS)
        return self.predictor.predict(*data, detect=detect, names=PHOTO_FIELDS)


def service() -> Service:
    """The current app's Service."""
    return flask.current_app.extensions["kinship"]


def png_base64(crop: np.ndarray) -> str:
    """A uint8 RGB image as base64 PNG."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(crop, dtype=np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")

"""For the web app's tests: a fake predictor with the real one's methods, licence-clean test photos
(scikit-image's sample images, encoded in memory), a small checker for the OpenAPI document's
schemas, and a `kinship serve` process on a free port."""

from __future__ import annotations

import contextlib
import io
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

from kinship.photos import NoFaceError, PhotoLimits, photo_bytes, read_photo
from kinship.predictor import FaceResult, PairPrediction

# --- photos ------------------------------------------------------------------------------------


def encode(image: np.ndarray, fmt: str = "JPEG", **options) -> bytes:
    """An RGB (or grey) uint8 array as image-file bytes, in memory."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def rgb(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 3 else np.stack([image] * 3, axis=-1)


def sample(name: str) -> np.ndarray:
    """A scikit-image sample image as uint8 RGB: astronaut and camera show one face each,
    coffee and chelsea (a cat) none."""
    import skimage.data

    return rgb(getattr(skimage.data, name)())


def noise_png(n_bytes: int, seed: int = 0) -> bytes:
    """A PNG of random pixels (incompressible) of about `n_bytes`."""
    side = int(np.sqrt(n_bytes / 3)) + 1
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    return encode(pixels, "PNG", compress_level=0)


# --- a fake predictor --------------------------------------------------------------------------


class FakePredictor:
    """`kinship.predictor.Predictor`'s methods without models: photos are read by
    `kinship.photos` (so the photo errors are the real ones), a photo of one flat colour has
    "no face", and the probability is a fixed function of the pixels. Records each call."""

    members = ("siamese_cnn", "facenet")

    def __init__(self, limits: PhotoLimits | None = None, synthetic: bool = True):
        self.limits = limits or PhotoLimits()
        self.synthetic = synthetic
        self.calls: list[dict] = []

    def predict(self, photo1, photo2, detect: bool = True, names=("photo1", "photo2")):
        self.calls.append({"detect": detect, "names": tuple(names)})
        images = [
            read_photo(photo_bytes(p, n)[0], n, self.limits)
            for p, n in zip((photo1, photo2), names, strict=True)
        ]
        for image, name in zip(images, names, strict=True):
            if image.min() == image.max():
                raise NoFaceError(name, "no face found (expected a photo of one person's face)")
        crops = [np.asarray(Image.fromarray(im).resize((24, 24))) for im in images]
        means = [float(c.mean()) / 255 for c in crops]
        members = {
            m: round(abs(means[0] - means[1]) / (i + 1), 6) for i, m in enumerate(self.members)
        }
        faces = tuple(
            FaceResult(crop, (0.0, 0.0, im.shape[1], im.shape[0]) if detect else None, 1, 0.99)
            for crop, im in zip(crops, images, strict=True)
        )
        notes = [f"{names[0]}: a fake prediction"]
        return PairPrediction(
            1 - sum(members.values()) / 2, members, faces, "stack_logistic", notes
        )

    def info(self) -> dict:
        return {
            "dataset": {
                "root": "data/synthetic",
                "synthetic": self.synthetic,
                "families": 120,
                "images": 2400,
            },
            "ensemble": {
                "method": "stack_logistic",
                "oof_auc": 0.686,
                "oof_auc_ci95": [0.652, 0.722],
                "holdout_auc": None,
            },
            "members": {
                m: {"model": m, "oof_auc": 0.6 + i / 100, "holdout_auc": None}
                for i, m in enumerate(self.members)
            },
            "detector": "mtcnn",
        }


# --- the OpenAPI document's schemas ------------------------------------------------------------

JSON_TYPES = {
    "object": dict, "array": list, "string": str, "integer": int, "number": (int, float),
    "boolean": bool, "null": type(None),
}  # fmt: skip


def schema_errors(value, schema: dict, document: dict, where: str = "$") -> list[str]:
    """Where `value` breaks `schema` (the JSON Schema subset the document uses: $ref, type,
    const, enum, required, properties, additionalProperties, items, min/max)."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        return schema_errors(value, document["components"]["schemas"][name], document, where)
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        if not any(_is_type(value, t) for t in types):
            return [f"{where}: {value!r} is not {types}"]
    errors = []
    if "const" in schema and value != schema["const"]:
        errors.append(f"{where}: {value!r} != {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} not in {schema['enum']}")
    number = _is_type(value, "number")
    if number and not schema.get("minimum", value) <= value <= schema.get("maximum", value):
        errors.append(f"{where}: {value} out of range")
    if isinstance(value, dict):
        errors += [
            f"{where}: missing {key}" for key in schema.get("required", []) if key not in value
        ]
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in properties:
                errors += schema_errors(item, properties[key], document, f"{where}.{key}")
            elif extra is False:
                errors.append(f"{where}: undocumented key {key}")
            elif isinstance(extra, dict):
                errors += schema_errors(item, extra, document, f"{where}.{key}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get(
            "maxItems", len(value)
        ):
            errors.append(f"{where}: {len(value)} items")
        for i, item in enumerate(value):
            errors += schema_errors(item, schema.get("items", {}), document, f"{where}[{i}]")
    return errors


def _is_type(value, name: str) -> bool:
    if isinstance(value, bool):  # a bool is an int in Python, not a number in JSON
        return name == "boolean"
    return isinstance(value, JSON_TYPES[name])


def response_schema(document: dict, path: str, method: str, status: int) -> dict:
    operation = document["paths"][path][method]
    return operation["responses"][str(status)]["content"]["application/json"]["schema"]


# --- a server process --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def kinship_serve(root: Path, env: dict[str, str], log: Path, timeout: float = 600):
    """`kinship serve` running in the workspace `root` on a free loopback port, its output in
    `log`; yields (base URL, process) once /healthz answers; terminated on exit."""
    port = free_port()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kinship.cli", "serve", "--port", str(port)],
            cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, log, timeout)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"kinship serve exited {proc.returncode}:\n{log.read_text()[-6000:]}"
            )
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                if json.load(response) == {"status": "ok"}:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"kinship serve not healthy after {timeout} s:\n{log.read_text()[-6000:]}")


def post_multipart(url: str, fields: dict[str, bytes | str], timeout: float = 300):
    """POST a multipart form with the standard library: (status, parsed JSON or text)."""
    boundary = "kinship-test-boundary-7f3a"
    parts = []
    for name, value in fields.items():
        if isinstance(value, bytes):
            head = f'Content-Disposition: form-data; name="{name}"; filename="{name}.img"\r\n'
            head += "Content-Type: application/octet-stream\r\n\r\n"
            parts.append(f"--{boundary}\r\n{head}".encode() + value + b"\r\n")
        else:
            head = f'Content-Disposition: form-data; name="{name}"\r\n\r\n'
            parts.append(f"--{boundary}\r\n{head}{value}\r\n".encode())
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        url, data=body, method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        text = err.read().decode(errors="replace")
        try:
            return err.code, json.loads(text)
        except json.JSONDecodeError:
            return err.code, text

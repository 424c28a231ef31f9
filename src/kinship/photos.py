"""User photos: read from bytes or a file, with limits, and the errors that name what is wrong.

Everything that accepts a photo from outside the pipeline (`kinship predict`, `kinship evaluate`,
`kinship serve`) reads it here. A photo is bytes in memory (or a file the user named on the command
line); it is never written anywhere. The limits guard against huge uploads and decompression
bombs: the byte size is checked before decoding and the pixel count from the header, before any
pixel is decoded.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MiB = 2**20


class PhotoError(ValueError):
    """A photo that cannot be used: empty, too large, not an image, corrupt, or without a face.
    `photo` names which one (a path or "photo 1"); the message says what was expected."""

    def __init__(self, photo: str, message: str):
        super().__init__(f"{photo}: {message}")
        self.photo = photo
        self.reason = message


class NoFaceError(PhotoError):
    """The face detector found no face in the photo."""


@dataclass(frozen=True)
class PhotoLimits:
    """What a photo may be: at most `max_bytes` encoded and `max_pixels` decoded."""

    max_bytes: int = 12 * MiB
    max_pixels: int = 40_000_000  # e.g. 7,300 × 5,500: larger than any phone camera's photo

    def __post_init__(self):
        if self.max_bytes < 1 or self.max_pixels < 1:
            raise ValueError(f"photo limits must be positive, got {self}")


def photo_bytes(source: bytes | str | Path, name: str | None = None) -> tuple[bytes, str]:
    """The encoded bytes of a photo given as bytes or as a path, and the name errors use."""
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source), name or "photo"
    path = Path(source)
    name = name or str(path)
    if not path.is_file():
        raise PhotoError(name, "no such file")
    return path.read_bytes(), name


def open_photo(data: bytes, name: str, limits: PhotoLimits = PhotoLimits()) -> Image.Image:
    """Check the limits and open the image lazily (header only): a PhotoError naming the photo
    when it is empty, too many bytes, not an image, or too many pixels."""
    if not data:
        raise PhotoError(name, "empty file (expected a JPEG, PNG or other image)")
    if len(data) > limits.max_bytes:
        raise PhotoError(
            name, f"{len(data) / MiB:.1f} MiB is over the limit of {limits.max_bytes / MiB:.0f} MiB"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        # PIL's own bomb check (far above ours) fires in the header, before we can count
        raise PhotoError(
            name, f"too many pixels: over the limit of {limits.max_pixels:,} pixels"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise PhotoError(name, "not an image PIL can read (expected a JPEG, PNG, ...)") from None
    width, height = img.size
    if width * height > limits.max_pixels:
        raise PhotoError(
            name, f"{width}×{height} pixels is over the limit of {limits.max_pixels:,} pixels"
        )
    return img


def read_photo(data: bytes, name: str, limits: PhotoLimits = PhotoLimits()) -> np.ndarray:
    """A whole photo as uint8 RGB (H, W, 3), turned upright by its EXIF orientation (as phones
    store them); a PhotoError naming it when it cannot be used."""
    img = open_photo(data, name, limits)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # limits checked
            img.load()
            img = ImageOps.exif_transpose(img)
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as err:
        raise PhotoError(name, f"corrupt or truncated image ({err})") from None

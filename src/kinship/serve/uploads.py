"""Reading the two uploaded photos from a multipart request: in memory only, with limits, and
errors that name the field.

Werkzeug's default parser spools any uploaded file over 500 KB to a temporary file; here every
file part is parsed into a `BytesIO` instead (`InMemoryRequest`), and the body is bounded before
parsing (`body_limit`), so a photo never touches the disk. The client's filename is kept only to
be shown, escaped, on the page; it never names anything on the server.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import flask

from kinship.photos import MiB, PhotoLimits

PHOTO_FIELDS = ("photo1", "photo2")
"""The file fields of both forms (the page's and the API's), in the predictor's order."""

FIELD_LIMIT = 256 * 1024
"""Bytes a non-file form field may hold. The options are a word each, but werkzeug also bounds
its parse buffer by this (it reads 64 KiB at a time), so it cannot be small."""

FORM_OVERHEAD = 64 * 1024
"""Room in a request body beyond the photos: multipart boundaries, part headers, option fields."""

MAX_PARTS = 16
"""Parts a multipart body may have (two photos and two options, with room for mistakes that
deserve a 400 naming the expected fields rather than a 413)."""

FILENAME_SHOWN = 80
"""Characters of a client's filename shown on the page."""


def body_limit(limits: PhotoLimits) -> int:
    """The most bytes a request body may have: both photos at their limit, plus the form."""
    return len(PHOTO_FIELDS) * limits.max_bytes + FORM_OVERHEAD


class InMemoryRequest(flask.Request):
    """A Flask request whose uploaded files are parsed into memory (`BytesIO`), never into a
    temporary file. Safe because the body is bounded by `MAX_CONTENT_LENGTH` before parsing."""

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> io.BytesIO:
        return io.BytesIO()


class UploadError(Exception):
    """A request that cannot be scored as sent: the HTTP status, the field at fault (None for
    the request as a whole) and a message saying what was expected."""

    def __init__(self, status: int, field: str | None, message: str):
        super().__init__(message)
        self.status = status
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Upload:
    """One uploaded photo: its bytes, and the client's filename (for display only)."""

    data: bytes
    filename: str

    @property
    def shown_name(self) -> str:
        """The filename as the page may show it (escaped by the template), shortened."""
        name = self.filename
        return name if len(name) <= FILENAME_SHOWN else name[: FILENAME_SHOWN - 1] + "…"


def read_form(
    request: flask.Request, options: tuple[str, ...], limits: PhotoLimits
) -> tuple[dict[str, Upload], dict[str, str]]:
    """The two photos (by field) and the option fields present (raw strings) of a multipart
    request with exactly the fields PHOTO_FIELDS + `options`; an UploadError otherwise."""
    expected = PHOTO_FIELDS + options
    # 1. a multipart form, with no field the handler does not read
    if request.mimetype != "multipart/form-data":
        raise UploadError(
            415,
            None,
            f"expected a multipart/form-data body (got {request.mimetype or 'none'}) with the "
            f"file fields {_listed(PHOTO_FIELDS)}",
        )
    sent = list(dict.fromkeys([*request.files.keys(), *request.form.keys()]))
    unknown = [name for name in sent if name not in expected]
    if unknown:
        raise UploadError(
            400,
            unknown[0],
            f"unknown field {_listed(unknown)}: the fields are {_listed(expected)}",
        )
    for name in expected:
        if len(request.files.getlist(name)) + len(request.form.getlist(name)) > 1:
            raise UploadError(400, name, f"{name}: sent more than once (expected one value)")
    # 2. each photo present, as a file, neither empty nor too large
    photos = {name: _read_photo(request, name, limits) for name in PHOTO_FIELDS}
    values = {name: request.form[name] for name in options if name in request.form}
    return photos, values


def _read_photo(request: flask.Request, name: str, limits: PhotoLimits) -> Upload:
    if name in request.form:
        raise UploadError(
            400, name, f"{name}: expected a file upload, got a text field (send it as a file)"
        )
    storage = request.files.get(name)
    if storage is None:
        raise UploadError(400, name, f"{name}: missing (expected an image file)")
    data = storage.read()
    filename = storage.filename or ""
    if not data:
        chosen = "no file chosen" if not filename else "empty file"
        raise UploadError(400, name, f"{name}: {chosen} (expected a JPEG, PNG or other image)")
    if len(data) > limits.max_bytes:
        raise UploadError(
            413,
            name,
            f"{name}: {len(data) / MiB:.1f} MiB is over the limit of "
            f"{limits.max_bytes / MiB:g} MiB per photo",
        )
    return Upload(data, filename)


TRUE_WORDS = ("true", "1", "yes")
FALSE_WORDS = ("false", "0", "no")


def parse_bool(name: str, value: str | None, default: bool) -> bool:
    """An option field's value as a boolean (`default` when absent); a 400 UploadError naming
    the field and the accepted words otherwise."""
    if value is None:
        return default
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    shown = value if len(value) <= 20 else value[:19] + "…"
    raise UploadError(
        400, name, f"{name}: {shown!r} is not true or false (accepted: {_listed(TRUE_WORDS)} "
        f"or {_listed(FALSE_WORDS)})",
    )  # fmt: skip


def _listed(names) -> str:
    return ", ".join(names)

"""The upload page: `GET /` the form, `POST /` the result (or the form again with what was
wrong). No script; the face crops are inline `data:` PNGs; the client's filenames are shown,
escaped by the template, and used for nothing else."""

from __future__ import annotations

import flask

from kinship.photos import MiB, PhotoError
from kinship.serve.service import png_base64, service
from kinship.serve.uploads import PHOTO_FIELDS, UploadError, parse_bool, read_form

PAGE_OPTIONS = ("cropped",)
"""The form's checkbox "the faces are already cropped" (detect=false)."""


def page():
    """GET: the upload form. POST: score the pair and show the result, or the form again with
    what was wrong (4xx)."""
    if flask.request.method != "POST":  # GET, or HEAD
        return render_page()
    svc = service()
    try:
        photos, values = read_form(flask.request, PAGE_OPTIONS, svc.limits)
        cropped = parse_bool("cropped", values.get("cropped"), default=False)
    except UploadError as err:
        return render_page(error=err.message), err.status
    try:
        prediction = svc.predict(photos, detect=not cropped)
    except PhotoError as err:
        label = f"{err.photo} ({photos[err.photo].shown_name})" if err.photo in photos else ""
        return render_page(error=f"{label or err.photo}: {err.reason}"), 422
    faces = [
        {
            "field": name,
            "filename": photos[name].shown_name,
            "src": "data:image/png;base64," + png_base64(face.crop),
            "face": face,
        }
        for name, face in zip(PHOTO_FIELDS, prediction.faces, strict=True)
    ]
    response = flask.make_response(render_page(result=prediction, faces=faces, detect=not cropped))
    response.headers["Cache-Control"] = "no-store"  # it shows the user's faces
    return response


def render_page(**context) -> str:
    """templates/page.html with the training summary and the limits, plus `context` (error;
    result, faces and detect)."""
    svc = service()
    return flask.render_template(
        "page.html",
        info=svc.info,
        limits={
            "max_mib": f"{svc.limits.max_bytes / MiB:g}",
            "max_megapixels": f"{svc.limits.max_pixels / 1e6:g}",
        },
        **context,
    )

"""The Flask app: the upload page (`/`), the JSON API (`/api/v1/...`), `/healthz`; and
`run_serve`, which loads the trained pipeline once and serves the app with waitress.

The app keeps no state between requests: the predictor (loaded once, thread-safe) and its
training summary are fixed when the app is built. Errors in what a client sent are 4xx responses
that name the field (JSON on the API, the form again on the page), never a 500.
"""

from __future__ import annotations

import base64
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import flask
import numpy as np
from PIL import Image
from werkzeug.exceptions import HTTPException

from kinship.photos import MiB, PhotoError, PhotoLimits
from kinship.serve.openapi import openapi_document
from kinship.serve.uploads import (
    FIELD_LIMIT,
    MAX_PARTS,
    PHOTO_FIELDS,
    InMemoryRequest,
    UploadError,
    body_limit,
    parse_bool,
    read_form,
)

log = logging.getLogger("kinship.serve")

API_OPTIONS = ("detect", "crops")
PAGE_OPTIONS = ("cropped",)

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "script-src 'none'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True)
class Service:
    """What every request reads, fixed when the app is built: the predictor and its summary."""

    predictor: object
    info: dict
    limits: PhotoLimits


def service() -> Service:
    return flask.current_app.extensions["kinship"]


def create_app(predictor) -> flask.Flask:
    """The app around a loaded predictor (`kinship.predictor.Predictor` or anything with its
    `predict`, `info` and `limits`)."""
    app = flask.Flask(__name__)
    app.request_class = InMemoryRequest
    limits = predictor.limits
    app.config.update(
        MAX_CONTENT_LENGTH=body_limit(limits),
        MAX_FORM_MEMORY_SIZE=FIELD_LIMIT,
        MAX_FORM_PARTS=MAX_PARTS,
    )
    app.json.sort_keys = False  # keep each object's documented order
    app.extensions["kinship"] = Service(predictor, predictor.info(), limits)
    app.add_url_rule("/", "page", page, methods=["GET", "POST"])
    app.add_url_rule("/healthz", "healthz", healthz)
    app.add_url_rule("/api/v1/predict", "api_predict", api_predict, methods=["POST"])
    app.add_url_rule("/api/v1/info", "api_info", api_info)
    app.add_url_rule("/api/v1/openapi.json", "api_openapi", api_openapi)
    app.register_error_handler(HTTPException, http_error)
    app.after_request(security_headers)
    return app


# --- the page ----------------------------------------------------------------------------------


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
        prediction = svc.predictor.predict(
            *(photos[n].data for n in PHOTO_FIELDS), detect=not cropped, names=PHOTO_FIELDS
        )
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


# --- the API -----------------------------------------------------------------------------------


def api_predict():
    svc = service()
    try:
        photos, values = read_form(flask.request, API_OPTIONS, svc.limits)
        detect = parse_bool("detect", values.get("detect"), default=True)
        crops = parse_bool("crops", values.get("crops"), default=False)
    except UploadError as err:
        return json_error(err.status, err.field, err.message)
    try:
        prediction = svc.predictor.predict(
            *(photos[n].data for n in PHOTO_FIELDS), detect=detect, names=PHOTO_FIELDS
        )
    except PhotoError as err:
        return json_error(422, err.photo, str(err))
    body = prediction.to_json()
    if crops:
        for face_json, face in zip(body["faces"], prediction.faces, strict=True):
            face_json["crop_png_base64"] = png_base64(face.crop)
    body["trained_on"] = trained_on(svc.info)
    response = flask.jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return response


def api_info():
    svc = service()
    return flask.jsonify({**svc.info, "limits": limits_json(svc.limits)})


def api_openapi():
    svc = service()
    return flask.jsonify(openapi_document(svc.limits, body_limit(svc.limits)))


def healthz():
    return flask.jsonify({"status": "ok"})


def trained_on(info: dict) -> dict:
    """What the models were trained on, as the API's predictions carry it."""
    return {"dataset": info["dataset"], "ensemble": info["ensemble"]}


def limits_json(limits: PhotoLimits) -> dict:
    return {
        "max_photo_bytes": limits.max_bytes,
        "max_photo_pixels": limits.max_pixels,
        "max_body_bytes": body_limit(limits),
    }


def json_error(status: int, field: str | None, message: str):
    return flask.jsonify({"error": {"status": status, "field": field, "message": message}}), status


# --- every response ----------------------------------------------------------------------------


def http_error(err: HTTPException):
    """Errors werkzeug raises (413 while parsing, 404, 405, 500): JSON on the API, the form
    again for the page's POST, werkzeug's page elsewhere."""
    status = err.code or 500
    message = err.description or err.name
    if status == 413:
        limits = service().limits
        message = (
            f"request body over the limit of {body_limit(limits) / MiB:.2f} MiB (two photos of "
            f"at most {limits.max_bytes / MiB:g} MiB each, other fields at most "
            f"{FIELD_LIMIT // 1024} KiB, at most {MAX_PARTS} parts)"
        )
    if status == 500:
        log.error("internal error on %s %s", flask.request.method, flask.request.path)
        message = "internal error (logged on the server)"
    if flask.request.path.startswith("/api/"):
        return json_error(status, None, message)
    if flask.request.path == "/" and flask.request.method == "POST":
        return render_page(error=message), status
    return err


def security_headers(response: flask.Response) -> flask.Response:
    response.headers.update(SECURITY_HEADERS)
    return response


def png_base64(crop: np.ndarray) -> str:
    """A uint8 RGB image as base64 PNG."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(crop, dtype=np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


# --- kinship serve -----------------------------------------------------------------------------


def run_serve(host: str = "127.0.0.1", port: int = 8000, threads: int = 4) -> int:
    """`kinship serve`: load the trained pipeline in the current directory once, then serve the
    page and the API with waitress until interrupted."""
    from kinship.predictor import Predictor

    app = create_app(Predictor.load(Path(".")))
    log_loaded(app.extensions["kinship"])
    server = waitress_server(app, host, port, threads)
    log.info(
        "serving on http://%s:%s/ with %d threads (API: POST /api/v1/predict)",
        host,
        server.effective_port,
        threads,
    )
    try:
        server.run()
    except KeyboardInterrupt:
        log.info("stopped")
    finally:
        server.close()
    return 0


def waitress_server(app: flask.Flask, host: str, port: int, threads: int):
    """A waitress server for the app that refuses bodies over the app's limit before reading
    them, and keeps whole requests and responses in memory (waitress buffers anything beyond
    `inbuf_overflow` / `outbuf_overflow` in a temporary file)."""
    import waitress

    limit = app.config["MAX_CONTENT_LENGTH"]
    return waitress.create_server(
        app,
        host=host,
        port=port,
        threads=threads,
        max_request_body_size=limit,
        inbuf_overflow=limit + MiB,
        outbuf_overflow=4 * limit,
        ident="kinship",
    )


def log_loaded(svc: Service) -> None:
    dataset, ensemble, members = svc.info["dataset"], svc.info["ensemble"], svc.info["members"]
    log.info(
        "loaded %d members (%s), ensemble %s: OOF AUC %.3f [%.3f, %.3f]",
        len(members),
        ", ".join(f"{name} = {m['model']}" for name, m in members.items()),
        ensemble["method"],
        ensemble["oof_auc"],
        *ensemble["oof_auc_ci95"],
    )
    log.info(
        "trained on %s: %d families, %d images%s; face detector %s",
        dataset["root"],
        dataset["families"],
        dataset["images"],
        " (SYNTHETIC demo data: the probability means nothing for real faces)"
        if dataset["synthetic"]
        else "",
        svc.info["detector"],
    )
    log.info(
        "limits: %g MiB and %g megapixels per photo, %.2f MiB per request",
        svc.limits.max_bytes / MiB,
        svc.limits.max_pixels / 1e6,
        body_limit(svc.limits) / MiB,
    )

"""The Flask app: the upload page (`/`), the JSON API (`/api/v1/...`), `/healthz`; and
`run_serve`, which loads the trained pipeline once and serves the app with waitress.

The app keeps no state between requests: the predictor (loaded once, thread-safe) and its
training summary are fixed when the app is built. Errors in what a client sent are 4xx responses
that name the field (JSON on the API, the form again on the page), never a 500.
"""

from __future__ import annotations

import logging
from pathlib import Path

import flask
from werkzeug.exceptions import HTTPException

from kinship.photos import MiB
from kinship.serve import api
from kinship.serve.page import page, render_page
from kinship.serve.service import Service, service
from kinship.serve.uploads import FIELD_LIMIT, MAX_PARTS, InMemoryRequest, body_limit

log = logging.getLogger("kinship.serve")

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
    app.add_url_rule("/healthz", "healthz", api.healthz)
    app.add_url_rule("/api/v1/predict", "api_predict", api.api_predict, methods=["POST"])
    app.add_url_rule("/api/v1/info", "api_info", api.api_info)
    app.add_url_rule("/api/v1/openapi.json", "api_openapi", api.api_openapi)
    app.register_error_handler(HTTPException, http_error)
    app.after_request(security_headers)
    return app


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
        return api.json_error(status, None, message)
    if flask.request.path == "/" and flask.request.method == "POST":
        return render_page(error=message), status
    return err


def security_headers(response: flask.Response) -> flask.Response:
    response.headers.update(SECURITY_HEADERS)
    return response


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

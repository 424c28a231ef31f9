"""The JSON API: `POST /api/v1/predict`, `GET /api/v1/info`, `GET /api/v1/openapi.json` and
`GET /healthz`. Errors are `{"error": {"status", "field", "message"}}` (kinship.serve.openapi
documents all of it)."""

from __future__ import annotations

import flask

from kinship.photos import PhotoError, PhotoLimits
from kinship.serve.openapi import openapi_document
from kinship.serve.service import png_base64, service
from kinship.serve.uploads import UploadError, body_limit, parse_bool, read_form

API_OPTIONS = ("detect", "crops")


def api_predict():
    svc = service()
    try:
        photos, values = read_form(flask.request, API_OPTIONS, svc.limits)
        detect = parse_bool("detect", values.get("detect"), default=True)
        crops = parse_bool("crops", values.get("crops"), default=False)
    except UploadError as err:
        return json_error(err.status, err.field, err.message)
    try:
        prediction = svc.predict(photos, detect=detect)
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

"""The API's OpenAPI 3.1 document, written by hand (served at /api/v1/openapi.json).

Written out rather than generated, so it says what a client needs in words; tests/test_serve.py
checks it against the app (every documented path and method is a route, the documented fields
are exactly those the handler accepts, each documented error is one the handler gives) so the two
cannot drift apart. Only the limits are filled in from the running app.
"""

from __future__ import annotations

from kinship.photos import MiB, PhotoLimits


def _error(description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _json(description: str, schema: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def openapi_document(limits: PhotoLimits, max_body_bytes: int) -> dict:
    photo_mib = f"{limits.max_bytes / MiB:g} MiB"
    pixels = f"{limits.max_pixels:,}"
    photo = {
        "type": "string",
        "contentMediaType": "image/*",
        "description": f"An image file (JPEG, PNG, ...) of at most {photo_mib} and {pixels} "
        "pixels. Sent as a file part; it is read in memory and never stored.",
    }
    boolean = {"type": "string", "enum": ["true", "false", "1", "0", "yes", "no"]}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Kinship verification",
            "version": "1",
            "description": "The probability that the people in two face photos are blood "
            "relatives, from the trained ensemble (`kinship serve`). Check `trained_on`: on "
            "synthetic demo data the probability means nothing for real faces.",
        },
        "paths": {
            "/api/v1/predict": {
                "post": {
                    "summary": "Score a pair of photos",
                    "requestBody": {
                        "required": True,
                        "description": f"multipart/form-data, at most {max_body_bytes:,} bytes "
                        "in all; no fields other than these.",
                        "content": {
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "required": ["photo1", "photo2"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "photo1": photo,
                                        "photo2": photo,
                                        "detect": {
                                            **boolean,
                                            "default": "true",
                                            "description": "Detect the face in each photo "
                                            "(MTCNN; the largest face when there are several). "
                                            "false: the photos are already-cropped faces.",
                                        },
                                        "crops": {
                                            **boolean,
                                            "default": "false",
                                            "description": "Include each scored face crop as "
                                            "base64 PNG (faces[].crop_png_base64).",
                                        },
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _json("The prediction", "Prediction"),
                        "400": _error(
                            "A field missing, sent twice, empty or unknown (the message lists "
                            "the expected fields), a photo sent as text, or a bad true/false"
                        ),
                        "413": {
                            "description": f"A photo is over {photo_mib} (JSON, `field` names "
                            f"it), or the body is over {max_body_bytes:,} bytes: the server "
                            "refuses that before reading it, in plain text",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Error"}
                                },
                                "text/plain": {"schema": {"type": "string"}},
                            },
                        },
                        "415": _error("The body is not multipart/form-data"),
                        "422": _error(
                            f"A photo is not an image, is corrupt, has over {pixels} pixels, or "
                            "shows no face; `field` names it"
                        ),
                    },
                }
            },
            "/api/v1/info": {
                "get": {
                    "summary": "What the models were trained on, and the limits",
                    "responses": {"200": _json("The training summary", "Info")},
                }
            },
            "/api/v1/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": {"description": "OpenAPI 3.1 document"}},
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness: the models are loaded and the server answers",
                    "responses": {"200": _json("Serving", "Health")},
                }
            },
        },
        "components": {"schemas": SCHEMAS},
    }


NUMBER_OR_NULL = {"type": ["number", "null"]}
DATASET = {
    "type": "object",
    "required": ["root", "synthetic", "families", "images"],
    "properties": {
        "root": {"type": "string", "description": "the dataset folder the pipeline used"},
        "synthetic": {
            "type": "boolean",
            "description": "true: the project's synthetic demo data; the probability means "
            "nothing for real faces",
        },
        "families": {"type": "integer"},
        "images": {"type": "integer"},
    },
}
ENSEMBLE = {
    "type": "object",
    "required": ["method", "oof_auc", "oof_auc_ci95", "holdout_auc"],
    "properties": {
        "method": {"type": "string"},
        "oof_auc": {"type": "number", "description": "out-of-fold ROC AUC"},
        "oof_auc_ci95": {
            "type": "array",
            "items": {"type": "number"},
            "minItems": 2,
            "maxItems": 2,
            "description": "95 % family-level bootstrap interval",
        },
        "holdout_auc": {**NUMBER_OR_NULL, "description": "null without holdout families"},
    },
}
SCHEMAS = {
    "Prediction": {
        "type": "object",
        "required": ["probability", "members", "ensemble_method", "faces", "notes", "trained_on"],
        "properties": {
            "probability": {
                "type": "number",
                "minimum": 0,
                "maximum": 1,
                "description": "calibrated ensemble probability that the two are related",
            },
            "members": {
                "type": "object",
                "additionalProperties": {"type": "number"},
                "description": "each member's probability (mean over its fold models)",
            },
            "ensemble_method": {"type": "string"},
            "faces": {"type": "array", "items": {"$ref": "#/components/schemas/Face"}},
            "notes": {
                "type": "array",
                "items": {"type": "string"},
                "description": "e.g. several faces found: the largest was used",
            },
            "trained_on": {
                "type": "object",
                "required": ["dataset", "ensemble"],
                "properties": {"dataset": DATASET, "ensemble": ENSEMBLE},
            },
        },
    },
    "Face": {
        "type": "object",
        "required": ["box", "faces_found", "confidence"],
        "properties": {
            "box": {
                "type": ["array", "null"],
                "items": {"type": "number"},
                "description": "x0, y0, x1, y1 in the photo; null with detect=false",
            },
            "faces_found": {"type": "integer"},
            "confidence": NUMBER_OR_NULL,
            "crop_png_base64": {"type": "string", "description": "only with crops=true"},
        },
    },
    "Info": {
        "type": "object",
        "required": ["dataset", "ensemble", "members", "detector", "limits"],
        "properties": {
            "dataset": DATASET,
            "ensemble": ENSEMBLE,
            "members": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "properties": {
                        "model": {"type": "string"},
                        "oof_auc": {"type": "number"},
                        "holdout_auc": NUMBER_OR_NULL,
                    },
                },
            },
            "detector": {"type": "string"},
            "limits": {
                "type": "object",
                "properties": {
                    "max_photo_bytes": {"type": "integer"},
                    "max_photo_pixels": {"type": "integer"},
                    "max_body_bytes": {"type": "integer"},
                },
            },
        },
    },
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"const": "ok"}},
    },
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["status", "field", "message"],
                "properties": {
                    "status": {"type": "integer", "description": "the HTTP status"},
                    "field": {
                        "type": ["string", "null"],
                        "description": "the field at fault (photo1, photo2, detect, crops, or "
                        "the unknown one); null for the request as a whole",
                    },
                    "message": {"type": "string", "description": "what was expected"},
                },
            }
        },
    },
}

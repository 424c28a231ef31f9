"""`kinship serve`: the page and the JSON API.

The HTTP layer is tested with a fake predictor (tests/servefixtures.py) through Flask's test
client: fields, limits, errors, headers, escaping, uploads kept in memory, and the OpenAPI
document against the routes. The e2e tests below use the real predictor of the tiny CI pipeline.
"""

from __future__ import annotations

import base64
import io
import re
import tempfile
from pathlib import Path

import flask
import numpy as np
import pytest
from PIL import Image
from servefixtures import (
    FakePredictor,
    encode,
    noise_png,
    response_schema,
    sample,
    schema_errors,
)
from werkzeug.datastructures import FileStorage

from kinship.photos import MiB, PhotoLimits
from kinship.serve import app as serve_app
from kinship.serve.app import create_app
from kinship.serve.openapi import openapi_document
from kinship.serve.uploads import body_limit

SMALL = PhotoLimits(max_bytes=1 * MiB, max_pixels=4_000_000)


@pytest.fixture(scope="module")
def photos() -> dict[str, bytes]:
    return {
        "astronaut": encode(sample("astronaut")),
        "camera": encode(sample("camera")),
        "flat": encode(np.full((64, 64, 3), 128, np.uint8), "PNG"),
    }


@pytest.fixture
def fake() -> FakePredictor:
    return FakePredictor(SMALL)


@pytest.fixture
def client(fake):
    app = create_app(fake)
    app.testing = True
    return app.test_client()


def files(*pairs) -> dict:
    """A multipart form for the test client: (field, bytes[, filename]) or (field, str)."""
    form = {}
    for field, value, *filename in pairs:
        if isinstance(value, bytes):
            name = filename[0] if filename else f"{field}.jpg"
            form[field] = FileStorage(io.BytesIO(value), filename=name)
        else:
            form[field] = value
    return form


def pair(photos, **extra) -> dict:
    return files(("photo1", photos["astronaut"]), ("photo2", photos["camera"]), *extra.items())


def api(client, form):
    return client.post("/api/v1/predict", data=form, content_type="multipart/form-data")


def error_of(response) -> dict:
    assert response.is_json, response.data[:300]
    return response.get_json()["error"]


# --- the API: a prediction ---------------------------------------------------------------------


def test_api_predicts_with_trained_on_and_optional_crops(client, fake, photos):
    response = api(client, pair(photos))
    assert response.status_code == 200
    body = response.get_json()
    assert set(body["members"]) == set(fake.members) and 0 <= body["probability"] <= 1
    assert body["trained_on"]["dataset"]["synthetic"] is True
    assert body["trained_on"]["ensemble"]["oof_auc_ci95"] == [0.652, 0.722]
    assert all("crop_png_base64" not in face for face in body["faces"])
    assert fake.calls == [{"detect": True, "names": ("photo1", "photo2")}]
    with_crops = api(client, pair(photos, crops="true")).get_json()
    assert with_crops["probability"] == body["probability"]
    for face in with_crops["faces"]:
        crop = Image.open(io.BytesIO(base64.b64decode(face["crop_png_base64"])))
        assert crop.format == "PNG" and crop.size == (24, 24)
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(("value", "expected"), [("false", False), ("0", False), ("TRUE", True)])
def test_api_detect_option_reaches_the_predictor(client, fake, photos, value, expected):
    assert api(client, pair(photos, detect=value)).status_code == 200
    assert fake.calls[-1]["detect"] is expected


# --- the API: errors ---------------------------------------------------------------------------


def test_unknown_field_names_are_a_400_listing_the_expected_ones(client, photos):
    form = files(("image1", photos["astronaut"]), ("photo2", photos["camera"]))
    error = error_of(response := api(client, form))
    assert response.status_code == 400 and error["field"] == "image1"
    assert "photo1, photo2, detect, crops" in error["message"]


@pytest.mark.parametrize("missing", ["photo1", "photo2"])
def test_a_missing_photo_is_a_400_naming_it(client, photos, missing):
    form = {k: v for k, v in pair(photos).items() if k != missing}
    error = error_of(response := api(client, form))
    assert response.status_code == 400 and error["field"] == missing
    assert error["message"].startswith(f"{missing}: missing")


def test_an_empty_upload_is_a_400(client, photos):
    form = files(("photo1", photos["astronaut"]), ("photo2", b"", "empty.jpg"))
    error = error_of(response := api(client, form))
    assert response.status_code == 400 and error["field"] == "photo2"
    assert "empty" in error["message"]


def test_a_photo_sent_as_text_or_twice_is_a_400(client, photos):
    error = error_of(api(client, files(("photo1", photos["astronaut"]), ("photo2", "abc"))))
    assert error["status"] == 400 and error["field"] == "photo2" and "file" in error["message"]
    twice = pair(photos)
    twice["photo1"] = [twice["photo1"], FileStorage(io.BytesIO(photos["camera"]), "b.jpg")]
    error = error_of(api(client, twice))
    assert error["status"] == 400 and error["field"] == "photo1"
    assert "more than once" in error["message"]


@pytest.mark.parametrize("field", ["detect", "crops"])
def test_a_bad_boolean_is_a_400_naming_the_field(client, photos, field):
    error = error_of(response := api(client, pair(photos, **{field: "maybe"})))
    assert response.status_code == 400 and error["field"] == field
    assert "'maybe'" in error["message"] and "true" in error["message"]


def test_a_body_over_the_limit_is_a_413(client, photos):
    big = noise_png(body_limit(SMALL) + 100_000)
    error = error_of(response := api(client, files(("photo1", big), ("photo2", photos["camera"]))))
    assert response.status_code == 413 and error["field"] is None
    assert "limit" in error["message"]


def test_one_photo_over_its_byte_limit_is_a_413_naming_it(client, photos):
    big = noise_png(SMALL.max_bytes + 50_000)
    assert SMALL.max_bytes < len(big) < body_limit(SMALL) - len(photos["camera"])
    error = error_of(
        response := api(client, files(("photo1", photos["astronaut"]), ("photo2", big)))
    )
    assert response.status_code == 413 and error["field"] == "photo2"
    assert "over the limit of 1 MiB" in error["message"]


def test_not_an_image_is_a_422_naming_the_photo(client, photos):
    form = files(("photo1", b"%PDF-1.4 not a photo"), ("photo2", photos["camera"]))
    error = error_of(response := api(client, form))
    assert response.status_code == 422 and error["field"] == "photo1"
    assert error["message"].startswith("photo1: not an image")


def test_a_truncated_image_is_a_422(client, photos):
    form = files(("photo1", photos["astronaut"][:2000]), ("photo2", photos["camera"]))
    error = error_of(response := api(client, form))
    assert response.status_code == 422 and error["field"] == "photo1"


def test_too_many_pixels_is_a_422(client, photos):
    huge = encode(np.zeros((2100, 2100, 3), np.uint8), "PNG")  # 4.4 Mpx, a few KiB
    error = error_of(
        response := api(client, files(("photo1", photos["astronaut"]), ("photo2", huge)))
    )
    assert response.status_code == 422 and error["field"] == "photo2"
    assert "pixels" in error["message"]


def test_no_face_is_a_422_naming_the_photo(client, photos):
    form = files(("photo1", photos["astronaut"]), ("photo2", photos["flat"]))
    error = error_of(response := api(client, form))
    assert response.status_code == 422 and error["field"] == "photo2"
    assert error["message"].startswith("photo2: no face")


def test_not_multipart_is_a_415(client):
    response = client.post("/api/v1/predict", json={"photo1": "x"})
    assert response.status_code == 415 and "multipart/form-data" in error_of(response)["message"]


def test_api_errors_for_methods_and_paths_are_json(client):
    assert error_of(response := client.get("/api/v1/predict"))["status"] == 405
    assert response.status_code == 405
    assert error_of(response := client.get("/api/v1/nothing"))["status"] == 404


def test_an_unexpected_failure_is_a_json_500_without_details(photos):
    class Broken(FakePredictor):
        def predict(self, *args, **kwargs):
            raise RuntimeError("secret detail")

    app = create_app(Broken(SMALL))
    response = api(app.test_client(), pair(photos))
    assert response.status_code == 500
    assert "secret" not in response.get_data(as_text=True)
    assert error_of(response)["message"].startswith("internal error")


# --- the other endpoints -----------------------------------------------------------------------


def test_info_healthz_and_openapi(client, fake):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    info = client.get("/api/v1/info").get_json()
    assert info["members"] == fake.info()["members"]
    assert info["limits"]["max_body_bytes"] == body_limit(SMALL)
    document = client.get("/api/v1/openapi.json").get_json()
    assert document["openapi"] == "3.1.0"
    assert document == openapi_document(SMALL, body_limit(SMALL))


# --- the OpenAPI document against the app ------------------------------------------------------


DOCUMENT = openapi_document(SMALL, body_limit(SMALL))


def test_every_documented_operation_is_a_route_and_every_api_route_is_documented(fake):
    app = create_app(fake)
    routes = {
        rule.rule: rule.methods - {"HEAD", "OPTIONS"}
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
    }
    documented = {path: {m.upper() for m in ops} for path, ops in DOCUMENT["paths"].items()}
    for path, methods in documented.items():
        assert path in routes and methods == routes[path], path
    undocumented = set(routes) - set(documented)
    assert undocumented == {"/"}, "the page is the only route the API document leaves out"


def _request_schema() -> dict:
    operation = DOCUMENT["paths"]["/api/v1/predict"]["post"]
    return operation["requestBody"]["content"]["multipart/form-data"]["schema"]


def test_the_documented_fields_are_the_ones_the_handler_accepts(client, photos):
    schema = _request_schema()
    fields = list(schema["properties"])
    # the unknown-field error lists exactly the documented fields
    error = error_of(api(client, {**pair(photos), "extra": "1"}))
    assert error["message"].endswith(f"the fields are {', '.join(fields)}")
    # every required field is required, every other one optional
    for name in fields:
        form = {k: v for k, v in pair(photos).items() if k != name}
        assert (api(client, form).status_code == 400) == (name in schema["required"]), name
    # the boolean fields take every documented value and refuse others
    for name in set(fields) - set(schema["required"]):
        for value in schema["properties"][name]["enum"]:
            assert api(client, pair(photos, **{name: value})).status_code == 200, (name, value)
        assert error_of(api(client, pair(photos, **{name: "maybe"})))["field"] == name


def test_responses_match_their_documented_schemas(client, photos):
    response = api(client, pair(photos, crops="true"))
    schema = response_schema(DOCUMENT, "/api/v1/predict", "post", 200)
    assert schema_errors(response.get_json(), schema, DOCUMENT) == []
    for path, name in [("/api/v1/info", "Info"), ("/healthz", "Health")]:
        schema = response_schema(DOCUMENT, path, "get", 200)
        assert schema == {"$ref": f"#/components/schemas/{name}"}
        assert schema_errors(client.get(path).get_json(), schema, DOCUMENT) == []
    # the checker itself rejects what it should
    assert schema_errors({"probability": 2}, {"$ref": "#/components/schemas/Prediction"}, DOCUMENT)


ERROR_CASES = {
    400: lambda p: files(("photo1", p["astronaut"])),
    413: lambda p: files(("photo1", p["astronaut"]), ("photo2", noise_png(SMALL.max_bytes + 10))),
    422: lambda p: files(("photo1", b"not an image"), ("photo2", p["camera"])),
}


@pytest.mark.parametrize("status", [*ERROR_CASES, 415])
def test_every_documented_error_is_one_the_handler_gives(client, photos, status):
    responses = DOCUMENT["paths"]["/api/v1/predict"]["post"]["responses"]
    assert set(responses) == {"200", *map(str, [*ERROR_CASES, 415])}
    if status == 415:
        response = client.post("/api/v1/predict", data=b"x", content_type="image/jpeg")
    else:
        response = api(client, ERROR_CASES[status](photos))
    assert response.status_code == status
    schema = response_schema(DOCUMENT, "/api/v1/predict", "post", status)
    assert schema_errors(response.get_json(), schema, DOCUMENT) == []


# --- the page ----------------------------------------------------------------------------------


def test_page_has_the_form_the_training_summary_and_no_external_asset(client):
    html = client.get("/").get_data(as_text=True)
    for name in ("photo1", "photo2"):
        assert re.search(rf'<input type="file" name="{name}"', html)
    assert '<input type="checkbox" name="cropped" value="true">' in html
    assert 'enctype="multipart/form-data"' in html
    assert 'id="synthetic-warning"' in html and "means nothing for real faces" in html
    assert "120 families, 2,400 images" in html and "0.686" in html and "0.652–0.722" in html
    assert "no holdout families" in html
    assert not re.search(r'(src|href)="(https?:)?//', html), "no external asset"
    assert "<script" not in html


def test_head_requests_are_answered_like_gets(client):
    for path in ("/", "/healthz", "/api/v1/info"):
        response = client.head(path)
        assert response.status_code == 200 and response.data == b"", path


def test_page_without_synthetic_data_has_no_warning():
    app = create_app(FakePredictor(SMALL, synthetic=False))
    html = app.test_client().get("/").get_data(as_text=True)
    assert "synthetic-warning" not in html and "120 families" in html


def test_page_shows_the_result(client, fake, photos):
    form = pair(photos, cropped="true")
    response = client.post("/", data=form, content_type="multipart/form-data")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and fake.calls[-1]["detect"] is False
    expected = api(client, pair(photos, detect="false")).get_json()
    shown = re.search(r'<output id="probability" data-value="([^"]+)">([^<]+)<', html)
    assert float(shown[1]) == expected["probability"]
    assert shown[2] == f"{expected['probability']:.3f}"
    assert html.count('src="data:image/png;base64,') == 2
    for name, value in expected["members"].items():
        assert re.search(rf'data-member="{name}">.*?<td class="num score">{value:.3f}<', html, re.S)
    assert "photo1: a fake prediction" in html and "synthetic-warning" in html
    assert response.headers["Cache-Control"] == "no-store"


def test_page_errors_show_the_form_again_with_the_message(client, photos):
    form = files(("photo1", photos["astronaut"], "me.jpg"), ("photo2", photos["flat"], "cat.png"))
    response = client.post("/", data=form, content_type="multipart/form-data")
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert 'id="error"' in html and "photo2 (cat.png): no face found" in html
    assert '<form id="upload"' in html
    missing = client.post("/", data=files(("photo1", photos["astronaut"])))
    assert missing.status_code == 400 and "photo2: missing" in missing.get_data(as_text=True)
    big = files(("photo1", noise_png(body_limit(SMALL) + 10)), ("photo2", photos["camera"]))
    response = client.post("/", data=big, content_type="multipart/form-data")
    assert response.status_code == 413 and '<form id="upload"' in response.get_data(as_text=True)


MALICIOUS = "<script>alert(1)</script><img src=x onerror=alert(2)>.jpg"


def test_a_malicious_filename_is_escaped_on_the_page_and_absent_from_the_api(client, photos):
    form = files(("photo1", photos["astronaut"], MALICIOUS), ("photo2", photos["camera"]))
    html = client.post("/", data=form, content_type="multipart/form-data").get_data(as_text=True)
    assert "<script>" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    form = files(("photo1", photos["flat"], MALICIOUS), ("photo2", photos["camera"]))
    html = client.post("/", data=form, content_type="multipart/form-data").get_data(as_text=True)
    assert "<script>" not in html and "&lt;script&gt;" in html  # the error message too
    form = files(("photo1", photos["astronaut"], MALICIOUS), ("photo2", photos["camera"]))
    assert "script" not in api(client, form).get_data(as_text=True)


def test_autoescaping_is_on_for_the_template(fake):
    app = create_app(fake)
    assert app.jinja_env.select_template(["page.html"]).name == "page.html"
    assert app.jinja_env.autoescape("page.html") is True


# --- headers and safety ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/"), ("GET", "/healthz"), ("GET", "/api/v1/info"), ("POST", "/api/v1/predict"),
     ("GET", "/nothing"), ("POST", "/")],
)  # fmt: skip
def test_security_headers_on_every_response(client, method, path):
    response = client.open(path, method=method)
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "img-src 'self' data:" in csp
    assert "script-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("request_class", ["in-memory", "flask-default"])
def test_uploads_are_never_written_to_disk(fake, monkeypatch, tmp_path, request_class):
    """A 2 MB upload is parsed without any temporary file (the tempfile functions are spied on,
    and the temporary folder is a fresh one that must stay empty). The same check on Flask's
    default request, which spools files over 500 KB to disk, does see one: the check can fail."""
    fake.limits = PhotoLimits(max_bytes=3 * MiB)
    app = create_app(fake)
    if request_class == "flask-default":
        app.request_class = flask.Request
    opened = []

    def spy(real):
        def opening(*args, **kwargs):
            opened.append(real.__name__)
            return real(*args, **kwargs)

        return opening

    import werkzeug.formparser

    for module in (tempfile, werkzeug.formparser):
        for name in ("SpooledTemporaryFile", "TemporaryFile", "NamedTemporaryFile", "mkstemp"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, spy(getattr(module, name)))
    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    form = files(("photo1", noise_png(2_000_000)), ("photo2", encode(sample("camera"))))
    response = api(app.test_client(), form)
    assert response.status_code == 200
    if request_class == "flask-default":
        assert opened, "the spy sees werkzeug's temporary file"
        return
    assert opened == []
    assert list(private.iterdir()) == []


def test_run_serve_loads_once_and_keeps_bodies_in_memory(monkeypatch, fake, caplog):
    from kinship import predictor

    loads, ran = [], []

    class Loader:
        @staticmethod
        def load(root: Path = Path(".")):
            loads.append(root)
            return fake

    monkeypatch.setattr(predictor, "Predictor", Loader, raising=False)
    real_server = serve_app.waitress_server

    def server(app, host, port, threads):
        built = real_server(app, host, 0, threads)  # a free port, never run
        monkeypatch.setattr(built, "run", lambda: ran.append((app, host, port, threads)))
        servers.append(built)
        return built

    servers = []
    monkeypatch.setattr(serve_app, "waitress_server", server)
    with caplog.at_level("INFO", logger="kinship.serve"):
        assert serve_app.run_serve(host="127.0.0.1", port=8123, threads=3) == 0
    messages = [record.getMessage() for record in caplog.records]  # each formats
    assert any(m.startswith("loaded 2 members (siamese_cnn = siamese_cnn") for m in messages)
    assert any("SYNTHETIC" in m for m in messages)
    assert any(m.startswith("serving on http://127.0.0.1:") for m in messages)
    assert loads == [Path(".")]
    app, *where = ran[0]
    assert isinstance(app, flask.Flask) and where == ["127.0.0.1", 8123, 3]
    adjustments = servers[0].adj
    assert adjustments.max_request_body_size == body_limit(SMALL)
    assert app.config["MAX_CONTENT_LENGTH"] == body_limit(SMALL)
    assert adjustments.inbuf_overflow > adjustments.max_request_body_size
    assert adjustments.threads == 3

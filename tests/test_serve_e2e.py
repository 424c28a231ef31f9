"""`kinship serve` on the real predictor of the tiny CI pipeline: photos with and without faces,
concurrent requests, the `kinship serve` process, and the page in a real browser.

Photos come from scikit-image (licence-clean): astronaut() and camera() show one face each, two
astronauts side by side two, coffee() and chelsea() (a cat) none. No dataset image is committed.
"""

from __future__ import annotations

import base64
import io
import json
import re
import socket
import threading
import urllib.parse

import numpy as np
import pandas as pd
import pytest
from conftest import pipeline_env
from PIL import Image
from reportfixtures import CHROMIUM, CHROMIUM_ARGS
from servefixtures import encode, kinship_serve, post_multipart, sample

from kinship.serve.app import create_app, waitress_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def predictor(ci_pipeline):
    from kinship.predictor import Predictor

    return Predictor.load(ci_pipeline)


@pytest.fixture(scope="module")
def client(predictor):
    return create_app(predictor).test_client()


@pytest.fixture(scope="module")
def photos() -> dict[str, bytes]:
    astronaut = sample("astronaut")
    return {
        "astronaut": encode(astronaut),
        "camera": encode(sample("camera")),
        "two faces": encode(np.hstack([astronaut, astronaut])),
        "coffee": encode(sample("coffee")),
        "chelsea": encode(sample("chelsea"), "PNG"),
        # 81 megapixels in a few KiB: refused from the header, before any pixel is decoded
        "huge": encode(np.zeros((9000, 9000), np.uint8), "PNG"),
    }


def predict(client, photo1: bytes, photo2: bytes, **options):
    form = {
        "photo1": (io.BytesIO(photo1), "a.jpg"),
        "photo2": (io.BytesIO(photo2), "b.jpg"),
        **options,
    }
    return client.post("/api/v1/predict", data=form, content_type="multipart/form-data")


# --- the API on the real models ----------------------------------------------------------------


def test_a_pair_with_one_face_each(client, predictor, photos):
    response = predict(client, photos["astronaut"], photos["camera"], crops="true")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert set(body["members"]) == set(predictor.names) and 0 <= body["probability"] <= 1
    assert body["ensemble_method"] == predictor.method and body["notes"] == []
    size = predictor.spec.output_size
    for face in body["faces"]:
        assert face["faces_found"] == 1 and face["confidence"] > 0.9 and len(face["box"]) == 4
        crop = Image.open(io.BytesIO(base64.b64decode(face["crop_png_base64"])))
        assert crop.size == (size, size) and crop.mode == "RGB"
    assert body["trained_on"]["dataset"]["synthetic"] is True
    direct = predictor.predict(photos["astronaut"], photos["camera"])
    assert body["probability"] == direct.probability


def test_two_faces_use_the_largest_with_a_note(client, photos):
    response = predict(client, photos["two faces"], photos["camera"])
    assert response.status_code == 200
    body = response.get_json()
    assert body["faces"][0]["faces_found"] == 2
    assert len(body["notes"]) == 1
    assert body["notes"][0].startswith("photo1: 2 faces found; the largest was used")


@pytest.mark.parametrize("image", ["coffee", "chelsea"])
def test_no_face_is_a_422_naming_the_photo(client, photos, image):
    response = predict(client, photos["astronaut"], photos[image])
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["field"] == "photo2" and error["message"].startswith("photo2: no face found")


def test_too_many_pixels_is_a_422_before_decoding(client, photos):
    assert len(photos["huge"]) < 200_000
    response = predict(client, photos["huge"], photos["camera"])
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["field"] == "photo1"
    assert "9000×9000 pixels is over the limit of 40,000,000 pixels" in error["message"]


def test_a_photo_one_pixel_high_is_a_422_not_a_500(client, photos):
    strip = encode(np.zeros((1, 10000, 3), np.uint8), "PNG")
    response = predict(client, strip, photos["camera"])
    assert response.status_code == 422
    assert response.get_json()["error"]["message"].startswith("photo1: no face found")


def test_without_detection_the_api_reproduces_the_submission(client, ci_pipeline):
    """Two test images of the pipeline's own data, taken as crops: submission.csv's value."""
    submission = pd.read_csv(ci_pipeline / "submission.csv")
    img_pair, expected = submission.iloc[5]
    first, second = (
        (ci_pipeline / "data/synthetic/test" / name).read_bytes() for name in img_pair.split("-")
    )
    response = predict(client, first, second, detect="false")
    assert response.status_code == 200
    body = response.get_json()
    assert body["probability"] == pytest.approx(expected, abs=1e-5)
    assert all(face["box"] is None for face in body["faces"])


def test_concurrent_requests_get_identical_answers(predictor, photos):
    """8 clients post the same pair at once to a waitress server of the real app (as
    `kinship serve` configures it): every answer is 200 with the same probability."""
    app = create_app(predictor)
    server = waitress_server(app, "127.0.0.1", 0, threads=8)
    url = f"http://127.0.0.1:{server.effective_port}/api/v1/predict"
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    start = threading.Barrier(8)
    answers: list = [None] * 8

    def client(i):
        start.wait()
        answers[i] = post_multipart(
            url, {"photo1": photos["astronaut"], "photo2": photos["camera"]}
        )

    try:
        clients = [threading.Thread(target=client, args=(i,)) for i in range(8)]
        for c in clients:
            c.start()
        for c in clients:
            c.join(timeout=600)
    finally:
        server.close()
    assert [status for status, _ in answers] == [200] * 8, answers
    expected = predictor.predict(photos["astronaut"], photos["camera"])
    assert {body["probability"] for _, body in answers} == {expected.probability}
    assert all(body["members"] == expected.members for _, body in answers)


# --- `kinship serve` -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(ci_pipeline, tmp_path_factory):
    """`kinship serve` in the CI workspace on a free port: (url, log file)."""
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with kinship_serve(ci_pipeline, pipeline_env(), log) as (url, _):
        yield url, log


def test_kinship_serve_loads_every_member_and_answers(served, ci_pipeline, predictor, photos):
    url, log = served
    card = json.loads((ci_pipeline / "models/ensemble/ensemble.json").read_text())
    with urllib_open(f"{url}/api/v1/info") as response:
        info = json.load(response)
    assert set(info["members"]) == set(card["members"]) == set(predictor.names)
    status, body = post_multipart(
        f"{url}/api/v1/predict", {"photo1": photos["astronaut"], "photo2": photos["camera"]}
    )
    assert status == 200, body
    assert set(body["members"]) == set(card["members"])
    # another process: the same models and photos, float kernels chosen per process (measured:
    # 4e-10 apart in CI)
    expected = predictor.predict(photos["astronaut"], photos["camera"]).probability
    assert body["probability"] == pytest.approx(expected, abs=1e-6)
    text = log.read_text()
    assert f"loaded {len(card['members'])} members" in text and "SYNTHETIC" in text


def test_kinship_serve_refuses_an_oversized_body_before_reading_it(served):
    """The server answers 413 on the Content-Length alone (nothing of the body is sent)."""
    url, _ = served
    parts = urllib.parse.urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(
            b"POST /api/v1/predict HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 1000000000\r\n\r\n"
        )
        assert sock.recv(200).startswith(b"HTTP/1.1 413 ")


def urllib_open(url: str):
    import urllib.request

    return urllib.request.urlopen(url, timeout=60)


# --- the page in a browser ---------------------------------------------------------------------


LOCAL_ONLY_ARGS = [
    *(a for a in CHROMIUM_ARGS if not a.startswith("--host-resolver-rules")),
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # no name resolves but loopback
]


@pytest.fixture
def browser(tmp_path, request):
    """Debian's Chromium through playwright (never a downloaded browser), headless, with a fresh
    profile; requests anywhere but the server are aborted and listed. Skips without Chromium."""
    from playwright import sync_api

    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (`make setup` does)")
    url, _ = request.getfixturevalue("served")  # after the skip: no server without a browser
    elsewhere: list[str] = []

    def only_the_server(route):
        if route.request.url.startswith(f"{url}/") or route.request.url.startswith("data:"):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            tmp_path / "chromium-profile",
            executable_path=str(CHROMIUM),
            headless=True,
            args=[*LOCAL_ONLY_ARGS],
            viewport={"width": 1100, "height": 1400},
        )
        context.route("**/*", only_the_server)
        try:
            yield context, url, elsewhere
        finally:
            context.close()


def test_the_page_scores_a_pair_uploaded_in_a_browser(browser, tmp_path, photos):
    context, url, elsewhere = browser
    for name in ("astronaut", "camera", "coffee"):
        (tmp_path / f"{name}.jpg").write_bytes(photos[name])
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda err: problems.append(str(err)))
    page.on("console", lambda msg: msg.type == "error" and problems.append(msg.text))
    page.goto(f"{url}/", wait_until="load")
    assert page.locator("#synthetic-warning").is_visible()
    # 1. a pair with a face each: the probability the API gives for the same pair
    page.set_input_files('input[name="photo1"]', tmp_path / "astronaut.jpg")
    page.set_input_files('input[name="photo2"]', tmp_path / "camera.jpg")
    with page.expect_navigation(wait_until="load", timeout=300_000):
        page.click('button[type="submit"]')
    shown = page.locator("#probability")
    status, body = post_multipart(
        f"{url}/api/v1/predict", {"photo1": photos["astronaut"], "photo2": photos["camera"]}
    )
    assert status == 200
    assert float(shown.get_attribute("data-value")) == body["probability"]
    assert shown.inner_text() == f"{body['probability']:.3f}"
    assert page.locator("figure img").count() == 2
    for i in range(2):  # the crops are drawn (data: images are allowed by the CSP)
        assert page.locator("figure img").nth(i).evaluate("img => img.naturalWidth") > 0
    for name, value in body["members"].items():
        assert page.inner_text(f'tr[data-member="{name}"] td.score') == f"{value:.3f}"
    assert problems == []  # no script error, nothing blocked by the CSP
    shot = tmp_path / "serve.png"
    page.screenshot(path=shot, full_page=True)
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 30_000
    # 2. a photo without a face: the form again, naming the photo and its file
    page.set_input_files('input[name="photo1"]', tmp_path / "astronaut.jpg")
    page.set_input_files('input[name="photo2"]', tmp_path / "coffee.jpg")
    with page.expect_navigation(wait_until="load", timeout=300_000):
        page.click('button[type="submit"]')
    assert re.match(r"photo2 \(coffee\.jpg\): no face found", page.inner_text("#error"))
    assert page.locator("#probability").count() == 0
    assert len(problems) == 1 and "status of 422" in problems[0]  # the browser's log of it
    # 3. nothing was fetched from anywhere else
    assert elsewhere == []
    page.close()

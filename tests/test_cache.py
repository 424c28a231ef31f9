"""The decode-once cache: odd image formats converted, unreadable reported, no half-writes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from kinship.cache import build_cache, decode, load_cache


def _images_table(tokens):
    return pd.DataFrame(
        {
            "image": tokens,
            "split": "test",
            "person": None,
            "family": None,
            "row": range(len(tokens)),
        }
    )


@pytest.fixture
def odd_images(tmp_path):
    """One image of each awkward kind under test/, plus its images table."""
    test = tmp_path / "test"
    test.mkdir()
    rgb = np.zeros((40, 40, 3), np.uint8)
    rgb[:, :20] = (255, 0, 0)  # left half red
    Image.fromarray(rgb).save(test / "rgb.jpg", quality=95)
    Image.fromarray(np.full((40, 40), 200, np.uint8), "L").save(test / "grey.jpg")
    Image.fromarray(rgb).convert("CMYK").save(test / "cmyk.jpg")
    Image.fromarray(rgb).save(test / "png_inside.jpg", format="PNG")
    wide = np.zeros((20, 60, 3), np.uint8)
    wide[:, 20:40] = (0, 0, 255)  # the centre square is blue
    Image.fromarray(wide).save(test / "wide.png")
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 1] = 255
    rgba[..., 3] = 255
    Image.fromarray(rgba, "RGBA").save(test / "alpha.png")
    tokens = ["rgb.jpg", "grey.jpg", "cmyk.jpg", "png_inside.jpg", "wide.png", "alpha.png"]
    return tmp_path, _images_table(tokens)


def test_odd_formats_decode_to_rgb_squares(odd_images):
    root, images = odd_images
    out = root / "cache" / "16.npy"
    report = build_cache(images, root, 16, out, max_bad_fraction=0.0, workers=2)
    cache = load_cache(out, len(images), 16)
    assert cache.shape == (6, 16, 16, 3) and cache.dtype == np.uint8
    assert report["bad_images"] == 0
    assert cache[0, 8, 2, 0] > 200 and cache[0, 8, 13, 0] < 50  # rgb: red left, black right
    assert np.all(np.abs(cache[1].astype(int) - 200) <= 2)  # grey broadcast to three channels
    assert cache[2, 8, 2, 0] > 180  # CMYK converted back to red
    assert np.array_equal(cache[3], decode(root / "test" / "png_inside.jpg", 16))
    assert cache[4, 8, 8, 2] > 200 and cache[4, 8, 8, 0] < 50  # centre crop of the wide image
    assert cache[5, 8, 8, 1] == 255  # alpha dropped


def test_unreadable_images_are_reported_and_zeroed(odd_images):
    root, images = odd_images
    (root / "test" / "corrupt.jpg").write_bytes(b"not an image at all")
    full = (root / "test" / "rgb.jpg").read_bytes()
    (root / "test" / "truncated.jpg").write_bytes(full[: len(full) // 2])
    images = _images_table([*images["image"], "corrupt.jpg", "truncated.jpg"])
    out = root / "c.npy"
    report = build_cache(images, root, 16, out, max_bad_fraction=0.3)
    assert report["bad_images"] == 2
    assert [b["image"] for b in report["bad"]] == ["corrupt.jpg", "truncated.jpg"]
    assert [b["row"] for b in report["bad"]] == [6, 7]
    cache = np.load(out)
    assert not cache[6:].any() and cache[:6].any()


def test_too_many_unreadable_images_fail_without_leaving_a_cache(odd_images):
    root, images = odd_images
    (root / "test" / "corrupt.jpg").write_bytes(b"garbage")
    images = _images_table([*images["image"], "corrupt.jpg"])
    out = root / "c.npy"
    with pytest.raises(ValueError, match=r"1 of 7 images unreadable .* cache.max_bad_fraction"):
        build_cache(images, root, 16, out, max_bad_fraction=0.1)
    assert not out.exists()
    assert [p.name for p in root.iterdir() if p.suffix == ".npy"] == []


def test_missing_image_counts_as_unreadable(odd_images):
    root, images = odd_images
    images = _images_table([*images["image"], "gone.jpg"])
    report = build_cache(images, root, 16, root / "c.npy", max_bad_fraction=0.5)
    assert report["bad"][0]["image"] == "gone.jpg"


def test_stale_cache_is_a_clear_error(odd_images):
    root, images = odd_images
    out = root / "c.npy"
    build_cache(images, root, 16, out, max_bad_fraction=0.0)
    with pytest.raises(ValueError, match=r"expected a uint8 array of shape \(7, 16, 16, 3\)"):
        load_cache(out, 7, 16)
    with pytest.raises(FileNotFoundError, match="cache@32"):
        load_cache(root / "none.npy", 6, 32)


def test_rows_must_follow_table_order(odd_images):
    root, images = odd_images
    with pytest.raises(ValueError, match="'row' must be 0..N-1"):
        build_cache(images.iloc[::-1], root, 16, root / "c.npy", max_bad_fraction=0.0)

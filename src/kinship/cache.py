"""The decode-once image cache: every image decoded once into one memory-mappable array.

`data/cache/<size>.npy` holds N×S×S×3 uint8 RGB, row i = row i of the images table, so no
training step ever decodes a JPEG. Grey, CMYK, palette, alpha and 16-bit images are converted to
RGB, PNG data behind a .jpg name is read by content, and non-square images are centre-cropped to a
square before resizing. Unreadable (corrupt, truncated) images are reported by path, left as zero
rows and listed in the report, so members can exclude them; the stage fails only when their
fraction exceeds `cache.max_bad_fraction`.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

log = logging.getLogger(__name__)

CHUNK = 256


def image_path(root: Path, image: str, split: str) -> Path:
    """Where an image token lives: train/<token> or test/<token>."""
    return Path(root) / split / image


def decode(path: Path, size: int) -> np.ndarray:
    """One image as size×size×3 uint8 RGB; raises OSError/ValueError when it cannot be read."""
    with Image.open(path) as img:
        img.draft("RGB", (size, size))  # JPEG: decode at a reduced scale when much larger
        img = img.convert("RGB") if img.mode != "RGB" else img
        img.load()
        width, height = img.size
        side = min(width, height)
        if width != height:
            left, top = (width - side) // 2, (height - side) // 2
            img = img.crop((left, top, left + side, top + side))
        if side != size:
            img = img.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(img, dtype=np.uint8)


def _decode_chunk(args: tuple[str, list[tuple[int, str]], int]) -> list[tuple[int, str, str]]:
    """Decode rows into the shared memmap; return the (row, path, error) of unreadable ones."""
    out_path, jobs, size = args
    array = np.load(out_path, mmap_mode="r+")
    bad = []
    for row, path in jobs:
        try:
            array[row] = decode(Path(path), size)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            array[row] = 0
            bad.append((row, path, f"{type(err).__name__}: {err}"))
    array.flush()
    return bad


def build_cache(
    images: pd.DataFrame,
    root: Path,
    size: int,
    out_path: Path,
    max_bad_fraction: float,
    workers: int | None = None,
) -> dict:
    """Decode every image of the table at `size` into `out_path`; return the report.

    The array is written under a temporary name and renamed only when the bad fraction is within
    bounds, so a failed run leaves no cache behind.
    """
    if not np.array_equal(images["row"].to_numpy(), np.arange(len(images))):
        raise ValueError("images table: column 'row' must be 0..N-1 in table order")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = out_path.with_name(f".{out_path.stem}.tmp.npy")
    np.lib.format.open_memmap(
        tmp_path, mode="w+", dtype=np.uint8, shape=(len(images), size, size, 3)
    ).flush()
    jobs = [
        (int(r), str(image_path(root, img, split)))
        for r, img, split in images[["row", "image", "split"]].itertuples(index=False)
    ]
    chunks = [(str(tmp_path), jobs[i : i + CHUNK], size) for i in range(0, len(jobs), CHUNK)]
    workers = workers or min(os.cpu_count() or 1, len(chunks))
    bad: list[tuple[int, str, str]] = []
    try:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            done = pool.map(_decode_chunk, chunks)
            for result in tqdm(
                done, total=len(chunks), desc=f"cache@{size}", unit="chunk", disable=None
            ):
                bad.extend(result)
        bad.sort()
        fraction = len(bad) / len(images)
        for _, path, error in bad:
            log.warning("cache@%d: unreadable image %s (%s)", size, path, error)
        if fraction > max_bad_fraction:
            raise ValueError(
                f"cache@{size}: {len(bad)} of {len(images)} images unreadable ({fraction:.2%}) "
                f"exceeds cache.max_bad_fraction = {max_bad_fraction:.2%}; first: {bad[0][1]}"
            )
        os.replace(tmp_path, out_path)
    finally:
        tmp_path.unlink(missing_ok=True)
    return {
        "size": size,
        "images": len(images),
        "bad_images": len(bad),
        "bad": [{"row": r, "image": images["image"].iat[r], "error": e} for r, _, e in bad],
    }


def load_cache(path: Path, n_images: int, size: int) -> np.ndarray:
    """Memory-map a cache and check it matches the images table and the size."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image cache missing (run `dvc repro cache@{size}`)")
    array = np.load(path, mmap_mode="r")
    expected = (n_images, size, size, 3)
    if array.shape != expected or array.dtype != np.uint8:
        raise ValueError(
            f"{path}: expected a uint8 array of shape {expected}, got {array.dtype} {array.shape}"
            " (stale cache: run `dvc repro`)"
        )
    return array


def run_cache(params, size: int) -> None:
    """The cache@<size> stage: every image of the images table decoded once at `size`."""
    import time

    from kinship import paths
    from kinship.io import write_json

    if size not in params.cache.sizes:
        raise ValueError(
            f"cache size {size} is not listed in params.yaml cache.sizes {params.cache.sizes}"
        )
    if not paths.IMAGES_TABLE.is_file():
        raise FileNotFoundError(f"{paths.IMAGES_TABLE}: run the prepare stage first")
    images = pd.read_parquet(paths.IMAGES_TABLE)
    start = time.perf_counter()
    report = build_cache(
        images, params.data.root_path, size, paths.cache_file(size), params.cache.max_bad_fraction
    )
    write_json(paths.CACHE_REPORTS_DIR / f"{size}.json", report)
    seconds = time.perf_counter() - start
    log.info(
        "cache@%d: %d images (%d unreadable) in %.1f s, %.0f img/s",
        size,
        report["images"],
        report["bad_images"],
        seconds,
        report["images"] / seconds,
    )

"""dlib descriptor throughput, and what computing it once per image saves on Kaggle's test pairs.

1. Images per second of the embed stage's code (`kinship.embed.embed_images`: detected box, one
   view, no jitter) on the first N real test images, with one and with two worker processes.
2. On the first P pairs of `sample_submission.csv`: the time to embed their unique images once
   against embedding both images of every pair (per-pair embedding, as a siamese net called on
   each pair does), measured; then the same ratio on the whole test geometry (5,310 pairs over
   6,282 images), from the counts at the measured two-worker rate.
3. The embed stage's time on the whole real data, when a `bench_real_fiw.py --run` workspace is
   given (its `reports/bench_real_fiw_timing.json`).

    python benchmarks/bench_dlib_throughput.py [--images 240] [--pairs 150] [--workspace DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
ROOT = REPO / "data" / "real" / "fiw"
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_demo import cpu_description  # noqa: E402

from kinship.embed import embed_images  # noqa: E402
from kinship.params import EmbedParams  # noqa: E402

PARAMS = EmbedParams(face_box="detect", flip=False, jitter=0)


def table_of(names: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"image": names, "split": "test", "row": np.arange(len(names))})


def seconds_to_embed(names: list[str], workers: int) -> float:
    start = time.perf_counter()
    embed_images(table_of(names), ROOT, PARAMS, max_bad_fraction=0.0, workers=workers)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=240)
    parser.add_argument("--pairs", type=int, default=150)
    parser.add_argument("--workspace", type=Path, help="a bench_real_fiw.py --run workspace")
    args = parser.parse_args()
    if not (ROOT / "sample_submission.csv").is_file():
        raise SystemExit("the real data is missing: unpack it under data/real/fiw (README)")
    print(f"CPU: {cpu_description()}")
    test_images = sorted(p.name for p in (ROOT / "test").glob("*.jpg"))
    sample = test_images[: args.images]
    seconds_to_embed(sample[:8], 1)  # load the models' files into the page cache
    rates = {}
    for workers in (1, 2):
        seconds = seconds_to_embed(sample, workers)
        rates[workers] = len(sample) / seconds
        print(
            f"{workers} worker(s): {len(sample)} images in {seconds:.1f} s, "
            f"{rates[workers]:.1f} img/s"
        )
    print(f"two workers / one: {rates[2] / rates[1]:.2f}x")

    pairs = pd.read_csv(ROOT / "sample_submission.csv")["img_pair"].str.split("-", expand=True)
    subset = pairs.iloc[: args.pairs]
    unique = sorted(set(subset[0]) | set(subset[1]))
    per_pair = [*subset[0], *subset[1]]
    once, every = seconds_to_embed(unique, 2), seconds_to_embed(per_pair, 2)
    print(
        f"first {len(subset)} test pairs: embed once {len(unique)} images in {once:.1f} s, "
        f"per pair {len(per_pair)} images in {every:.1f} s: per-pair / once = {every / once:.2f}"
    )
    n_pairs, n_images = len(pairs), len(set(pairs[0]) | set(pairs[1]))
    print(
        f"whole test geometry: {n_pairs} pairs over {n_images} images: per pair "
        f"{2 * n_pairs / rates[2]:.0f} s, once {n_images / rates[2]:.0f} s at {rates[2]:.1f} img/s "
        f"(ratio {2 * n_pairs / n_images:.2f})"
    )
    if args.workspace:
        timing = json.loads((args.workspace / "reports/bench_real_fiw_timing.json").read_text())
        embed = timing["embed"]
        print(f"embed stage on the real data (train + test images, with flip): "
              f"{embed['seconds']} s, "
              f"peak RSS {embed['peak_rss_mib']} MiB")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

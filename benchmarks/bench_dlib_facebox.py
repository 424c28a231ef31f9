"""Which face box aligns FIW crops better for dlib: the whole image or a detected box?

Embeds the images of the F09 holdout pairs twice (`embed.face_box: whole` and `detect`, no flip,
no jitter) and prints, for each, the zero-shot AUC of the negative descriptor distance with a
95 % family-bootstrap interval, the share of images where the HOG detector found a face, and the
paired bootstrap difference. Run in a workspace whose `prepare` used a holdout (the real-data
profile: `kinship profile profiles/fiw-cpu.yaml && dvc repro prepare`):

    python benchmarks/bench_dlib_facebox.py [WORKSPACE]
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from kinship.embed import embed_images
from kinship.metrics import auc, family_bootstrap_aucs, pair_families
from kinship.params import load_params


def main() -> None:
    workspace = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    os.chdir(workspace)
    params = load_params()
    images = pd.read_parquet("data/prepared/images.parquet")
    pairs = pd.read_parquet("data/prepared/holdout_pairs.parquet")
    pairs = pairs[pairs["kind"] != "in_family_nonkin"]  # the 592-pair protocol
    if pairs.empty:
        raise SystemExit("no holdout pairs: prepare with folds.holdout_prefix set (e.g. F09)")
    used = images[images["image"].isin(set(pairs["img1"]) | set(pairs["img2"]))]
    subset = used.assign(row=np.arange(len(used)))
    row_of = dict(zip(subset["image"], subset["row"], strict=True))
    r1, r2 = pairs["img1"].map(row_of).to_numpy(), pairs["img2"].map(row_of).to_numpy()
    labels = pairs["label"].to_numpy()
    groups = pair_families(
        pairs["pair_id"], dict(zip(images["image"], images["family"], strict=True))
    )
    print(f"{len(pairs)} holdout pairs over {len(subset)} images")
    scores = {}
    for box in ("whole", "detect"):
        embed = type(params.embed)(face_box=box, flip=False, jitter=0)
        start = time.perf_counter()
        arrays, report = embed_images(subset, params.data.root_path, embed, 0.01)
        seconds = time.perf_counter() - start
        d = arrays["descriptors"][:, 0]
        scores[box] = -np.linalg.norm(d[r1] - d[r2], axis=1)
        boots = family_bootstrap_aucs(labels, scores[box][:, None], groups, 0, 1000)[:, 0]
        low, high = np.nanpercentile(boots, [2.5, 97.5])
        print(
            f"face_box {box:6s}: zero-shot AUC {auc(labels, scores[box]):.3f} "
            f"[{low:.3f}, {high:.3f}]"
            f"  detector found a face in {report['faces_detected']}/{len(subset)} images"
            f"  ({seconds:.1f} s, {len(subset) / seconds:.1f} img/s)"
        )
    both = np.stack([scores["detect"], scores["whole"]], axis=1)
    boots = family_bootstrap_aucs(labels, both, groups, 0, 1000)
    diff = boots[:, 0] - boots[:, 1]
    low, high = np.nanpercentile(diff, [2.5, 97.5])
    gain = auc(labels, scores["detect"]) - auc(labels, scores["whole"])
    print(f"detect - whole: {gain:+.3f} [{low:+.3f}, {high:+.3f}] (paired family bootstrap)")


if __name__ == "__main__":
    main()

"""The GPU benchmark's data, made on the machine: synthetic FIW → prepared tables → uint8 caches.

The pipeline's own code in a temporary folder, without DVC: `kinship.synth` renders the families
(one process per core: about 65 images/s per core at 224 px), `kinship.prepare.prepare` writes the
tables, `kinship.cache.build_cache` decodes every image once per input size, and the trainer's
`Prepared` and `load_cache` read them back as the train stage does. Imports no framework: run it
before torch touches the GPU (`build_cache` forks its decoding processes).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kinship.cache import build_cache, load_cache
from kinship.params import FoldParams, PairParams
from kinship.prepare import prepare
from kinship.synth.config import SynthConfig
from kinship.synth.dataset import generate
from kinship.train_stage import Prepared

TEST_FAMILIES = 2  # the generator needs some; the benchmark never reads them


@dataclass
class BenchData:
    prepared: Prepared
    caches: dict[int, np.ndarray]  # input size → N×S×S×3 uint8, images-table order
    summary: dict  # counts and seconds, for the report


def cores() -> int:
    """The cores this process may use (the container's share, not the host's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def make_data(workdir: Path, families: int, sizes: list[int], folds: int, seed: int) -> BenchData:
    """Render `families` synthetic families at the largest of `sizes`, prepare them with `folds`
    family-disjoint folds and cache every image at each size."""
    workdir, workers = Path(workdir), cores()
    start = time.perf_counter()
    config = SynthConfig(
        seed=seed, n_families=families, n_test_families=TEST_FAMILIES, image_size=max(sizes)
    )
    generate(workdir / "fiw", config, workers=workers)
    synth_s = time.perf_counter() - start
    counts = prepare(
        workdir / "fiw",
        FoldParams(k=folds, seed=seed),
        PairParams(seed=seed),
        out_dir=workdir / "prepared",
        summary_path=workdir / "prepare_summary.json",
    )
    prepared = Prepared.load(workdir / "prepared")
    caches = {}
    for size in sorted(set(sizes)):
        path = workdir / "cache" / f"{size}.npy"
        report = build_cache(prepared.images, workdir / "fiw", size, path, 0.0, workers)
        caches[size] = load_cache(path, report["images"], size)
    summary = {
        "families": families,
        "images": int(len(prepared.images)),
        "train_images": counts["train_images"],
        "relationships": counts["usable_relationships"],
        "sizes": sorted(set(sizes)),
        "processes": workers,
        "synth_seconds": round(synth_s, 1),
        "total_seconds": round(time.perf_counter() - start, 1),
    }
    return BenchData(prepared, caches, summary)

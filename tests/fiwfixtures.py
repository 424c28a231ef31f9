"""Tiny hand-made datasets in the Kaggle FIW layout, with the real data's quirks, for tests.

Images are flat colour squares (nothing here is real data). Person folders are listed per family as
{MID name: number of images}; a relationship row may name a person who has no folder.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, seed: int, size: int = 32) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG", quality=90)


def make_fiw(
    root: Path,
    families: dict[str, dict[str, int]],
    relationships: list[tuple[str, str]],
    test_images: int = 0,
    test_pairs: list[tuple[int, int]] = (),
) -> Path:
    """Write a dataset; returns root. Test images are named face00000.jpg, face00001.jpg, ..."""
    seed = 0
    for family, people in families.items():
        for mid, n_images in people.items():
            person_dir = root / "train" / family / mid
            person_dir.mkdir(parents=True, exist_ok=True)
            for k in range(n_images):
                seed += 1
                write_image(person_dir / f"P{seed:05d}_face{k + 1}.jpg", seed)
    with (root / "train_relationships.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["p1", "p2"])
        writer.writerows(relationships)
    if test_images:
        for i in range(test_images):
            write_image(root / "test" / f"face{i:05d}.jpg", 10_000 + i)
        with (root / "sample_submission.csv").open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["img_pair", "is_related"])
            for a, b in test_pairs:
                writer.writerow([f"face{a:05d}.jpg-face{b:05d}.jpg", 0])
    return root


def quirky_fiw(root: Path) -> Path:
    """Six families; rows with a missing person, an unknown family, a self pair, a reverse
    duplicate; a single-image person; a spouse (F0001/MID2) not linked to the parents (MID3/4)."""
    families = {
        "F0001": {"MID1": 3, "MID2": 2, "MID3": 2, "MID4": 1, "MID5": 2},
        "F0002": {"MID1": 2, "MID2": 2, "MID3": 3},
        "F0003": {"MID1": 2, "MID2": 2},
        "F0004": {"MID1": 4, "MID2": 2, "MID3": 2},
        "F0905": {"MID1": 2, "MID2": 2, "MID3": 2},
        "F0906": {"MID1": 2, "MID2": 3},
    }
    relationships = [
        ("F0001/MID1", "F0001/MID5"),
        ("F0001/MID2", "F0001/MID5"),
        ("F0001/MID3", "F0001/MID1"),
        ("F0001/MID4", "F0001/MID1"),
        ("F0001/MID5", "F0001/MID1"),  # duplicate in reverse order
        ("F0001/MID1", "F0001/MID9"),  # person without a folder
        ("F0002/MID1", "F0002/MID3"),
        ("F0002/MID2", "F0002/MID3"),
        ("F0002/MID2", "F0002/MID2"),  # the same person twice
        ("F0003/MID1", "F0003/MID2"),
        ("F0004/MID1", "F0004/MID2"),
        ("F0004/MID1", "F0004/MID3"),
        ("F0004/MID2", "F0004/MID3"),
        ("F0099/MID1", "F0099/MID2"),  # unknown family
        ("F0905/MID1", "F0905/MID3"),
        ("F0905/MID2", "F0905/MID3"),
        ("F0906/MID1", "F0906/MID2"),
    ]
    return make_fiw(
        root, families, relationships, test_images=6, test_pairs=[(0, 1), (2, 3), (4, 5), (1, 4)]
    )

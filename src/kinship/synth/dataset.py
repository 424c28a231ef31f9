"""Write a complete Kaggle-format FIW dataset of synthetic families, atomically.

Layout (as Kaggle's "Recognizing Faces in the Wild"):
    train/FXXXX/MIDn/PNNNNN_faceK.jpg   photos of train families (P ids unique per photo)
    train_relationships.csv             p1,p2 blood relations, e.g. F0002/MID1,F0002/MID3
    test/faceNNNNN.jpg                  photos of separate test families, in shuffled order
    sample_submission.csv               img_pair,is_related (all 0, as on Kaggle)
    test_labels.csv                     the true is_related of the same pairs, same order
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from kinship.synth.config import SynthConfig
from kinship.synth.family import Family, build_family
from kinship.synth.render import encode_jpeg, render_photos

log = logging.getLogger(__name__)

# independent random streams: a family's or a photo's draws never depend on how many others
# exist, and the train part of a dataset does not depend on the number of test families
_FAMILY, _PHOTO, _TRAIN_NAMES, _TEST_NAMES, _ROWS, _PAIRS = range(1, 7)


@dataclass(frozen=True)
class Photo:
    """One rendered photo of a person: where it comes from and the name it is written under."""

    family: int
    person: int
    index: int
    name: str


def generate(out_dir: Path, cfg: SynthConfig, workers: int = 1) -> dict[str, int]:
    """Write the dataset into `out_dir` (replacing it) and return its counts.

    `workers` processes render the photos. Every photo draws from its own random stream, so the
    files are byte-identical whatever the number of workers.
    """
    if workers < 1:
        raise ValueError(f"synthesize: workers must be >= 1, got {workers}")
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        summary = _write_dataset(staging, cfg, workers)
        _replace_dir(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return summary


def build_families(cfg: SynthConfig) -> tuple[list[Family], list[Family]]:
    """The train and test families of a config (test ids follow the train ids)."""
    families = []
    for k in range(cfg.n_families + cfg.n_test_families):
        rng = np.random.default_rng([cfg.seed, _FAMILY, k])
        families.append(
            build_family(
                f"F{k + 1:04d}",
                cfg.family_size,
                cfg.photos_per_person,
                cfg.missing_folder_rate,
                cfg.difficulty,
                rng,
            )
        )
    return families[: cfg.n_families], families[cfg.n_families :]


def _write_dataset(root: Path, cfg: SynthConfig, workers: int) -> dict[str, int]:
    train, test = build_families(cfg)
    train_photos = _train_photos(train, _stream(cfg, _TRAIN_NAMES))
    test_photos = _test_photos(test, cfg.n_families, _stream(cfg, _TEST_NAMES))
    _write_photos(root, train_photos + test_photos, train + test, cfg, workers)
    rows = relationship_rows(train, cfg.reverse_duplicate_rate, _stream(cfg, _ROWS))
    _write_csv(root / "train_relationships.csv", ["p1", "p2"], rows)
    per_relation = cfg.test_pairs_per_relation
    pairs = test_pairs(test, test_photos, cfg.n_families, per_relation, _stream(cfg, _PAIRS))
    names = [f"{a}-{b}" for a, b, _, _ in pairs]
    _write_csv(root / "sample_submission.csv", ["img_pair", "is_related"], [(n, 0) for n in names])
    labels = [(n, label) for n, (_, _, label, _) in zip(names, pairs, strict=True)]
    _write_csv(root / "test_labels.csv", ["img_pair", "is_related"], labels)
    return _summary(train, test, train_photos, test_photos, rows, pairs)


def _train_photos(train: list[Family], rng: np.random.Generator) -> list[Photo]:
    """train/FXXXX/MIDn/PNNNNN_faceK.jpg, with photo ids numbered in a shuffled order."""
    slots = [
        (f, i, k)
        for f, family in enumerate(train)
        for i, person in enumerate(family.people)
        for k in range(person.n_photos)
    ]
    photo_ids = rng.permutation(len(slots)) + 1
    faces = rng.integers(1, 5, len(slots))
    photos = []
    for (f, i, k), pid, face in zip(slots, photo_ids, faces, strict=True):
        folder = f"{train[f].family_id}/MID{train[f].people[i].mid}"
        photos.append(Photo(f, i, k, f"train/{folder}/P{pid:05d}_face{face}.jpg"))
    return photos


def _test_photos(test: list[Family], offset: int, rng: np.random.Generator) -> list[Photo]:
    """test/faceNNNNN.jpg, numbered in a shuffled order so numbers reveal no family."""
    slots = [
        (offset + f, i, k)
        for f, family in enumerate(test)
        for i, person in enumerate(family.people)
        for k in range(person.n_photos)
    ]
    numbers = rng.permutation(len(slots)) + 1
    return [
        Photo(f, i, k, f"test/face{n:05d}.jpg") for (f, i, k), n in zip(slots, numbers, strict=True)
    ]


def _stream(cfg: SynthConfig, purpose: int) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, purpose])


def photo_rng(cfg: SynthConfig, family: int, person: int, index: int) -> np.random.Generator:
    """The random stream of one photo: its own, so photos never share nuisance draws."""
    return np.random.default_rng([cfg.seed, _PHOTO, family, person, index])


def _write_photos(
    root: Path, photos: list[Photo], families: list[Family], cfg: SynthConfig, workers: int
) -> None:
    """Render each person's photos in one batch and write them as JPEG files."""
    by_person: dict[tuple[int, int], list[Photo]] = {}
    for photo in photos:
        by_person.setdefault((photo.family, photo.person), []).append(photo)
    jobs = [
        (root, cfg, family, person, families[family].people[person].looks, batch)
        for (family, person), batch in by_person.items()
    ]
    for folder in sorted({(root / photo.name).parent for photo in photos}):
        folder.mkdir(parents=True, exist_ok=True)  # before the workers, so none races another
    if workers == 1 or len(jobs) < 2:
        for job in jobs:
            _write_person(*job)
        return
    # spawn: a clean interpreter per worker, whatever the parent process has loaded
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        chunk = max(1, len(jobs) // (8 * workers))
        for _ in pool.map(_write_person, *zip(*jobs, strict=True), chunksize=chunk):
            pass


def _write_person(
    root: Path, cfg: SynthConfig, family: int, person: int, looks: dict, batch: list[Photo]
) -> None:
    rngs = [photo_rng(cfg, family, person, photo.index) for photo in batch]
    rendered = render_photos(looks, cfg.image_size, cfg.difficulty, rngs)
    for photo, (pixels, quality) in zip(batch, rendered, strict=True):
        (root / photo.name).write_bytes(encode_jpeg(pixels, quality))


def _token(family: Family, index: int) -> str:
    return f"{family.family_id}/MID{family.people[index].mid}"


def relationship_rows(
    train: list[Family], reverse_duplicate_rate: float, rng: np.random.Generator
) -> list[tuple[str, str]]:
    """Blood relations among named people, shuffled, each in a random direction, some twice."""
    rows = []
    for family in train:
        for a, b, _ in family.relations:
            if family.people[a].named and family.people[b].named:
                pair = (_token(family, a), _token(family, b))
                rows.append(pair if rng.random() < 0.5 else pair[::-1])
    duplicates = [(b, a) for a, b in rows if rng.random() < reverse_duplicate_rate]
    rows += duplicates
    return [rows[k] for k in rng.permutation(len(rows))]


def test_pairs(
    test: list[Family],
    photos: list[Photo],
    offset: int,
    per_relation: int,
    rng: np.random.Generator,
) -> list[tuple[str, str, int, str]]:
    """(image a, image b, is_related, kind) test pairs: kin, in-family non-kin, cross-family.

    Kin: `per_relation` image pairs of every blood relation with both people photographed.
    In-family non-kin: one image pair of every unrelated pair of one family (spouses, in-laws).
    Cross-family: random people of two different families, enough to balance the labels.
    """
    by_person: dict[tuple[int, int], list[str]] = {}
    for photo in photos:
        by_person.setdefault((photo.family, photo.person), []).append(photo.name.split("/")[-1])
    kin, spouses = [], []
    for f, family in enumerate(test, start=offset):
        shown = family.photographed()
        blood = family.blood_pairs()
        for n, a in enumerate(shown):
            for b in shown[n + 1 :]:
                people = (by_person[(f, a)], by_person[(f, b)])
                if frozenset((a, b)) in blood:
                    kin += [(*_image_pair(*people, rng), 1, "kin") for _ in range(per_relation)]
                else:
                    spouses.append((*_image_pair(*people, rng), 0, "in_family_nonkin"))
    people = list(by_person)
    cross = []
    while len(cross) < max(len(kin) - len(spouses), len(kin) // 2):
        a, b = (people[k] for k in rng.choice(len(people), 2, replace=False))
        if a[0] != b[0]:
            cross.append((*_image_pair(by_person[a], by_person[b], rng), 0, "cross_family"))
    unique = {frozenset(pair[:2]): pair for pair in reversed(kin + spouses + cross)}
    pairs = sorted(unique.values())  # repeats dropped; sorted so the shuffle is reproducible
    return [pairs[k] for k in rng.permutation(len(pairs))]


def _image_pair(first: list[str], second: list[str], rng: np.random.Generator) -> tuple[str, str]:
    """One photo of each person, in a random order."""
    a, b = first[rng.integers(len(first))], second[rng.integers(len(second))]
    return (a, b) if rng.random() < 0.5 else (b, a)


def _write_csv(path: Path, header: list[str], rows: list[tuple]) -> None:
    lines = [",".join(header)] + [",".join(str(x) for x in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _replace_dir(staging: Path, out_dir: Path) -> None:
    """Swap the finished staging folder in for `out_dir` (two renames, then clean up)."""
    old = None
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=out_dir.parent))
        os.replace(out_dir, old / out_dir.name)
    os.replace(staging, out_dir)
    if old is not None:
        shutil.rmtree(old)


def _summary(
    train: list[Family],
    test: list[Family],
    train_photos: list[Photo],
    test_photos: list[Photo],
    rows: list[tuple[str, str]],
    pairs: list[tuple[str, str, int, str]],
) -> dict[str, int]:
    people = [p for family in train for p in family.people if p.photographed]
    folders = {_token(f, i) for f in train for i in f.photographed()}
    kinds = [kind for *_, kind in pairs]
    return {
        "families": len(train),
        "people": len(people),
        "images": len(train_photos),
        "single_image_people": sum(p.n_photos == 1 for p in people),
        "relationship_rows": len(rows),
        "rows_missing_folder": sum(a not in folders or b not in folders for a, b in rows),
        "test_families": len(test),
        "test_people": sum(len(f.photographed()) for f in test),
        "test_images": len(test_photos),
        "test_pairs": len(pairs),
        "test_kin_pairs": kinds.count("kin"),
        "test_in_family_nonkin_pairs": kinds.count("in_family_nonkin"),
        "test_cross_family_pairs": kinds.count("cross_family"),
    }


def run_synthesize(params) -> None:
    """The synthesize stage: the dataset of params.yaml `synthesize` into data/synthetic/."""
    from kinship import paths

    summary = generate(paths.SYNTHETIC_DIR, params.synth_config(), workers=os.cpu_count() or 1)
    log.info("synthesize: %s", summary)

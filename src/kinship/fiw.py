"""Index a dataset in the Kaggle FIW layout: images, people, families and relationship rows.

Layout: `train/FXXXX/MIDn/*.jpg`, `train_relationships.csv` (`p1,p2` person tokens such as
`F0002/MID1`), and optionally `test/*.jpg` with `sample_submission.csv` (`img_pair,is_related`),
and `test_labels.csv` (the same columns, 0/1 truth) when the dataset publishes its test labels, as
the synthetic one does; they are only ever used to score the submission.
Image tokens are paths under `train/` (`F0002/MID1/P00001_face1.jpg`) or file names under `test/`
(`face05508.jpg`), exactly as Kaggle names them.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
PERSON_RE = re.compile(r"^(F\d{4})/(MID\d+)$")
FAMILY_RE = re.compile(r"^F\d{4}$")
PERSON_DIR_RE = re.compile(r"^MID\d+$")
PAIR_RE = re.compile(r"^(.+?\.(?:jpe?g|png))-(.+\.(?:jpe?g|png))$", re.IGNORECASE)

RELATIONSHIPS_FILE = "train_relationships.csv"
TEST_LABELS_FILE = "test_labels.csv"
SUBMISSION_FILE = "sample_submission.csv"


@dataclass
class RelationshipCounts:
    """What happened to the rows of train_relationships.csv."""

    rows: int = 0
    usable: int = 0
    dropped: Counter = field(default_factory=Counter)


@dataclass
class FiwIndex:
    root: Path
    images: pd.DataFrame  # image, split, person, family, row
    people: pd.DataFrame  # person, family, n_images
    relationships: pd.DataFrame  # p1, p2, family (usable rows, p1 < p2, deduplicated)
    relationship_counts: RelationshipCounts
    test_pairs: pd.DataFrame  # img_pair, img1, img2 (sample_submission order)
    skipped_files: Counter
    test_labels: pd.DataFrame  # img_pair, is_related (int8); no rows without test_labels.csv


def index_dataset(root: Path) -> FiwIndex:
    """Index `root`; raise FileNotFoundError/ValueError naming the file or row that is wrong."""
    root = Path(root)
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise FileNotFoundError(
            f"{train_dir}: no train/ folder; expected the Kaggle FIW layout "
            "train/FXXXX/MIDn/*.jpg, train_relationships.csv, test/*.jpg, sample_submission.csv "
            "(set data.root in params.yaml)"
        )
    skipped: Counter = Counter()
    train = _index_train(train_dir, skipped)
    test = _index_test(root)
    images = pd.concat([train, test], ignore_index=True)
    images["row"] = range(len(images))
    people = _people(train)
    relationships, counts = read_relationships(root / RELATIONSHIPS_FILE, people)
    test_pairs = read_test_pairs(root, set(test["image"]))
    test_labels = read_test_labels(root, test_pairs)
    return FiwIndex(root, images, people, relationships, counts, test_pairs, skipped, test_labels)


def _index_train(train_dir: Path, skipped: Counter) -> pd.DataFrame:
    records = []
    for family_dir in sorted(train_dir.iterdir()):
        if not family_dir.is_dir() or not FAMILY_RE.match(family_dir.name):
            skipped["train entries not named FXXXX"] += 1
            continue
        for person_dir in sorted(family_dir.iterdir()):
            if not person_dir.is_dir() or not PERSON_DIR_RE.match(person_dir.name):
                skipped["family entries not named MIDn"] += 1
                continue
            person = f"{family_dir.name}/{person_dir.name}"
            for image in sorted(person_dir.iterdir()):
                if not _is_image(image):
                    skipped["non-image files"] += 1
                    continue
                token = f"{person}/{image.name}"
                records.append((token, "train", person, family_dir.name))
    if not records:
        raise ValueError(f"{train_dir}: no images found under train/FXXXX/MIDn/")
    return pd.DataFrame.from_records(records, columns=["image", "split", "person", "family"])


def _index_test(root: Path) -> pd.DataFrame:
    test_dir = root / "test"
    names = sorted(p.name for p in test_dir.iterdir() if _is_image(p)) if test_dir.is_dir() else []
    return pd.DataFrame(
        {
            "image": names,
            "split": "test",
            "person": pd.Series([None] * len(names), dtype=object),
            "family": pd.Series([None] * len(names), dtype=object),
        }
    )


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def _people(train: pd.DataFrame) -> pd.DataFrame:
    people = train.groupby("person", sort=True).agg(
        family=("family", "first"), n_images=("image", "size")
    )
    return people.reset_index()


def read_relationships(path: Path, people: pd.DataFrame) -> tuple[pd.DataFrame, RelationshipCounts]:
    """Usable relationship rows (both people have images), deduplicated in either order.

    Dropped rows are counted by reason: a person named twice, an unknown family, a person with no
    images, a duplicate. A token that is not `FXXXX/MIDn` is an error naming the row.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: relationship file not found (columns p1,p2 expected)")
    known_people = set(people["person"])
    known_families = set(people["family"])
    counts = RelationshipCounts()
    seen: set[tuple[str, str]] = set()
    rows = []
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        if header[:2] != ["p1", "p2"]:
            raise ValueError(f"{path}: header must start with p1,p2, got {','.join(header)!r}")
        for line_no, row in enumerate(reader, start=2):
            if not any(cell.strip() for cell in row):
                continue
            counts.rows += 1
            p1, p2 = (_person_token(path, line_no, row, i) for i in (0, 1))
            reason = _drop_reason(p1, p2, known_people, known_families, seen)
            if reason:
                counts.dropped[reason] += 1
                continue
            seen.add((min(p1, p2), max(p1, p2)))
            rows.append((min(p1, p2), max(p1, p2), p1.split("/")[0]))
    counts.usable = len(rows)
    table = pd.DataFrame.from_records(rows, columns=["p1", "p2", "family"])
    return table.sort_values(["p1", "p2"], ignore_index=True), counts


def _person_token(path: Path, line_no: int, row: list[str], i: int) -> str:
    if len(row) < 2:
        raise ValueError(f"{path}, row {line_no}: expected two columns p1,p2, got {row!r}")
    token = row[i].strip()
    if not PERSON_RE.match(token):
        raise ValueError(
            f"{path}, row {line_no}: p{i + 1} {token!r} is not a person token like 'F0002/MID1'"
        )
    return token


def _drop_reason(p1, p2, known_people, known_families, seen) -> str | None:
    if p1 == p2:
        return "same person twice"
    if p1.split("/")[0] != p2.split("/")[0]:
        return "people from different families"
    if p1.split("/")[0] not in known_families:
        return "unknown family"
    if p1 not in known_people or p2 not in known_people:
        return "person without images"
    if (min(p1, p2), max(p1, p2)) in seen:
        return "duplicate (either order)"
    return None


def read_test_pairs(root: Path, test_images: set[str]) -> pd.DataFrame:
    """Pairs of sample_submission.csv in file order; every image must exist under test/."""
    path = root / SUBMISSION_FILE
    if not path.is_file():
        if test_images:
            raise FileNotFoundError(f"{path}: test/ has images but {SUBMISSION_FILE} is missing")
        return pd.DataFrame({"img_pair": [], "img1": [], "img2": []}, dtype=object)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if "img_pair" not in frame.columns:
        raise ValueError(f"{path}: no img_pair column (expected header img_pair,is_related)")
    records = []
    for line_no, img_pair in enumerate(frame["img_pair"], start=2):
        match = PAIR_RE.match(img_pair.strip())
        if not match:
            raise ValueError(
                f"{path}, row {line_no}: img_pair {img_pair!r} is not 'faceA.jpg-faceB.jpg'"
            )
        for image in match.groups():
            if image not in test_images:
                raise ValueError(f"{path}, row {line_no}: image {image!r} not found in test/")
        records.append((img_pair, *match.groups()))
    if len({r[0] for r in records}) != len(records):
        raise ValueError(f"{path}: img_pair values must be unique")
    return pd.DataFrame.from_records(records, columns=["img_pair", "img1", "img2"])


def read_test_labels(root: Path, test_pairs: pd.DataFrame) -> pd.DataFrame:
    """`test_labels.csv` (img_pair,is_related with 0/1 values, one row per pair of
    sample_submission.csv, any order); a table with no rows when the dataset has none."""
    path = root / TEST_LABELS_FILE
    if not path.is_file():
        return pd.DataFrame(
            {"img_pair": pd.Series(dtype=object), "is_related": pd.Series(dtype="int8")}
        )
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if list(frame.columns[:2]) != ["img_pair", "is_related"]:
        raise ValueError(
            f"{path}: header must start with img_pair,is_related, got {list(frame.columns)}"
        )
    known = set(test_pairs["img_pair"])
    seen: set[str] = set()
    for line_no, (img_pair, value) in enumerate(
        zip(frame["img_pair"], frame["is_related"], strict=True), start=2
    ):
        if value.strip() not in ("0", "1"):
            raise ValueError(f"{path}, row {line_no}: is_related must be 0 or 1, got {value!r}")
        if img_pair not in known:
            raise ValueError(
                f"{path}, row {line_no}: img_pair {img_pair!r} is not in {SUBMISSION_FILE}"
            )
        if img_pair in seen:
            raise ValueError(f"{path}, row {line_no}: img_pair {img_pair!r} appears twice")
        seen.add(img_pair)
    if len(seen) != len(known):
        raise ValueError(
            f"{path}: labels for {len(seen)} of the {len(known)} pairs of {SUBMISSION_FILE}; "
            "expected one row per pair"
        )
    return pd.DataFrame(
        {"img_pair": frame["img_pair"], "is_related": frame["is_related"].astype("int8")}
    )

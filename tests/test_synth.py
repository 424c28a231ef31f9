"""The synthetic FIW generator: Kaggle layout, quirks, determinism, config checks, and a real,
learnable kinship signal (HOG + logistic regression on held-out families)."""

from __future__ import annotations

import csv
import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kinship.synth.config import SynthConfig
from kinship.synth.dataset import build_families, generate
from kinship.synth.figure import family_figure

SMALL = SynthConfig(seed=3, n_families=20, n_test_families=6, image_size=48)
TRAIN_IMAGE = re.compile(r"^F\d{4}/MID\d+/P\d{5}_face\d+\.jpg$")
TOKEN = re.compile(r"^F\d{4}/MID\d+$")
TEST_IMAGE = re.compile(r"^face\d{5}\.jpg$")


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def folders(root: Path) -> dict[str, list[str]]:
    """Person token -> its image names."""
    people: dict[str, list[str]] = {}
    for path in sorted((root / "train").glob("F*/MID*/*.jpg")):
        people.setdefault(f"{path.parent.parent.name}/{path.parent.name}", []).append(path.name)
    return people


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("small") / "synthetic"
    return root, generate(root, SMALL)


# ---------------------------------------------------------------- format and quirks


def test_layout_and_csv_headers(small):
    root, summary = small
    assert sorted(p.name for p in root.iterdir()) == [
        "sample_submission.csv",
        "test",
        "test_labels.csv",
        "train",
        "train_relationships.csv",
    ]
    train = sorted(p.relative_to(root / "train").as_posix() for p in (root / "train").rglob("*.*"))
    assert train and all(TRAIN_IMAGE.match(name) for name in train)
    test = sorted(p.name for p in (root / "test").iterdir())
    assert test and all(TEST_IMAGE.match(name) for name in test)
    assert (len(train), len(test)) == (summary["images"], summary["test_images"])
    with Image.open(root / "train" / train[0]) as image:
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (48, 48))
    header, rows = read_csv(root / "train_relationships.csv")
    assert header == ["p1", "p2"] and len(rows) == summary["relationship_rows"]
    assert all(TOKEN.match(a) and TOKEN.match(b) and a != b for a, b in rows)
    assert all(a.split("/")[0] == b.split("/")[0] for a, b in rows)


def test_submission_and_labels_align(small):
    root, summary = small
    sub_header, submission = read_csv(root / "sample_submission.csv")
    label_header, labels = read_csv(root / "test_labels.csv")
    assert sub_header == label_header == ["img_pair", "is_related"]
    assert [r[0] for r in submission] == [r[0] for r in labels]
    assert {r[1] for r in submission} == {"0"} and {r[1] for r in labels} == {"0", "1"}
    assert len(labels) == summary["test_pairs"] == len({r[0] for r in labels})
    test_images = {p.name for p in (root / "test").iterdir()}
    for pair, _ in labels:
        a, b = pair.split("-")
        assert a in test_images and b in test_images and a != b
    related = sum(r[1] == "1" for r in labels) / len(labels)
    assert 0.35 <= related <= 0.65  # roughly balanced
    assert summary["test_in_family_nonkin_pairs"] > 0 and summary["test_cross_family_pairs"] > 0


def test_test_families_are_not_train_families(small):
    root, summary = small
    train, test = build_families(SMALL)
    on_disk = {p.name for p in (root / "train").iterdir()}
    assert on_disk == {f.family_id for f in train}
    assert on_disk.isdisjoint(f.family_id for f in test)
    assert summary["test_images"] == sum(p.n_photos for f in test for p in f.people)


def test_quirks_of_the_real_data(small):
    root, summary = small
    people = folders(root)
    _, rows = read_csv(root / "train_relationships.csv")
    missing = [r for r in rows if r[0] not in people or r[1] not in people]
    assert missing and len(missing) == summary["rows_missing_folder"]
    assert len(missing) < 0.25 * len(rows)
    assert any(len(images) == 1 for images in people.values())
    assert len({len(images) for images in people.values()}) > 3  # varying photos per person
    sizes = {}
    for token in people:
        sizes[token.split("/")[0]] = sizes.get(token.split("/")[0], 0) + 1
    assert all(2 <= n <= 9 for n in sizes.values()) and len(set(sizes.values())) > 2
    pairs = [tuple(r) for r in rows]
    assert set(pairs) & {(b, a) for a, b in pairs}  # some rows repeated in reverse order


def test_rows_are_blood_relations_and_other_family_pairs_are_unrelated(small):
    root, _ = small
    train, _ = build_families(SMALL)
    index = {f"{f.family_id}/MID{p.mid}": (f, i) for f in train for i, p in enumerate(f.people)}
    _, rows = read_csv(root / "train_relationships.csv")
    listed = {frozenset(r) for r in rows}
    for token_pair in listed:
        (family, a), (_, b) = (index[t] for t in token_pair)
        assert frozenset((a, b)) in family.blood_pairs()
    spouses = 0
    for family in train:
        shown = family.photographed()
        for n, a in enumerate(shown):
            for b in shown[n + 1 :]:
                tokens = frozenset(f"{family.family_id}/MID{family.people[i].mid}" for i in (a, b))
                related = frozenset((a, b)) in family.blood_pairs()
                assert related == (tokens in listed)
                spouses += not related
    assert spouses > 0  # in-family non-kin pairs exist


def file_bytes(root: Path) -> dict[str, bytes]:
    """Every file under root: relative path -> content."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    tiny = SynthConfig(seed=5, n_families=3, n_test_families=2, image_size=32)
    summaries = [
        generate(tmp_path / name, cfg)
        for name, cfg in (("a", tiny), ("b", tiny), ("c", dataclasses.replace(tiny, seed=6)))
    ]
    a, b, c = (file_bytes(tmp_path / name) for name in "abc")
    assert summaries[0] == summaries[1] and a == b
    assert any(c.get(path) != content for path, content in a.items())


def test_worker_processes_write_the_same_bytes(tmp_path):
    tiny = SynthConfig(seed=5, n_families=4, n_test_families=2, image_size=32)
    summaries = [generate(tmp_path / f"w{n}", tiny, workers=n) for n in (1, 2)]
    assert summaries[0] == summaries[1]
    assert file_bytes(tmp_path / "w1") == file_bytes(tmp_path / "w2")
    with pytest.raises(ValueError, match="workers must be >= 1, got 0"):
        generate(tmp_path / "w0", tiny, workers=0)
    assert not (tmp_path / "w0").exists()


def test_train_part_does_not_depend_on_test_family_count(tmp_path):
    tiny = SynthConfig(seed=4, n_families=3, n_test_families=2, image_size=32)
    generate(tmp_path / "a", tiny)
    generate(tmp_path / "b", dataclasses.replace(tiny, n_test_families=4))
    a, b = (file_bytes(tmp_path / name) for name in "ab")
    train_a = {k: v for k, v in a.items() if k.startswith("train")}
    assert len(train_a) > 3 and train_a == {k: v for k, v in b.items() if k.startswith("train")}


def test_generate_replaces_out_dir_and_leaves_nothing_on_error(tmp_path, monkeypatch):
    tiny = SynthConfig(seed=1, n_families=2, n_test_families=2, image_size=32)
    out = tmp_path / "synthetic"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    generate(out, tiny)
    assert not (out / "stale.txt").exists() and (out / "train_relationships.csv").exists()
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("kinship.synth.dataset._write_csv", broken)
    for workers in (1, 2):  # photos rendered in worker processes are cleaned up as well
        with pytest.raises(RuntimeError, match="disk full"):
            generate(out, dataclasses.replace(tiny, seed=2), workers=workers)
        assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


# ---------------------------------------------------------------- config validation


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seed", -1),
        ("seed", 1.5),
        ("n_families", 1),
        ("n_families", 20_000),
        ("n_test_families", "30"),
        ("image_size", 8),
        ("difficulty", -0.1),
        ("difficulty", True),
        ("photos_per_person", [3, 2]),
        ("photos_per_person", [0, 4]),
        ("photos_per_person", 5),
        ("family_size", [1, 9]),
        ("family_size", [2, 12]),
        ("missing_folder_rate", 1.5),
        ("reverse_duplicate_rate", -0.2),
        ("test_pairs_per_relation", 0),
    ],
)
def test_bad_config_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=rf"SynthConfig\.{field}: expected"):
        SynthConfig(**{field: value})


def test_family_figure_has_a_row_per_photographed_member():
    cfg = SynthConfig(seed=2, n_families=4, n_test_families=2, image_size=32)
    train, _ = build_families(cfg)
    image = family_figure(cfg, photos=3)
    rows = {image.height // 32}
    assert image.width > 3 * 32 and rows <= {len(f.photographed()) for f in train}


def test_config_is_plain_yaml_values():
    cfg = SynthConfig(photos_per_person=(2, 4))
    assert cfg.photos_per_person == [2, 4]
    assert all(isinstance(v, int | float | str | list) for v in dataclasses.asdict(cfg).values())
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 1  # type: ignore[misc]


# ---------------------------------------------------------------- the kinship signal

HOG = {"orientations": 9, "pixels_per_cell": (12, 12), "cells_per_block": (2, 2)}
PHOTOS_USED = 3  # photos per person entering the pairs (keeps HOG time down)


def family_of(token: str) -> str:
    return token.split("/")[0]


def hog_features(root: Path, people: dict[str, list[str]], grey: bool) -> dict[str, np.ndarray]:
    """HOG of every used image, of the colour photo or of its equalised grey version."""
    from skimage.exposure import equalize_hist
    from skimage.feature import hog

    features = {}
    for token, images in people.items():
        for name in images:
            with Image.open(root / "train" / token / name) as image:
                if grey:
                    pixels = equalize_hist(np.asarray(image.convert("L"), dtype=np.float64))
                    features[f"{token}/{name}"] = hog(pixels, **HOG)
                else:
                    features[f"{token}/{name}"] = hog(np.asarray(image), channel_axis=-1, **HOG)
    return features


def image_pairs(person_pairs, people, per_pair: int, rng) -> list[tuple[str, str]]:
    """`per_pair` random (photo of a, photo of b) pairs for each person pair."""
    out = []
    for a, b in person_pairs:
        for _ in range(per_pair):
            photo_a, photo_b = (people[t][rng.integers(len(people[t]))] for t in (a, b))
            out.append((f"{a}/{photo_a}", f"{b}/{photo_b}"))
    return out


def split_design(root: Path, seed: int) -> tuple[dict, list[dict]]:
    """Held-out-family design: for each half of the families, kin / cross-family pairs and a
    per-family balanced set of kin / in-family non-kin pairs (equal counts in every family)."""
    rng = np.random.default_rng(seed)
    people = {t: images[:PHOTOS_USED] for t, images in folders(root).items()}
    _, rows = read_csv(root / "train_relationships.csv")
    kin = sorted({tuple(sorted(r)) for r in rows if r[0] in people and r[1] in people})
    tokens = sorted(people)
    nonkin = [
        (a, b)
        for n, a in enumerate(tokens)
        for b in tokens[n + 1 :]
        if family_of(a) == family_of(b) and (a, b) not in set(kin)
    ]
    families = sorted({family_of(t) for t in tokens})
    first = set(rng.permutation(families)[: len(families) // 2].tolist())
    halves = []
    for half in (first, set(families) - first):
        half_kin = [p for p in kin if family_of(p[0]) in half]
        half_tokens = [t for t in tokens if family_of(t) in half]
        cross = []
        while len(cross) < 2 * len(half_kin):
            a, b = rng.choice(half_tokens, 2, replace=False)
            if family_of(a) != family_of(b):
                cross.append((a, b))
        kin_b, nonkin_b = balanced_in_family(half_kin, nonkin, half, rng)
        halves.append(
            {
                "kin": image_pairs(half_kin, people, 2, rng),
                "cross": image_pairs(cross, people, 1, rng),
                "kin_b": image_pairs(kin_b, people, 3, rng),
                "nonkin_b": image_pairs(nonkin_b, people, 3, rng),
            }
        )
    return people, halves


def balanced_in_family(kin, nonkin, half, rng):
    """As many kin as non-kin person pairs from every family that has both kinds."""
    kin_b, nonkin_b = [], []
    for family in sorted(half):
        k = [p for p in kin if family_of(p[0]) == family]
        n = [p for p in nonkin if family_of(p[0]) == family]
        m = min(len(k), len(n))
        kin_b += [k[i] for i in rng.permutation(len(k))[:m]]
        nonkin_b += [n[i] for i in rng.permutation(len(n))[:m]]
    return kin_b, nonkin_b


def pair_features(features, pairs) -> np.ndarray:
    h1 = np.array([features[a] for a, _ in pairs])
    h2 = np.array([features[b] for _, b in pairs])
    return np.hstack([np.abs(h1 - h2), (h1 - h2) ** 2, h1 * h2])


def cross_fitted_auc(halves, fit_x, positive: str, negative: str, train_kinds) -> float:
    """Fit on one half, score the other, both ways; ROC AUC of the pooled scores."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels, scores = [], []
    for fit, score in ((0, 1), (1, 0)):
        pos, neg = train_kinds
        x = np.vstack([fit_x(halves[fit][pos]), fit_x(halves[fit][neg])])
        y = np.r_[np.ones(len(halves[fit][pos])), np.zeros(len(halves[fit][neg]))]
        model = make_pipeline(StandardScaler(), LogisticRegression(C=1e-3, max_iter=2000))
        model.fit(x, y)
        for kind, label in ((positive, 1), (negative, 0)):
            scores.append(model.predict_proba(fit_x(halves[score][kind]))[:, 1])
            labels.append(np.full(len(halves[score][kind]), label))
    return float(roc_auc_score(np.concatenate(labels), np.concatenate(scores)))


@pytest.fixture(scope="module")
def signal_aucs(tmp_path_factory) -> dict[str, float]:
    """AUCs on held-out families of the default dataset (its test part cut to 2 families,
    which leaves train/ byte-identical to the default)."""
    root = tmp_path_factory.mktemp("default") / "synthetic"
    generate(root, dataclasses.replace(SynthConfig(), n_test_families=2))
    people, halves = split_design(root, seed=0)
    colour = hog_features(root, people, grey=False)
    grey = hog_features(root, people, grey=True)
    family_mean = {
        f: np.mean([v for k, v in colour.items() if family_of(k) == f], axis=0)
        for f in {family_of(k) for k in colour}
    }

    def by_family(pairs):
        return np.array([family_mean[family_of(a)] for a, _ in pairs])

    aucs = {
        "kin_vs_cross": cross_fitted_auc(
            halves, lambda p: pair_features(colour, p), "kin", "cross", ("kin", "cross")
        ),
        "kin_vs_cross_grey": cross_fitted_auc(
            halves, lambda p: pair_features(grey, p), "kin", "cross", ("kin", "cross")
        ),
        "kin_vs_in_family": cross_fitted_auc(
            halves, lambda p: pair_features(colour, p), "kin_b", "nonkin_b", ("kin", "cross")
        ),
        "family_shortcut": cross_fitted_auc(
            halves, by_family, "kin_b", "nonkin_b", ("kin_b", "nonkin_b")
        ),
    }
    print("held-out-family AUCs:", {k: round(v, 3) for k, v in aucs.items()})
    return aucs


def test_kin_signal_is_learnable_but_not_trivial(signal_aucs):
    assert 0.65 <= signal_aucs["kin_vs_cross"] <= 0.85


def test_kin_signal_survives_grey_equalised_photos(signal_aucs):
    assert signal_aucs["kin_vs_cross_grey"] >= 0.60


def test_kin_signal_separates_relatives_from_married_in_family(signal_aucs):
    assert signal_aucs["kin_vs_in_family"] >= 0.55


def test_family_identity_cannot_solve_in_family_negatives(signal_aucs):
    assert signal_aucs["family_shortcut"] <= 0.5 + 1e-9

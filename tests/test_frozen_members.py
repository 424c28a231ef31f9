"""Frozen members: pair features, heads, training pairs, the per-fold trainer, params, profiles."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, write_crop_spec

from kinship import paths
from kinship.embed import write_embeddings
from kinship.frozen.features import PAIR_FEATURES as FEATURE_FUNCTIONS
from kinship.frozen.features import landmark_geometry, pair_features
from kinship.frozen.heads import LgbmHead, LogisticHead
from kinship.frozen.params import FROZEN_PAIR_FEATURES, FrozenMemberParams, LgbmHeadParams
from kinship.io import write_json
from kinship.metrics import auc
from kinship.pairs import holdout_pairs, nonkin_person_pairs, training_pairs
from kinship.params import FoldParams, PairParams, apply_profile, load_params, parse_params
from kinship.prepare import prepare
from kinship.synth.config import SynthConfig
from kinship.synth.dataset import generate
from kinship.train_stage import Prepared, run_train

ANTISYMMETRIC = {"sq_sub"}


def test_pair_features_are_symmetric_except_the_signed_difference_of_squares():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 8)), rng.normal(size=(5, 8))
    for name in FROZEN_PAIR_FEATURES:
        ab, ba = pair_features(a, b, [name]), pair_features(b, a, [name])
        if name in ANTISYMMETRIC:
            np.testing.assert_allclose(ab, -ba, rtol=1e-6)
        else:
            np.testing.assert_allclose(ab, ba, rtol=1e-6)
    assert set(FEATURE_FUNCTIONS) == set(FROZEN_PAIR_FEATURES)  # params and code name the same
    all_of_them = pair_features(a, b, list(FROZEN_PAIR_FEATURES))
    assert all_of_them.shape == (5, 8 * 8 + 8 + 1 + 1) and all_of_them.dtype == np.float32
    np.testing.assert_allclose(pair_features(a, b, ["sq_sub"]), (a + b) * (a - b), rtol=1e-5)
    np.testing.assert_allclose(
        pair_features(a, b, ["norm_prod"]), a * b / (a**2 + b**2), rtol=1e-4, atol=1e-6
    )
    with pytest.raises(ValueError, match="unknown pair feature 'diff'"):
        pair_features(a, b, ["diff"])


def test_landmark_geometry_ignores_position_scale_and_rotation():
    rng = np.random.default_rng(1)
    face = rng.uniform(50, 150, size=(1, 68, 2))
    angle, scale, shift = 0.4, 2.5, np.array([30.0, -12.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = face @ rotation.T * scale + shift
    same, other = landmark_geometry(face), landmark_geometry(moved)
    np.testing.assert_allclose(same, other, atol=1e-4)
    wider = face.copy()
    wider[0, :17, 0] *= 1.2  # another jaw: different geometry
    assert not np.allclose(landmark_geometry(wider), same, atol=1e-3)
    assert np.isfinite(landmark_geometry(np.zeros((1, 68, 2)))).all()  # an unreadable image's zeros


def _separable(n=600, d=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] ** 2 + 0.3 * rng.normal(size=n) > 0.5).astype(int)
    return x, y


@pytest.mark.parametrize("head", [LgbmHead, LogisticHead])
def test_heads_learn_pick_rounds_on_the_inner_slice_and_round_trip(head, tmp_path):
    x, y = _separable()
    xi, yi = _separable(seed=1)
    params = FrozenMemberParams(model="dlib", lgbm=LgbmHeadParams(n_estimators=400))
    fitted = head(params)
    info = fitted.fit(x, y, xi, yi, seed=0)
    assert info["inner_auc"] > 0.85
    xt, yt = _separable(seed=2)
    assert auc(yt, fitted.predict(xt)) > 0.85
    if head is LgbmHead:
        assert 1 <= info["rounds"] < 400  # early stopping on the inner slice
    fitted.save(tmp_path)
    loaded = head(params)
    loaded.load(tmp_path)
    np.testing.assert_allclose(loaded.predict(xt), fitted.predict(xt), rtol=1e-12)
    with pytest.raises(FileNotFoundError, match="head missing"):
        head(params).load(tmp_path / "nowhere")


@pytest.fixture
def frozen_workspace(tmp_path, monkeypatch):
    """A synthetic dataset prepared in tmp_path (the cwd) with embed-stage arrays whose
    descriptors carry a family signal; returns the params."""
    monkeypatch.chdir(tmp_path)
    generate(paths.SYNTHETIC_DIR, SynthConfig(n_families=14, n_test_families=3, image_size=32))
    prepare(paths.SYNTHETIC_DIR, FoldParams(k=2), PairParams(in_family_nonkin_ratio=0.5))
    images = pd.read_parquet(paths.IMAGES_TABLE)
    rng = np.random.default_rng(0)
    family_vector = {f: rng.normal(size=128) for f in images["family"].unique()}
    base = np.stack([family_vector[f] for f in images["family"]])
    descriptors = (0.1 * base + 0.1 * rng.normal(size=base.shape)).astype(np.float32)
    descriptors = np.stack([descriptors, descriptors + 0.01], axis=1)  # (N, 2 views, 128)
    landmarks = rng.uniform(0, 32, size=(len(images), 68, 2)).astype(np.float32)
    write_embeddings(
        {"descriptors": descriptors, "landmarks": landmarks, "detected": np.ones(len(images), bool)}
    )
    bad = [{"row": 3, "image": images["image"].iat[3], "error": "test"}]
    write_json(paths.EMBED_REPORT, {"images": len(images), "bad_images": 1, "bad": bad})
    write_crop_spec(output_size=32)
    raw = {
        "folds": {"k": 2},
        "pairs": {"in_family_nonkin_ratio": 0.5},
        "train": {"inner_fraction": 0.25},
        "embed": {"flip": True},
        "frozen_members": {
            "dlib": {"model": "dlib", "tta_flip": True, "seeds": [0, 1],
                     "lgbm": {"n_estimators": 30, "min_child_samples": 5}},
            "shape": {"model": "dlib_landmarks", "head": "logistic", "pair_features": ["abs_diff"]},
        },
    }  # fmt: skip
    return parse_params(raw)


def test_frozen_member_writes_the_contract_tables_and_learns(frozen_workspace):
    params = frozen_workspace
    run_train(params, "dlib")
    prepared = Prepared.load()
    oof = pd.read_parquet(paths.OOF_DIR / "dlib.parquet")
    assert list(oof.columns) == ["pair_id", "fold", "prob", "scorable"]
    assert sorted(oof["pair_id"]) == sorted(prepared.pairs["pair_id"])
    # the embed stage's unreadable image (row 3): its pairs are left out of scoring and counted
    bad_image = prepared.images["image"].iat[3]
    uses_bad = oof["pair_id"].str.split("|").map(lambda ab: bad_image in ab).to_numpy()
    assert uses_bad.any() and (oof["scorable"].to_numpy() == ~uses_bad).all()
    test = pd.read_parquet(paths.TEST_PRED_DIR / "dlib.parquet")
    assert list(test["img_pair"]) == list(prepared.test["img_pair"])
    metrics = json.loads((paths.MEMBER_REPORTS_DIR / "dlib/metrics.json").read_text())
    assert metrics["model"] == "dlib" and metrics["input_size"] is None
    assert metrics["unscorable_pairs"]["oof"] == int(uses_bad.sum())
    assert metrics["oof"]["pairs"] == len(oof) - int(uses_bad.sum())
    # the descriptors carry a family signal: strangers are easy, in-family non-kin are not
    assert metrics["oof_auc_by_kind"]["cross_family"] > 0.8
    assert metrics["oof_auc_by_kind"]["in_family_nonkin"] < 0.75
    timing = json.loads((paths.MEMBER_REPORTS_DIR / "dlib/timing.json").read_text())
    assert [len(f["seeds"]) for f in timing["folds"]] == [2, 2]
    config = json.loads((paths.MODELS_DIR / "dlib/fold0/seed1/config.json").read_text())
    assert config["params"]["model"] == "dlib" and config["embed"]["flip"] is True
    assert (paths.MODELS_DIR / "dlib/fold0/seed1/head.lgbm.txt").is_file()
    run_train(params, "shape")
    assert (paths.MODELS_DIR / "shape/fold1/seed0/head.logistic.json").is_file()


def test_frozen_member_repeats_and_folds_collect_alike(frozen_workspace):
    params = frozen_workspace
    run_train(params, "dlib")
    first = pd.read_parquet(paths.OOF_DIR / "dlib.parquet")
    run_train(params, "dlib", fold=1)
    run_train(params, "dlib", fold=0)
    run_train(params, "dlib", collect_only=True)
    pd.testing.assert_frame_equal(first, pd.read_parquet(paths.OOF_DIR / "dlib.parquet"))


def test_frozen_member_never_trains_on_validation_or_unreadable_images(
    frozen_workspace, monkeypatch
):
    params = frozen_workspace
    seen = []
    import kinship.frozen.stage as stage

    def spy(images, people, relationships, **kwargs):
        table = training_pairs(images, people, relationships, **kwargs)
        seen.append((set(people["family"]), table))
        return table

    monkeypatch.setattr(stage, "training_pairs", spy)
    run_train(params, "dlib", fold=0)
    prepared = Prepared.load()
    bad_image = prepared.images["image"].iat[3]
    fold0 = set(prepared.people.loc[prepared.people["fold"] == 0, "family"])
    family_of = dict(zip(prepared.images["image"], prepared.images["family"], strict=True))
    for families, table in seen:
        assert not families & fold0
        used = set(table["img1"]) | set(table["img2"])
        assert bad_image not in used and not {family_of[i] for i in used} & fold0


def test_training_pairs_follow_relationships_and_mix_negatives(frozen_workspace):
    prepared = Prepared.load()
    images = prepared.images[prepared.images["split"] == "train"]
    rels = prepared.relationships
    table = training_pairs(
        images, prepared.people, rels, rng=np.random.default_rng(0), kin_cap=3,
        negatives_per_kin=2.0, nonkin_share=0.25,
    )  # fmt: skip
    person_of = dict(zip(prepared.images["image"], prepared.images["person"], strict=True))
    family_of = dict(zip(prepared.images["image"], prepared.images["family"], strict=True))
    related = set(zip(rels["p1"], rels["p2"], strict=True))
    nonkin = set(nonkin_person_pairs(prepared.people, rels))
    assert table["pair_id"].is_unique
    for row in table.itertuples():
        people = tuple(sorted((person_of[row.img1], person_of[row.img2])))
        if row.kind == "kin":
            assert row.label == 1 and people in related
        elif row.kind == "in_family_nonkin":
            assert row.label == 0 and people in nonkin
        else:
            assert row.label == 0 and family_of[row.img1] != family_of[row.img2]
    counts = table["kind"].value_counts()
    assert counts["kin"] <= 3 * len(rels)
    assert counts["cross_family"] + counts.get("in_family_nonkin", 0) == 2 * counts["kin"]
    assert 0 < counts.get("in_family_nonkin", 0) <= round(0.25 * 2 * counts["kin"])


def test_holdout_in_family_negatives_leave_the_protocol_pairs_alone(frozen_workspace):
    prepared = Prepared.load()
    family_fold = pd.Series(-1, index=sorted(prepared.people["family"].unique()), dtype="int8")
    common = dict(
        images=prepared.images, people=prepared.people, relationships=prepared.relationships,
        family_fold=family_fold, seed=0,
    )  # fmt: skip
    plain = holdout_pairs(**common)
    extra = holdout_pairs(**common, in_family_nonkin_ratio=0.5)
    assert set(plain["kind"]) == {"kin", "cross_family"}
    pd.testing.assert_frame_equal(plain, extra[extra["kind"] != "in_family_nonkin"])
    assert (extra["kind"] == "in_family_nonkin").sum() == round(0.5 * (plain["label"] == 1).sum())


def test_tta_flip_needs_the_mirror_views(frozen_workspace):
    params = frozen_workspace
    with pytest.raises(
        ValueError, match="frozen_members.dlib.tta_flip must be false unless embed.flip"
    ):
        parse_params({"frozen_members": {"dlib": {"model": "dlib", "tta_flip": True}}})
    one_view = np.load(paths.EMBEDDINGS_DIR / "dlib_descriptors.npy")[:, :1]
    np.save(paths.EMBEDDINGS_DIR / "dlib_descriptors.npy", one_view)
    with pytest.raises(
        ValueError, match=r"tta_flip needs mirror-image descriptors.*dvc repro embed"
    ):
        run_train(params, "dlib")


@pytest.mark.parametrize(
    ("member", "message"),
    [
        ({"model": "dlibb"},
         r"frozen_members.m.model must be one of dlib, dlib_landmarks \(did you mean 'dlib'\?\)"),
        ({"model": "dlib", "pair_features": ["abs_summ"]},
         r"frozen_members.m.pair_features\[0\] must be one of .*\(did you mean 'abs_sum'\?\)"),
        ({"model": "dlib", "head": "mlp"},
         r"frozen_members.m.head must be one of 'lgbm', 'logistic'"),
        ({"model": "dlib", "nonkin_share": 1.0},
         r"frozen_members.m.nonkin_share must be a fraction"),
        ({"model": "dlib", "lgbm": {"num_leaves": 1}},
         r"frozen_members.m.lgbm.num_leaves must be"),
        ({"model": "dlib", "heads": "lgbm"},
         r"unknown key 'frozen_members.m.heads' \(did you mean 'head'\?\)"),
    ],
)  # fmt: skip
def test_frozen_member_params_name_the_bad_key(member, message):
    with pytest.raises(ValueError, match=message):
        parse_params({"frozen_members": {"m": member}})


def test_frozen_members_join_the_ensemble_and_never_shadow_an_image_member():
    params = parse_params(
        {"frozen_members": {"dlib": {"model": "dlib"}}, "ensemble": {"weights": {"dlib": 2.0}}}
    )
    assert params.all_members == ["dlib"]
    image_member = {"model": "siamese_cnn", "input_size": 64, "width": 0.25}
    with pytest.raises(ValueError, match="frozen_members.x must be a name that is not also a key"):
        parse_params({"cache": {"sizes": [64]}, "members": {"x": image_member},
                      "frozen_members": {"x": {"model": "dlib"}}})  # fmt: skip


def test_a_profile_removes_members_set_to_null(tmp_path):
    params_file = tmp_path / "params.yaml"
    params_file.write_text(
        "# top comment\ncache: {sizes: [64]}\nmembers:\n"
        "  keep: {model: siamese_cnn, input_size: 64}  # kept\n"
        "  drop: {model: siamese_cnn, input_size: 64}\n"
        "folds:\n  holdout_prefix: F09\n"
    )
    profile = tmp_path / "profile.yaml"
    profile.write_text("members:\n  drop: null\nfrozen_members:\n  dlib: {model: dlib}\n"
                       "folds: {holdout_prefix: null}\n")  # fmt: skip
    merged = load_params(params_file, [profile])
    assert list(merged.members) == ["keep"] and merged.all_members == ["keep", "dlib"]
    assert merged.folds.holdout_prefix is None  # null elsewhere is a value, not a removal
    apply_profile(params_file, profile)
    text = params_file.read_text()
    assert "drop" not in text and "# kept" in text and "# top comment" in text
    assert list(load_params(params_file).members) == ["keep"]


def test_the_real_data_profiles_validate():
    for name in ("fiw-gpu.yaml", "fiw-cpu.yaml"):
        load_params(REPO / "params.yaml", [REPO / "profiles" / name])
    cpu = load_params(REPO / "params.yaml", [REPO / "profiles/fiw-cpu.yaml"])
    assert set(cpu.frozen_members) == {"dlib", "dlib_landmarks"}
    assert list(cpu.members) == ["vggface_resnet50"] and cpu.cache.sizes == [64]
    assert cpu.folds.holdout_prefix == "F09" and cpu.pairs.in_family_nonkin_ratio > 0
    koch = load_params(REPO / "params.yaml", [REPO / "profiles/fiw-cpu.yaml",
                                              REPO / "profiles/fiw-cpu-koch.yaml"])  # fmt: skip
    assert list(koch.members) == ["vggface_resnet50", "siamese_cnn"]

"""params.yaml loading: the committed file is valid; bad keys, types and values name their path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kinship.params import apply_profile, load_params, parse_params

REPO = Path(__file__).resolve().parents[1]


def _raw():
    return yaml.safe_load((REPO / "params.yaml").read_text())


def test_committed_params_and_profiles_are_valid():
    params = load_params(REPO / "params.yaml")
    assert params.folds.k >= 2
    assert {m.input_size for m in params.members.values()} <= set(params.cache.sizes)
    for profile in sorted((REPO / "profiles").glob("*.yaml")):
        load_params(REPO / "params.yaml", [profile])


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("folds", "kk", 3, r"unknown key 'folds.kk' \(did you mean 'k'\?\)"),
        ("folds", "k", 1, r"folds.k must be an integer >= 2, got 1"),
        ("folds", "k", "3", r"folds.k must be int, got str: '3'"),
        ("folds", "holdout_prefix", "09", r"folds.holdout_prefix must be null or a family-id"),
        ("pairs", "cross_family_ratio", -1, r"pairs.cross_family_ratio must be >= 0"),
        ("cache", "sizes", [64, 64], r"cache.sizes must be distinct sizes"),
        ("cache", "max_bad_fraction", 1.5, r"cache.max_bad_fraction must be a fraction"),
        ("data", "root", None, r"data.root must be str, got NoneType"),
        ("synthesize", "no_such_key", 1, r"unknown key 'synthesize.no_such_key'"),
        (
            "train",
            "keras_backend",
            "jax",
            r"train.keras_backend must be one of 'tensorflow', 'torch'",
        ),
    ],
)
def test_bad_values_name_their_key(section, key, value, message):
    raw = _raw()
    raw[section][key] = value
    with pytest.raises(ValueError, match=message):
        parse_params(raw)


def test_unknown_section_suggests_the_closest():
    raw = _raw()
    raw["fold"] = {"k": 3}
    with pytest.raises(ValueError, match=r"unknown key 'fold' \(did you mean 'folds'\?\)"):
        parse_params(raw)


def test_member_size_must_be_cached():
    raw = _raw()
    name = next(iter(raw["members"]))
    raw["members"][name]["input_size"] = 123
    with pytest.raises(ValueError, match=rf"members.{name}.input_size must be one of cache.sizes"):
        parse_params(raw)


def test_unknown_model_lists_valid_names_with_suggestion():
    raw = _raw()
    name = next(iter(raw["members"]))
    raw["members"][name]["model"] = "vggface_resnet"
    with pytest.raises(ValueError, match=r"unknown model 'vggface_resnet' \(did you mean "):
        parse_params(raw)


def test_frozen_random_backbone_is_refused():
    raw = _raw()
    name = next(iter(raw["members"]))
    raw["members"][name]["freeze"] = True
    with pytest.raises(
        ValueError, match=rf"members.{name}.freeze must be false without pretrained"
    ):
        parse_params(raw)
    raw["members"][name].update(weights="w.h5", width=0.5)
    with pytest.raises(ValueError, match=rf"members.{name}.width must be 1.0 when pretrained"):
        parse_params(raw)


def test_weights_lie_in_the_members_own_folder():
    """train@<member> depends on weights/<member>/ alone: a file elsewhere is a params error."""
    raw = _raw()
    raw["members"]["facenet"].update(weights="weights/facenet/20180402-114759-vggface2.pt")
    assert parse_params(raw).members["facenet"].weights_path.parent == Path("weights/facenet")
    for elsewhere in ("weights/vggface_vgg16/vgg.pt", "w.pt", "/tmp/facenet.pt"):
        raw["members"]["facenet"].update(weights=elsewhere)
        with pytest.raises(
            ValueError,
            match=r"members.facenet.weights must be a file under "
            r"weights/facenet/ \(train@facenet depends on that folder only",
        ):
            parse_params(raw)


def test_every_member_has_its_committed_weights_folder():
    """DVC fails on a missing dep: every member of params.yaml and of each profile has one."""
    for profile in [None, *sorted((REPO / "profiles").glob("*.yaml"))]:
        params = load_params(REPO / "params.yaml", [profile] if profile else [])
        for name in params.members:
            assert (REPO / "weights" / name / ".gitkeep").is_file(), (profile, name)


def test_profile_creates_a_new_members_weights_folder(tmp_path):
    params_file = tmp_path / "params.yaml"
    params_file.write_text((REPO / "params.yaml").read_text())
    profile = tmp_path / "new.yaml"
    profile.write_text("members:\n  koch2: {model: siamese_cnn, input_size: 64}\n")
    apply_profile(params_file, profile)
    assert (tmp_path / "weights" / "koch2" / ".gitkeep").is_file()
    assert "koch2" in load_params(params_file).members


@pytest.mark.parametrize(
    ("model", "change", "message"),
    [
        ("facenet", {"input_size": 64}, r"input_size must be at least 75 px for facenet"),
        ("facenet", {"width": 0.5}, r"width must be 1.0 for facenet"),
        ("siamese_cnn", {"weights": "koch.pt"}, r"weights must be none: siamese_cnn has no"),
    ],
)
def test_architecture_limits_are_params_errors(model, change, message):
    raw = _raw()
    raw["cache"]["sizes"] = sorted(set(raw["cache"]["sizes"]) | {64, 96})
    raw["members"]["m"] = {"model": model, "input_size": 96, **change}
    with pytest.raises(ValueError, match=rf"members.m.{message}"):
        parse_params(raw)


@pytest.mark.parametrize("batch_size", [4, 10, 2])
def test_batch_size_must_hold_whole_relationship_groups(batch_size):
    raw = _raw()
    name = next(iter(raw["members"]))
    raw["members"][name]["batch_size"] = batch_size
    expected = rf"{name}.batch_size must be a multiple of 4 and at least 8 .*got {batch_size}"
    with pytest.raises(ValueError, match=expected):
        parse_params(raw)


def test_unknown_head_feature_suggests():
    raw = _raw()
    name = next(iter(raw["members"]))
    raw["members"][name]["head"] = {"features": ["sqdiff"]}
    with pytest.raises(
        ValueError, match=r"head.features\[0\] must be one of .*did you mean 'sq_diff'"
    ):
        parse_params(raw)


def test_profile_overrides_deep_merge(tmp_path):
    profile = tmp_path / "p.yaml"
    profile.write_text("folds: {k: 5}\npairs: {seed: 7}\n")
    params = load_params(REPO / "params.yaml", [profile])
    assert params.folds.k == 5 and params.pairs.seed == 7
    assert params.pairs.kin_pairs_per_relationship == load_params().pairs.kin_pairs_per_relationship


def test_profile_errors_name_both_files(tmp_path):
    profile = tmp_path / "bad.yaml"
    profile.write_text("folds: {k: 0}\n")
    with pytest.raises(ValueError, match=r"params.yaml \+ .*bad.yaml: folds.k"):
        load_params(REPO / "params.yaml", [profile])


def test_missing_params_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="params file not found"):
        load_params(tmp_path / "params.yaml")

"""The ensemble stage on fabricated member predictions of known quality (tests/ensemblefixtures.py).

Each test runs in a temporary working folder laid out as the repository (monkeypatch.chdir).
"""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from ensemblefixtures import constant, fabricate, params_for, raw_params, signal
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from kinship import paths
from kinship.ensemble.calibration import Platt, brier
from kinship.ensemble.methods import Mean, Rank, Weighted, WeightSearch, make_blender
from kinship.ensemble.nested import Recipe, Rows, choose, one_scale
from kinship.ensemble.stage import run_ensemble
from kinship.ensemble.submission import validate_submission, write_submission
from kinship.metrics import auc, bootstrap_auc, family_bootstrap_aucs, paired_bootstrap_gain
from kinship.params import parse_params

SIX = {
    "strong": signal(1.6),
    "medium": signal(0.9),
    "weak": signal(0.35),
    "flat": constant(0.5),
    "wide": signal(0.7, scale=3.0),
    "narrow": signal(1.2, scale=0.2),
}
# an informative member on a tiny scale, a reversed one, and loud noise: the mean is dominated by
# the noise, while a stacker rescales and flips
COMPLEMENTARY = {
    "quiet": signal(1.5, scale=0.05),
    "reversed": signal(-1.0),
    "loud_a": signal(0.0, scale=4.0),
    "loud_b": signal(0.0, scale=4.0),
}
FAST = ["mean", "weighted", "rank", "weight_search", "stack_logistic"]


@pytest.fixture
def work(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _oof() -> pd.DataFrame:
    return pd.read_parquet("reports/ensemble/oof.parquet")


def _metrics() -> dict:
    return json.loads(Path("reports/ensemble/metrics.json").read_text())


# --- the whole stage ---------------------------------------------------------------------------


def test_stage_writes_every_output_with_honest_side_by_side_numbers(work):
    fab = fabricate(work, SIX, holdout_families=15)
    metrics = run_ensemble(params_for(SIX))
    assert metrics == _metrics()
    # every member and method side by side, OOF and holdout, each with a bootstrap interval
    for split in ("oof", "holdout"):
        for group, names in (("members", SIX), ("methods", params_for(SIX).ensemble.methods)):
            for name in names:
                entry = metrics[split][group][name]
                low, high = entry["auc_ci95"]
                assert low <= entry["auc"] <= high, (split, name, entry)
    oof = metrics["oof"]
    assert oof["members"]["strong"]["auc"] > oof["members"]["medium"]["auc"] > 0.75
    assert oof["members"]["flat"]["auc"] == 0.5
    assert metrics["chosen_method"] in metrics["oof"]["methods"]
    assert oof["ensemble"]["auc"] > oof["members"]["strong"]["auc"]
    gain = oof["gain_over_best_member"]
    assert gain["over"] == "strong" and gain["ci95"][0] <= gain["auc_gain"] <= gain["ci95"][1]
    assert set(oof["brier"]) == {"raw", "calibrated"}
    # per-pair table for the report stage, in pairs.parquet order, members re-aligned on pair_id
    table = _oof()
    assert list(table["pair_id"]) == list(fab.pairs["pair_id"])
    np.testing.assert_array_equal(table["strong"], fab.oof["strong"])
    assert {"fold", "label", "kind", "family", "ensemble_selected", "ensemble_prob"} <= set(table)
    assert {f"ensemble_{m}" for m in params_for(SIX).ensemble.methods} <= set(table)
    # the submission: the sample's rows in order, probabilities, aligned with the test pairs
    submission = pd.read_csv("submission.csv")
    sample = pd.read_csv("data/fiw/sample_submission.csv")
    assert list(submission["img_pair"]) == list(sample["img_pair"])
    assert submission["is_related"].between(0, 1).all()
    assert auc(fab.test_labels, submission["is_related"]) > 0.85
    assert {p.name for p in Path("models/ensemble").iterdir()} == {"ensemble.pkl", "ensemble.json"}
    # the pickled test-time ensemble (refit on all OOF rows) reproduces the submission
    model = pickle.loads(Path("models/ensemble/ensemble.pkl").read_bytes())
    assert model["members"] == list(SIX) and model["method"] == metrics["chosen_method"]
    X = np.column_stack([fab.test[name] for name in SIX])
    again = model["calibrator"].predict(model["blender"].predict(X))
    np.testing.assert_allclose(submission["is_related"], again, atol=1e-6)


def test_rerun_is_byte_identical_and_metrics_hold_no_timings(work):
    fabricate(work, SIX)
    params = params_for(SIX, methods=FAST + ["stack_lgbm"])
    run_ensemble(params)
    files = ["reports/ensemble/metrics.json", "submission.csv", "models/ensemble/ensemble.json"]
    first = {f: Path(f).read_bytes() for f in files}
    run_ensemble(params)
    assert {f: Path(f).read_bytes() for f in files} == first
    text = first["reports/ensemble/metrics.json"].decode()
    assert not re.search(r"second|elapsed|timing|timestamp|date|host|wall", text)


def test_weighted_one_hot_is_that_member_and_searched_weights_sit_beside_the_users(work):
    fab = fabricate(work, SIX)
    weights = {"strong": 1.0}  # unlisted members weigh 0
    methods = ["weighted", "weight_search"]
    metrics = run_ensemble(params_for(SIX, weights=weights, methods=methods, method="weighted"))
    assert metrics["chosen_method"] == "weighted"
    assert set(metrics["nested_choices"].values()) == {"weighted"}
    np.testing.assert_array_equal(_oof()["ensemble_weighted"], fab.oof["strong"])
    np.testing.assert_array_equal(_oof()["ensemble_selected"], fab.oof["strong"])
    assert (
        "holdout" not in metrics and len(pd.read_parquet("reports/ensemble/holdout.parquet")) == 0
    )
    assert metrics["weights"]["user"] == {n: float(n == "strong") for n in SIX}
    searched = metrics["weights"]["searched"]
    assert set(searched) == set(SIX) and sum(searched.values()) == pytest.approx(1.0, abs=1e-5)
    assert searched != metrics["weights"]["user"]


def test_stacking_beats_the_mean_when_members_are_complementary(work):
    members = COMPLEMENTARY
    fabricate(work, members)
    methods = run_ensemble(params_for(members, methods=["mean", "stack_logistic", "stack_lgbm"]))
    methods = methods["oof"]["methods"]
    assert methods["stack_logistic"]["auc"] > methods["mean"]["auc"] + 0.15
    assert methods["stack_lgbm"]["auc"] > methods["mean"]["auc"] + 0.1


def test_auto_keeps_a_clearly_better_stacker_under_the_one_se_rule(work):
    members = COMPLEMENTARY
    fabricate(work, members)
    metrics = run_ensemble(params_for(members, methods=["mean", "rank", "stack_logistic"]))
    assert metrics["auto_rule"] == "one_se"
    assert set(metrics["nested_choices"].values()) == {"stack_logistic"}
    assert metrics["chosen_method"] == "stack_logistic"


def _rows_and_scores(lift: float) -> tuple[Rows, dict[str, np.ndarray]]:
    """A simple method's scores, and a later method's: a near twin (95 % shared noise) that is
    ahead by chance, plus `lift` on kin pairs."""
    rng = np.random.default_rng(2)
    groups = np.repeat(np.arange(60), 20)
    y = rng.integers(0, 2, len(groups))
    noise, other = rng.normal(size=(2, len(y)))
    simple = 0.6 * y + noise
    twin = 0.6 * y + 0.95 * noise + np.sqrt(1 - 0.95**2) * other + lift * y
    return Rows(simple[:, None], y, groups % 3, groups), {"mean": simple, "stack_lgbm": twin}


@pytest.mark.parametrize(
    ("lift", "one_se_choice"), [(0.0, "mean"), (0.03, "stack_lgbm"), (0.4, "stack_lgbm")]
)
def test_one_se_rule_prefers_the_simpler_method_only_within_noise(lift, one_se_choice):
    rows, scores = _rows_and_scores(lift)
    cv_auc = {m: auc(rows.y, s) for m, s in scores.items()}
    gap = cv_auc["stack_lgbm"] - cv_auc["mean"]
    both = family_bootstrap_aucs(
        rows.y, np.column_stack([scores["stack_lgbm"], scores["mean"]]), rows.groups, 0, 200
    )
    own_se = np.std(both[:, 0], ddof=1)  # the spread of the best AUC alone: the old rule's error
    paired_se = np.std(both[:, 0] - both[:, 1], ddof=1)
    if lift == 0.0:  # ahead by chance: within the noise of the paired difference
        assert 0 < gap < paired_se
    elif lift < 0.1:  # ahead in ~98 % of resamples, yet within the best AUC's own spread
        assert paired_se < gap < own_se and np.mean(both[:, 0] > both[:, 1]) > 0.95
    else:
        assert gap > 0.05
    one_se = Recipe(lambda m: None, ["mean", "stack_lgbm"], None, "platt", "one_se", 0, 200)
    assert choose(one_se, rows, scores, cv_auc) == one_se_choice
    best = Recipe(lambda m: None, ["mean", "stack_lgbm"], None, "platt", "best", 0, 200)
    assert choose(best, rows, scores, cv_auc) == "stack_lgbm"


def test_folds_that_chose_different_methods_are_ranked_on_one_scale():
    rng = np.random.default_rng(0)
    folds = np.repeat([0, 1, 2], 400)
    y = rng.integers(0, 2, len(folds))
    s = 1.2 * (2 * y - 1) + rng.normal(size=len(y))
    scores = {"mean": 1 / (1 + np.exp(-s)), "rank": 1 / (1 + np.exp(-s / 4))}  # one order
    rows = Rows(s[:, None], y, folds, folds)
    choices = {0: "mean", 1: "rank", 2: "mean"}
    selected = np.where(folds == 1, scores["rank"], scores["mean"])
    assert auc(y, selected) < auc(y, s) - 0.005  # pooled raw scales reorder pairs across folds
    assert auc(y, one_scale(rows, selected, choices, scores)) == pytest.approx(auc(y, s), abs=2e-3)
    same = {0: "mean", 1: "mean", 2: "mean"}
    np.testing.assert_array_equal(one_scale(rows, scores["mean"], same, scores), scores["mean"])


def test_rank_average_is_robust_to_one_members_scale_where_the_mean_is_not(work):
    members = {
        "good": signal(1.5, scale=0.1),
        "fair": signal(1.0, scale=0.1),
        "poor": signal(0.2, 5),
    }
    fabricate(work, members)
    methods = run_ensemble(params_for(members, methods=["mean", "rank"]))["oof"]["methods"]
    assert methods["rank"]["auc"] > methods["mean"]["auc"] + 0.05


# --- nested cross-validation: selection never sees the scored fold -----------------------------


def _fold_specialists(k: int = 3) -> dict:
    """Member j is near perfect on fold j and pure noise elsewhere: any selection that sees the
    scored fold picks that fold's specialist; an honest one cannot know it."""

    def specialist(j):
        def member(labels, folds, rng):
            noise = rng.random(len(labels))
            return np.where(folds == j, 0.1 + 0.8 * labels + 0.05 * noise, noise)

        return member

    return {f"fold{j}_expert": specialist(j) for j in range(k)}


def test_weight_search_stacking_and_min_auc_are_nested(work):
    members = _fold_specialists()
    fab = fabricate(work, members)
    X = np.column_stack([fab.oof[n] for n in members])
    y = fab.pairs["label"].to_numpy()
    params = params_for(members, methods=["mean", "weight_search", "stack_logistic"], min_auc=0.6)
    # the data can catch a leak: fitted and scored on the same rows, selection looks excellent
    for method in ("weight_search", "stack_logistic"):
        assert (
            auc(y, make_blender(method, params.ensemble, list(members)).fit(X, y).predict(X)) > 0.8
        )
    without_filter = params_for(members, methods=["mean"])
    assert run_ensemble(without_filter)["oof"]["methods"]["mean"]["auc"] > 0.8  # all kept: good
    metrics = run_ensemble(params)
    # out of fold, each fold's own expert is invisible (min_auc drops it on the other folds)
    for k in range(3):
        assert f"fold{k}_expert" not in metrics["nested_members"][f"fold{k}"]
    for method in ("mean", "weight_search", "stack_logistic"):
        assert metrics["oof"]["methods"][method]["auc"] < 0.65, method
    assert metrics["oof"]["ensemble"]["auc"] < 0.65


def test_min_auc_drops_weak_members_and_all_below_names_the_best(work):
    fabricate(work, SIX)
    metrics = run_ensemble(params_for(SIX, methods=["mean"], min_auc=0.7))
    assert "weak" not in metrics["test_time_members"] and "flat" not in metrics["test_time_members"]
    assert "strong" in metrics["test_time_members"]
    for kept in metrics["nested_members"].values():
        assert "flat" not in kept and "strong" in kept
    best = metrics["oof"]["members"]["strong"]["auc"]
    with pytest.raises(ValueError, match=rf"min_auc=0.99.*best is strong with {best:.4f}"):
        run_ensemble(params_for(SIX, methods=["mean"], min_auc=0.99))


def test_weights_all_dropped_by_min_auc_is_an_error_naming_the_key(work):
    fabricate(work, SIX)
    params = params_for(SIX, methods=["weighted"], weights={"weak": 1.0}, min_auc=0.7)
    with pytest.raises(
        ValueError, match=r"ensemble.weights: every member with a weight > 0 \(weak\)"
    ):
        run_ensemble(params)


# --- calibration -------------------------------------------------------------------------------


def _steep_on_fold_zero(labels, folds, rng):
    """A member whose score says much more on fold 0 than on the others: the outer folds'
    calibrators, each fitted on the other folds, differ in slope."""
    strength = np.where(folds == 0, 3.0, 0.4)
    return 1 / (1 + np.exp(-(strength * (2 * labels - 1) + rng.normal(size=len(labels)))))


def test_ensemble_auc_and_gain_are_the_raw_scores_pooled_calibrators_would_reorder(work):
    members = {"steep": _steep_on_fold_zero, "weak": signal(0.3)}
    fabricate(work, members)
    metrics = run_ensemble(params_for(members, methods=["mean"]))
    oof = _oof()
    y, raw, prob = oof["label"], oof["ensemble_selected"], oof["ensemble_prob"]
    assert abs(auc(y, prob) - auc(y, raw)) > 0.005  # the per-fold calibrators do reorder
    ensemble = metrics["oof"]["ensemble"]
    assert ensemble["auc"] == pytest.approx(auc(y, raw), abs=1e-6)
    assert ensemble["calibrated_auc"] == pytest.approx(auc(y, prob), abs=1e-6)
    gain = metrics["oof"]["gain_over_best_member"]
    assert gain["auc_gain"] == pytest.approx(auc(y, raw) - auc(y, oof["steep"]), abs=1e-6)
    # the test-time map is one calibrator: it keeps the ranking of the raw score
    test = pd.read_parquet("reports/ensemble/test.parquet")
    order = np.argsort(test["ensemble_selected"].to_numpy(), kind="stable")
    assert np.all(np.diff(test["ensemble_prob"].to_numpy()[order]) >= 0)


def _fold_model_or_mean(strength: float) -> Callable:
    """OOF scores from one fold model each; outside the folds (holdout, fold −1) the mean of the
    fold models: the same signal, less spread (a third of the scale)."""

    def member(labels, folds, rng):
        scale = np.where(folds < 0, 1 / 3, 1.0)
        logits = strength * (2 * labels - 1) + rng.normal(size=len(labels))
        return 1 / (1 + np.exp(-scale * logits))

    return member


def test_with_a_holdout_the_test_calibrator_is_fitted_on_fold_averaged_scores(work):
    members = {"a": _fold_model_or_mean(1.2), "b": _fold_model_or_mean(0.8)}
    fab = fabricate(work, members, holdout_families=30, n_test=600)
    rng = np.random.default_rng(7)
    for name, member in members.items():  # the test pairs' scores are fold means too
        probs = member(fab.test_labels, np.full(len(fab.test_labels), -1), rng)
        fab.test_pairs[["img_pair"]].assign(prob=probs).to_parquet(
            work / paths.TEST_PRED_DIR / f"{name}.parquet", index=False
        )
    metrics = run_ensemble(params_for(members, methods=["mean"]))
    assert metrics["calibrated_on"] == "holdout"
    test = pd.read_parquet("reports/ensemble/test.parquet")
    oof = _oof()
    from_oof = Platt().fit(oof["ensemble_mean"], oof["label"]).predict(test["ensemble_selected"])
    y = fab.test_labels
    assert brier(y, test["ensemble_prob"]) < brier(y, from_oof) - 0.01
    # the holdout's own probabilities come from calibrators fitted on its other family half
    holdout = pd.read_parquet("reports/ensemble/holdout.parquet")
    model = pickle.loads(Path("models/ensemble/ensemble.pkl").read_bytes())
    in_sample = model["calibrator"].predict(holdout["ensemble_selected"].to_numpy())
    assert not np.allclose(holdout["ensemble_prob"], in_sample)
    assert metrics["holdout"]["brier"]["calibrated"] < metrics["holdout"]["brier"]["raw"]


@pytest.mark.parametrize("calibration", ["platt", "isotonic"])
def test_calibration_lowers_the_brier_score_of_squashed_scores(work, calibration):
    squashed = {"a": signal(1.5, scale=0.1), "b": signal(1.0, scale=0.1)}
    fabricate(work, squashed)
    metrics = run_ensemble(params_for(squashed, methods=["mean"], calibration=calibration))
    brier = metrics["oof"]["brier"]
    assert brier["calibrated"] < brier["raw"] - 0.05
    probs = _oof()["ensemble_prob"]
    assert probs.between(0, 1).all() and probs.max() > 0.8 and probs.min() < 0.2


# --- the submission ----------------------------------------------------------------------------

SAMPLE = pd.DataFrame({"img_pair": ["a.jpg-b.jpg", "c.jpg-d.jpg", "e.jpg-f.jpg"]})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.iloc[::-1].reset_index(drop=True), r"2 rows differ .* order"),
        (lambda s: s.iloc[:2], r"2 rows, sample_submission.csv has 3"),
        (lambda s: s.assign(is_related=[0.1, 1.2, 0.3]), r"1 is_related values are not probab"),
        (lambda s: s.assign(is_related=[0.1, np.nan, 0.3]), r"1 is_related values are not probab"),
        (lambda s: s.rename(columns={"is_related": "prob"}), r"expected columns"),
    ],
)
def test_bad_submissions_are_refused_and_nothing_is_written(tmp_path, change, message):
    good = SAMPLE.assign(is_related=[0.1, 0.5, 0.9])
    validate_submission(good, SAMPLE)
    target = tmp_path / "submission.csv"
    with pytest.raises(ValueError, match=message):
        write_submission(change(good), SAMPLE, target)
    assert list(tmp_path.iterdir()) == []
    write_submission(good, SAMPLE, target)
    before = target.read_bytes()
    with pytest.raises(ValueError, match=message):
        write_submission(change(good), SAMPLE, target)
    assert target.read_bytes() == before and list(tmp_path.iterdir()) == [target]


def test_test_pairs_not_matching_the_sample_fail_before_any_output(work):
    fabricate(work, SIX)
    sample = Path("data/fiw/sample_submission.csv")
    rows = sample.read_text().splitlines()
    sample.write_text("\n".join([*rows, "x.jpg-y.jpg,0"]) + "\n")
    with pytest.raises(ValueError, match=r"cover 200 img_pairs for the 201 rows .* 1 missing"):
        run_ensemble(params_for(SIX, methods=["mean"]))
    assert not Path("submission.csv").exists()
    assert not Path("reports/ensemble").exists() and not Path("models/ensemble").exists()


# --- bad inputs: clear errors naming the key, the member and the counts ------------------------


@pytest.mark.parametrize(
    ("ensemble", "message"),
    [
        ({"members": ["strong", "strnog"]}, r"ensemble.members\[1\] must be one of params.yaml "
         r"members \(strong, .*\) \(did you mean 'strong'\?\), got 'strnog'"),
        ({"weights": {"medum": 1.0}},
         r"ensemble.weights.medum must be one of .*did you mean 'medium'"),
        ({"members": ["strong", "weak"], "weights": {"medium": 1.0}},
         r"ensemble.weights.medium must be one of ensemble.members \(strong, weak\)"),
        ({"weights": {"strong": -1.0}}, r"ensemble.weights.strong must be a finite weight >= 0"),
        ({"weights": {"strong": 0, "weak": 0.0}},
         r"ensemble.weights must be .* at least one weight > 0"),
        ({"methods": ["mean", "stack_lgmb"]},
         r"ensemble.methods\[1\] .*did you mean 'stack_lgbm'"),
        ({"methods": ["mean"], "method": "rank"}, r"ensemble.method must be 'auto' or one of"),
        ({"calibration": "sigmoid"}, r"ensemble.calibration must be one of 'platt', 'isotonic'"),
        ({"auto_rule": "1se"}, r"ensemble.auto_rule must be one of 'one_se', 'best'"),
        ({"min_auc": 1.5}, r"ensemble.min_auc must be an AUC in \[0, 1\)"),
        ({"stack_lgbm": {"num_leaves": 1}},
         r"ensemble.stack_lgbm.num_leaves must be an integer >= 2"),
        ({"weight_search": {"step": 3}}, r"unknown key 'ensemble.weight_search.step'"),
    ],
)  # fmt: skip
def test_bad_ensemble_params_name_their_key(ensemble, message):
    with pytest.raises(ValueError, match=message):
        parse_params(raw_params(SIX, **ensemble))


def test_member_files_that_are_missing_or_mismatched_name_the_member_and_count(work):
    fab = fabricate(work, {"strong": signal(1.6), "weak": signal(0.3)})
    params = params_for(["strong", "weak"], methods=["mean"])
    oof_path = Path("data/oof/weak.parquet")
    oof = pd.read_parquet(oof_path)
    oof.iloc[5:].to_parquet(oof_path)
    n = len(fab.pairs)
    with pytest.raises(ValueError, match=rf"'weak' has {n - 5} OOF rows for the {n} .* 5 missing"):
        run_ensemble(params)
    oof.assign(fold=(oof["fold"] + 1) % 3).to_parquet(oof_path)
    with pytest.raises(ValueError, match=rf"'weak': {n} of {n} OOF pairs carry another fold"):
        run_ensemble(params)
    oof.assign(prob=oof["prob"] * 2).to_parquet(oof_path)
    with pytest.raises(
        ValueError, match=r"'weak': \d+ of \d+ OOF probabilities are NaN or outside"
    ):
        run_ensemble(params)
    oof.to_parquet(oof_path)
    test_path = Path("data/test/strong.parquet")
    pd.read_parquet(test_path).iloc[:-1].to_parquet(test_path)
    with pytest.raises(ValueError, match=r"'strong' has 199 test rows for the 200 .* img_pairs"):
        run_ensemble(params)
    test_path.unlink()
    with pytest.raises(FileNotFoundError, match=r"data/test/strong.parquet: test predictions of"):
        run_ensemble(params)


def test_the_ensemble_process_loads_no_deep_learning_framework(work):
    fabricate(work, SIX)
    Path("params.yaml").write_text(yaml.safe_dump(raw_params(SIX, methods=FAST + ["stack_lgbm"])))
    code = textwrap.dedent(
        """
        import sys
        from kinship.cli import main
        code = main(["ensemble"])
        loaded = sorted(m for m in ("tensorflow", "torch", "keras", "jax") if m in sys.modules)
        print("exit", code, "loaded:", loaded)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "exit 0 loaded: []" in proc.stdout, proc.stderr[-3000:]
    assert Path("submission.csv").is_file()


# --- blending properties -----------------------------------------------------------------------

probabilities = arrays(
    np.float64,
    st.tuples(st.integers(2, 40), st.integers(1, 5)),
    elements=st.floats(0, 1, allow_nan=False),
)


@given(probabilities, st.randoms(use_true_random=False))
def test_mean_and_rank_do_not_depend_on_member_order(X, random):
    order = list(range(X.shape[1]))
    random.shuffle(order)
    np.testing.assert_allclose(Mean().predict(X[:, order]), Mean().predict(X), atol=1e-12)
    rank = Rank().fit(X, None).predict(X)
    np.testing.assert_allclose(Rank().fit(X[:, order], None).predict(X[:, order]), rank, atol=1e-12)
    assert ((rank > 0) & (rank < 1)).all()


@given(probabilities, st.floats(0.01, 100))
def test_weighted_with_equal_weights_is_the_mean_and_one_hot_is_the_member(X, w):
    m = X.shape[1]
    np.testing.assert_allclose(Weighted(np.full(m, w)).predict(X), Mean().predict(X), atol=1e-12)
    one_hot = np.eye(m)[m - 1] * w
    np.testing.assert_allclose(Weighted(one_hot).predict(X), X[:, m - 1], atol=1e-12)


@given(probabilities, st.integers(0, 2**16))
def test_auc_is_sklearns_roc_auc(X, seed):
    from sklearn.metrics import roc_auc_score

    y = np.random.default_rng(seed).integers(0, 2, len(X))
    y[:2] = [0, 1]
    for column in np.round(X, 1).T:  # with ties
        assert auc(y, column) == pytest.approx(roc_auc_score(y, column), abs=1e-12)


@given(probabilities)
def test_rank_on_its_fitting_rows_is_the_mean_normalised_rank(X):
    from scipy.stats import rankdata

    expected = np.mean([(rankdata(c) - 0.5) / len(c) for c in X.T], axis=0)
    np.testing.assert_allclose(Rank().fit(X, None).predict(X), expected, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(probabilities, st.integers(0, 2**16))
def test_searched_weights_lie_on_the_simplex_and_never_lose_to_the_best_member(X, seed):
    y = np.random.default_rng(seed).integers(0, 2, len(X))
    y[:2] = [0, 1]
    search = WeightSearch(steps=8).fit(X, y)
    weights = search.weights / search.weights.sum()
    assert (weights >= 0).all() and weights.sum() == pytest.approx(1)
    best = max(auc(y, c) for c in X.T)
    assert auc(y, search.predict(X)) >= best - 1e-12


def _reference_bootstrap(labels, scores, groups, seed, n_boot):
    """The family bootstrap written plainly: resample families, concatenate their pairs, and let
    scikit-learn score each resample (an independent check of the vectorised version)."""
    codes, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(len(codes))]
    draws = np.random.default_rng(seed).integers(len(codes), size=(n_boot, len(codes)))
    out = []
    for draw in draws:
        picked = np.concatenate([members[g] for g in draw])
        out.append(auc(labels[picked], scores[picked]))
    return np.array(out)


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**16))
def test_family_bootstrap_matches_bootstrap_auc_and_a_paired_gain_of_a_copy_is_zero(seed):
    rng = np.random.default_rng(seed)
    n = 120
    labels = rng.integers(0, 2, n)
    scores = np.round(labels * 0.3 + rng.random(n), 1)  # with ties
    groups = rng.integers(0, 15, n).astype(str)
    boots = family_bootstrap_aucs(labels, scores, groups, seed=seed, n_boot=20)[:, 0]
    expected = _reference_bootstrap(labels, scores, groups, seed=seed, n_boot=20)
    np.testing.assert_allclose(boots, expected, atol=1e-12)
    usable = expected[~np.isnan(expected)]
    if len(usable):
        interval = np.percentile(usable, [2.5, 97.5])
        np.testing.assert_allclose(bootstrap_auc(labels, scores, groups, seed, 20), interval)
    gain, low, high = paired_bootstrap_gain(labels, scores, scores.copy(), groups, seed, 20)
    assert gain == low == high == 0.0


def test_two_folds_cross_validate_inside_on_family_halves(work):
    fabricate(work, SIX, k=2)
    metrics = run_ensemble(params_for(SIX, methods=["mean", "weight_search", "stack_logistic"]))
    assert set(metrics["nested_choices"]) == {"fold0", "fold1"}
    assert metrics["oof"]["ensemble"]["auc"] > metrics["oof"]["members"]["medium"]["auc"]

"""The report stage on a fabricated workspace (tests/reportfixtures.py): members of known AUC
(0.90, 0.75, 0.60 and a constant), the real ensemble stage run on them, then the report.

The page is checked as a browser renders it (Debian's chromium, driven by playwright, offline);
the pieces are checked against scikit-learn or hand-counted answers.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from reportfixtures import (
    KNOWN_AUCS,
    MEMBERS,
    build_workspace,
    chromium,
    dvc_plots_repo,
    open_page,
    realised_auc,
)
from sklearn.metrics import classification_report as sk_report
from sklearn.metrics import roc_auc_score

from kinship import paths
from kinship.cli import main
from kinship.metrics import auc, best_threshold
from kinship.report import numbers
from kinship.report.stage import run_report

REPO = Path(__file__).resolve().parents[1]
SCREENSHOT = REPO / "docs" / "images" / "report.png"
OUTPUTS = [
    paths.REPORT_HTML,
    paths.REPORT_METRICS,
    paths.REPORT_FIGURES_DIR,
    paths.REPORT_PLOTS_DIR,
]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """One fabricated workspace with its report, built once for the module (read-only)."""
    root = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        ws = build_workspace(root)
        run_report(ws.params)
    return ws


@pytest.fixture
def copy(workspace, tmp_path, monkeypatch) -> Path:
    """A private copy of the workspace, as the current directory (for tests that break it)."""
    target = tmp_path / "w"
    shutil.copytree(workspace.root, target)
    monkeypatch.chdir(target)
    return target


def _metrics(root: Path) -> dict:
    return json.loads((root / paths.REPORT_METRICS).read_text())


# --- the page in a browser ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium, networking off, every request logged (skips when it is absent)."""
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as context_and_requests:
        yield context_and_requests


def test_rendered_report_shows_known_aucs_one_curve_each_and_fetches_nothing(
    workspace, browser, tmp_path
):
    page, requests, errors = open_page(*browser, workspace.root / paths.REPORT_HTML)
    # 1. the table shows each member's AUC to three decimals (the fabricated, known values)
    for name, target in KNOWN_AUCS.items():
        value = realised_auc(workspace.fab, name)
        assert abs(value - target) < 0.03, (name, value)  # the fixture made what it promised
        shown = page.inner_text(f'#scores-table tr[data-row="member:{name}"] td.auc')
        assert shown == f"{value:.3f}", name
    assert page.inner_text('#scores-table tr[data-row="member:flat"] td.auc') == "0.500"
    ensemble = json.loads((workspace.root / "reports/ensemble/metrics.json").read_text())
    assert page.inner_text('#scores-table tr[data-row="ensemble"] td.auc') == (
        f"{ensemble['oof']['ensemble']['auc']:.3f}"
    )
    assert page.inner_text('#scores-table tr[data-row="member:medium"] td.time') == "30 s"
    # 2. the ROC plot: one drawn curve per member plus the ensemble
    curves = page.locator("#roc-figure svg g.roc-curve")
    names = [curves.nth(i).get_attribute("data-curve") for i in range(curves.count())]
    expected = [*MEMBERS, f"ensemble ({ensemble['chosen_method']})"]
    assert names == expected
    for i in range(curves.count()):
        assert curves.nth(i).locator("path").count() == 1
        assert curves.nth(i).locator("path").bounding_box()["width"] > 100  # drawn, visible
    # 3. the submission is scored on the test labels; the holdout has its own table
    assert page.inner_text('#submission-table tr[data-row="submission"] td.auc') == (
        f"{_metrics(workspace.root)['submission']['auc']:.3f}"
    )
    assert page.locator('#holdout-table tr[data-row="member:strong"]').count() == 1
    # 4. nothing but the page itself was requested, and nothing failed
    assert requests == [(workspace.root / paths.REPORT_HTML).resolve().as_uri()]
    assert errors == []
    shot = tmp_path / "report.png"
    page.screenshot(path=shot, full_page=True)
    assert shot.stat().st_size > 50_000
    if os.environ.get("KINSHIP_UPDATE_SCREENSHOT"):  # refresh the README's example
        page.screenshot(path=SCREENSHOT)
    page.close()


def test_dvc_plots_render_offline_with_the_vendored_template(workspace, browser, tmp_path):
    """`dvc plots show` with vendor/vega/dvc_plots.html: data plots drawn by the inlined vega,
    image plots shown, no request beyond file://."""
    repo = dvc_plots_repo(workspace.root, tmp_path / "repo")
    subprocess.run(
        [str(Path(sys.executable).parent / "dvc"), "plots", "show", "-q", "-o", "out"],
        cwd=repo,
        check=True,
        capture_output=True,
        timeout=120,
    )
    html = (repo / "out" / "index.html").read_text()
    assert "cdn.jsdelivr" not in html and "http://" not in html.split("<script>")[0]
    page, requests, errors = open_page(*browser, repo / "out" / "index.html")
    page.wait_for_selector(".vega-embed svg, .vega-embed canvas", timeout=10_000)
    assert page.locator(".vega-embed").count() == 2  # roc.csv and calibration.csv
    assert page.evaluate("Array.from(document.images).every(i => i.naturalWidth > 0)")
    assert page.locator("img").count() == 3  # the SVG figures
    assert all(url.startswith("file://") for url in requests), requests
    assert errors == []
    page.close()


# --- the stage's outputs -----------------------------------------------------------------------


def test_outputs_hold_the_numbers_computed_independently(workspace):
    root, fab = workspace.root, workspace.fab
    metrics = _metrics(root)
    submission = pd.read_csv(root / paths.SUBMISSION_FILE)
    truth = dict(zip(fab.test_pairs["img_pair"], fab.test_labels, strict=True))
    expected = roc_auc_score(submission["img_pair"].map(truth), submission["is_related"])
    assert metrics["submission"]["auc"] == pytest.approx(expected, abs=1e-6)
    assert metrics["submission"]["pairs"] == len(fab.test_pairs)
    oof = pd.read_parquet(root / "reports/ensemble/oof.parquet")
    for kind in numbers.NEGATIVE_KINDS:
        rows = (oof["label"] == 1) | (oof["kind"] == kind)
        value = roc_auc_score(oof.loc[rows, "label"], oof.loc[rows, "strong"])
        assert metrics["auc_by_kind"]["strong"][kind] == pytest.approx(value, abs=1e-6)
    assert set(metrics["auc_by_kind"]) == {*MEMBERS, "ensemble"}  # stable keys for metrics diff
    roc = pd.read_csv(root / paths.REPORT_PLOTS_DIR / "roc.csv")
    assert list(roc["curve"].unique())[:-1] == list(MEMBERS)
    assert {p.name for p in (root / paths.REPORT_FIGURES_DIR).iterdir()} == {
        "roc.svg",
        "correlation.svg",
        "calibration.svg",
    }
    html = (root / paths.REPORT_HTML).read_text()
    assert "<script" not in html and ' src="http' not in html and ' href="http' not in html


def test_rerun_is_byte_identical_and_names_no_host_or_folder(copy, workspace):
    before = _digests(copy)
    run_report(workspace.params)
    assert _digests(copy) == before
    html = (copy / paths.REPORT_HTML).read_text()
    assert str(copy) not in html and str(workspace.root) not in html
    host = socket.gethostname()
    assert len(host) < 4 or host not in html


def _digests(root: Path) -> dict[str, str]:
    files = []
    for out in OUTPUTS:
        path = root / out
        files += sorted(path.rglob("*")) if path.is_dir() else [path]
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_without_test_labels_the_page_says_so(copy, workspace):
    labels = pd.read_parquet(copy / paths.TEST_LABELS_TABLE)
    labels.iloc[:0].to_parquet(copy / paths.TEST_LABELS_TABLE, index=False)  # as prepare writes it
    run_report(workspace.params)
    assert _metrics(copy)["submission"] is None
    assert "cannot be scored here" in (copy / paths.REPORT_HTML).read_text()


def test_without_holdout_the_section_is_left_out(copy, workspace):
    path = copy / "reports/ensemble/metrics.json"
    metrics = json.loads(path.read_text())
    del metrics["holdout"]
    path.write_text(json.dumps(metrics))
    run_report(workspace.params)
    html = (copy / paths.REPORT_HTML).read_text()
    assert 'id="holdout' not in html and "holdout AUC" not in html
    assert 'id="holdout' in (workspace.root / paths.REPORT_HTML).read_text()


def test_report_loads_no_deep_learning_framework(copy):
    code = (
        "import sys; from kinship.cli import main; rc = main(['report']); "
        "print('rc', rc, 'loaded', sorted(m for m in ('tensorflow', 'torch', 'keras', 'jax') "
        "if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "rc 0 loaded []" in proc.stdout, proc.stdout + proc.stderr


# --- missing or broken inputs: errors name the file ------------------------------------------


@pytest.mark.parametrize(
    ("remove", "message"),
    [
        ("reports/ensemble/metrics.json", "dvc repro ensemble"),
        ("reports/ensemble/oof.parquet", "dvc repro ensemble"),
        ("reports/members/weak/timing.json", "dvc repro train@weak"),
        ("reports/prepare/summary.json", "dvc repro prepare"),
        ("data/prepared/test_labels.parquet", "dvc repro prepare"),
        ("submission.csv", "dvc repro ensemble"),
    ],
)
def test_missing_input_is_an_error_naming_the_file(copy, workspace, remove, message):
    (copy / remove).unlink()
    with pytest.raises(FileNotFoundError, match=rf"{remove}: missing .*{message}"):
        run_report(workspace.params)
    assert not (copy / remove).exists()


def test_cli_reports_a_missing_key_with_the_file_and_key(copy, capsys):
    path = copy / "reports/members/medium/metrics.json"
    metrics = json.loads(path.read_text())
    del metrics["input_size"]
    path.write_text(json.dumps(metrics))
    assert main(["report"]) == 2
    err = capsys.readouterr().err
    assert "reports/members/medium/metrics.json: missing key 'input_size'" in err


@pytest.mark.parametrize("key", ["chosen_method", "oof.gain_over_best_member.over"])
def test_ensemble_metrics_without_a_key_is_an_error_naming_it(copy, workspace, key):
    path = copy / "reports/ensemble/metrics.json"
    metrics = json.loads(path.read_text())
    *parents, last = key.split(".")
    parent = metrics
    for name in parents:
        parent = parent[name]
    del parent[last]
    path.write_text(json.dumps(metrics))
    with pytest.raises(ValueError, match=rf"ensemble/metrics.json: missing key '{key}'"):
        run_report(workspace.params)


def test_oof_table_without_a_member_column_is_an_error(copy):
    path = copy / "reports/ensemble/oof.parquet"
    pd.read_parquet(path).drop(columns=["weak"]).to_parquet(path)
    with pytest.raises(ValueError, match=r"oof.parquet: missing columns \['weak'\]"):
        run_report(_params(copy))


def _params(root: Path):
    from kinship.params import load_params

    return load_params(root / paths.PARAMS_FILE)


# --- the pieces --------------------------------------------------------------------------------

LABELS = np.array([1, 1, 0, 0, 1, 0])
PROBS = np.array([0.9, 0.4, 0.6, 0.1, 0.5, 0.5])


def test_confusion_matrix_counts_by_hand():
    # predicted kin (>= 0.5): pairs 0, 2, 4, 5; actual kin: pairs 0, 1, 4
    assert numbers.confusion(LABELS, PROBS, 0.5) == {"tn": 1, "fp": 2, "fn": 1, "tp": 2}
    assert numbers.confusion(LABELS, PROBS, 0.95) == {"tn": 3, "fp": 0, "fn": 3, "tp": 0}


@pytest.mark.parametrize("threshold", [0.05, 0.5, 0.55, 0.95])
def test_classification_report_matches_scikit_learn(threshold):
    ours = numbers.classification_report(numbers.confusion(LABELS, PROBS, threshold))
    predicted = np.greater_equal(PROBS, threshold).astype(int)
    theirs = sk_report(LABELS, predicted, labels=[0, 1], output_dict=True, zero_division=0)
    for name, key in (
        (numbers.CLASS_NAMES[0], "0"),
        (numbers.CLASS_NAMES[1], "1"),
        ("macro avg", "macro avg"),
    ):
        for field in ("precision", "recall", "f1-score", "support"):
            assert ours[name][field.replace("-score", "")] == pytest.approx(theirs[key][field])
    assert ours["accuracy"]["f1"] == pytest.approx(theirs["accuracy"])


@pytest.mark.parametrize("seed", range(4))
def test_best_threshold_is_the_best_of_scikit_learns_roc_thresholds(seed):
    from sklearn.metrics import roc_curve

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 300)
    probs = np.round(np.clip(labels * 0.3 + rng.normal(0.35, 0.25, 300), 0, 1), 2)  # ties
    thresholds = roc_curve(labels, probs)[2][1:]  # every threshold but "none is kin"
    accuracies = [np.mean((probs >= t) == labels) for t in thresholds]
    ours = numbers.threshold_accuracy(labels, probs)
    assert ours["best_threshold"] == pytest.approx(thresholds[int(np.argmax(accuracies))])
    assert ours["accuracy_at_best"] == pytest.approx(max(accuracies))
    assert ours["accuracy_at_0.5"] == pytest.approx(np.mean((probs >= 0.5) == labels))
    assert best_threshold(np.ones(4), probs[:4]) == (0.5, np.mean(probs[:4] >= 0.5))


def test_auc_per_negative_kind():
    labels = np.array([1, 1, 1, 0, 0, 0, 0])
    kinds = np.array(["kin"] * 3 + ["cross_family"] * 2 + ["in_family_nonkin"] * 2)
    scores = np.array([0.9, 0.8, 0.7, 0.1, 0.2, 0.85, 0.75])  # strangers easy, in-family not
    result = numbers.auc_by_kind(labels, kinds, scores)
    assert result["cross_family"] == {"auc": 1.0, "negatives": 2}
    expected = roc_auc_score([1, 1, 1, 0, 0], [0.9, 0.8, 0.7, 0.85, 0.75])
    assert result["in_family_nonkin"] == {"auc": pytest.approx(expected), "negatives": 2}
    no_in_family = numbers.auc_by_kind(labels[:5], kinds[:5], scores[:5])
    assert no_in_family["in_family_nonkin"] == {"auc": None, "negatives": 0}


def test_reliability_bins_and_correlations():
    probs = np.array([0.0, 0.05, 0.15, 0.95, 1.0, 1.0])
    bins = numbers.reliability(np.array([0, 0, 1, 1, 1, 0]), probs)
    assert bins["bin"].tolist() == [0, 1, 9] and bins["count"].tolist() == [2, 1, 3]
    assert bins["observed"].tolist() == pytest.approx([0, 1, 2 / 3])
    table = pd.DataFrame({"a": [0.1, 0.5, 0.9, 0.3], "b": [0.2, 0.4, 0.8, 0.5], "c": 0.5})
    matrix = numbers.correlations(table, ["a", "b", "c"])
    assert matrix.loc["a", "b"] == pytest.approx(np.corrcoef(table["a"], table["b"])[0, 1])
    assert np.isnan(matrix.loc["a", "c"]) and np.isnan(matrix.loc["c", "c"])


def test_submission_auc_needs_a_label_for_every_pair():
    submission = pd.DataFrame({"img_pair": ["a-b", "c-d", "e-f"], "is_related": [0.9, 0.2, 0.6]})
    labels = pd.DataFrame({"img_pair": ["e-f", "a-b", "c-d", "x-y"], "is_related": [0, 1, 0, 1]})
    result = numbers.submission_auc(submission, labels, "data/x/test_labels.csv")
    assert result == {"auc": 1.0, "pairs": 3, "positives": 1}
    with pytest.raises(ValueError, match=r"data/x/test_labels.csv: no label for 1 of the 3"):
        numbers.submission_auc(
            submission, labels[labels["img_pair"] != "c-d"], "data/x/test_labels.csv"
        )


@pytest.mark.parametrize("seed", range(3))
def test_roc_points_and_auc_match_scikit_learn(seed):
    from sklearn.metrics import roc_curve

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 400)
    scores = np.round(labels * 0.2 + rng.random(400), 1)  # many ties
    fpr, tpr = numbers.roc_points(labels, scores)
    sk_fpr, sk_tpr, _ = roc_curve(labels, scores)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    assert auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))
    assert np.isnan(auc(np.ones(5), scores[:5])) and np.isnan(auc([], []))
    thin_fpr, thin_tpr = numbers.thin(fpr, tpr, step=0.05)
    assert len(thin_fpr) <= 2 / 0.05 + 2 and (thin_fpr[0], thin_tpr[-1]) == (0, 1)

"""A fabricated workspace for the report stage: the ensemble stage really run on fabricated member
predictions of known AUC (tests/ensemblefixtures.py), plus what the other stages would have left
beside it (each member's metrics.json and timing.json, the prepare summary, test labels).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from ensemblefixtures import Fabricated, Member, constant, fabricate, raw_params, signal
from scipy.stats import norm

from kinship import paths
from kinship.ensemble.stage import run_ensemble
from kinship.params import Params, parse_params

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND",  # belt and braces: no name resolves
]


def strength_for_auc(target: float) -> float:
    """The `signal` strength whose expected AUC is `target`: with logit s·(±1) + N(0, 1) noise,
    AUC = Φ(s·√2)."""
    return float(norm.ppf(target) / np.sqrt(2))


KNOWN_AUCS = {"strong": 0.90, "medium": 0.75, "weak": 0.60}
MEMBERS: dict[str, Member] = {n: signal(strength_for_auc(a)) for n, a in KNOWN_AUCS.items()}
MEMBERS["flat"] = constant(0.5)
METHODS = ["mean", "weighted", "rank", "stack_logistic"]
SIZES = {"strong": 224, "medium": 160, "weak": 105, "flat": 64}


@dataclass
class Workspace:
    root: Path
    fab: Fabricated
    params: Params


def build_workspace(work: Path, holdout_families: int = 10) -> Workspace:
    """Run in `work` (the current directory): fabricate, run the ensemble, add the side files
    (params.yaml included, so `kinship report` runs there)."""
    fab = fabricate(
        work, MEMBERS, n_families=90, pairs_per_family=12, holdout_families=holdout_families
    )
    mark_in_family_negatives(work, fab)
    raw = raw_params(MEMBERS, methods=METHODS)
    (work / paths.PARAMS_FILE).write_text(yaml.safe_dump(raw, sort_keys=False))
    params = parse_params(raw, str(work / paths.PARAMS_FILE))
    run_ensemble(params)
    for i, name in enumerate(MEMBERS):
        write_member_reports(work, name, fab, i)
    write_summary(work, fab)
    # what prepare writes from the dataset's test_labels.csv
    fab.test_pairs[["img_pair"]].assign(is_related=fab.test_labels.astype("int8")).to_parquet(
        work / paths.TEST_LABELS_TABLE, index=False
    )
    return Workspace(work, fab, params)


def mark_in_family_negatives(work: Path, fab: Fabricated) -> None:
    """Relabel the negatives of every other family as in-family non-kin (the fabricated set has
    cross-family negatives only), so every fold has both negative kinds."""
    pairs = fab.pairs
    family = pairs["pair_id"].str[:5]
    index = family.str[1:].astype(int)
    pairs.loc[(pairs["label"] == 0) & (index % 2 == 0), "kind"] = "in_family_nonkin"
    pairs.to_parquet(work / paths.PAIRS_TABLE, index=False)


def write_member_reports(work: Path, name: str, fab: Fabricated, i: int) -> None:
    """metrics.json and timing.json as the train stage writes them (the keys the report reads)."""
    directory = work / paths.MEMBER_REPORTS_DIR / name
    directory.mkdir(parents=True, exist_ok=True)
    metrics = {
        "model": "siamese_cnn",
        "input_size": SIZES[name],
        "weights": "none" if i % 2 else f"weights/{name}.h5",
        "oof": {"auc": None},
        "per_fold_auc": {},
    }
    folds = sorted(int(f) for f in fab.pairs["fold"].unique())
    timing = {
        "member": name,
        "folds": [
            {"fold": k, "build_seconds": 1.0, "seeds": [{"seed": 0, "train_seconds": 10.0 * i}]}
            for k in folds
        ],
    }
    (directory / "metrics.json").write_text(json.dumps(metrics))
    (directory / "timing.json").write_text(json.dumps(timing))


def write_summary(work: Path, fab: Fabricated) -> None:
    """reports/prepare/summary.json with the counts the report shows."""
    pairs: pd.DataFrame = fab.pairs
    kinds = ("kin", "cross_family", "in_family_nonkin")
    folds = {
        str(k): {
            "families": int(g["pair_id"].str[:5].nunique()),
            "people": int(8 * g["pair_id"].str[:5].nunique()),
            "images": int(8 * g["pair_id"].str[:5].nunique()),
            "relationships": int((g["label"] == 1).sum()),
            "pairs": {kind: int((g["kind"] == kind).sum()) for kind in kinds},
        }
        for k, g in pairs.groupby("fold")
    }
    summary = {
        "families": int(pairs["pair_id"].str[:5].nunique()),
        "people": 8 * int(pairs["pair_id"].str[:5].nunique()),
        "train_images": 8 * int(pairs["pair_id"].str[:5].nunique()),
        "relationship_rows": int((pairs["label"] == 1).sum()),
        "usable_relationships": int((pairs["label"] == 1).sum()),
        "test_images": 2 * len(fab.test_pairs),
        "test_pairs": len(fab.test_pairs),
        "folds": folds,
    }
    path = work / paths.PREPARE_SUMMARY
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary))


def realised_auc(fab: Fabricated, name: str) -> float:
    """The AUC the fabricated member actually reached on the OOF pairs."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(fab.pairs["label"], fab.oof[name]))


@contextlib.contextmanager
def chromium(profile: Path):
    """Debian's Chromium through playwright (never a downloaded browser), headless, offline, with a
    fresh profile; yields (context, requests): every URL any page of it asked for, in order.
    Requests other than file:// are aborted. Skips the test when Debian's Chromium (a system
    package, not a Python dependency) is absent; playwright is a dev dependency and must import.
    """
    import pytest
    from playwright import sync_api

    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (`make setup` does)")
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            offline=True,
            viewport={"width": 1280, "height": 1500},
        )
        requests: list[str] = []
        context.on("request", lambda request: requests.append(request.url))
        context.route("**/*", _only_files)
        try:
            yield context, requests
        finally:
            context.close()


def _only_files(route) -> None:
    if route.request.url.startswith("file://"):
        route.continue_()
    else:
        route.abort()


def open_page(context, requests: list[str], path: Path):
    """Open `path` in a new page: (page, requests, errors), the request log emptied first."""
    requests.clear()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(path.resolve().as_uri(), wait_until="load")
    return page, requests, errors


PLOTS_YAML = textwrap.dedent(
    """
    plots:
      - reports/figures
      - reports/plots/roc.csv:
          template: src/kinship/report/dvc_templates/curves.json
          x: fpr
          y: tpr
      - reports/plots/calibration.csv:
          template: src/kinship/report/dvc_templates/curves.json
          x: predicted
          y: observed
    """
)
"""The plots declarations the lead's dvc.yaml carries (the report's part of it)."""


def dvc_plots_repo(workspace: Path, repo: Path) -> Path:
    """A git + DVC repo holding the report's plot files, the project's vendored vega template
    (set as `plots.html_template`, as in the project's .dvc/config) and the curves template."""
    for rel in ("vendor/vega/dvc_plots.html", "src/kinship/report/dvc_templates/curves.json"):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / rel, repo / rel)
    for out in (paths.REPORT_FIGURES_DIR, paths.REPORT_PLOTS_DIR):
        shutil.copytree(workspace / out, repo / out)
    (repo / "dvc.yaml").write_text(PLOTS_YAML)
    dvc = str(Path(sys.executable).parent / "dvc")
    for cmd in (
        ["git", "init", "-q"],
        [dvc, "init", "-q"],
        [dvc, "config", "plots.html_template", "../vendor/vega/dvc_plots.html"],
    ):
        subprocess.run(cmd, cwd=repo, check=True, capture_output=True, timeout=120)
    return repo

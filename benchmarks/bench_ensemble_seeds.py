"""The ensemble's choices at three seeds of the demo pipeline (default params, synthetic data).

For each seed s, a temporary copy of the project (as `bench_demo.py` makes it) gets
`synthesize.seed`, `folds.seed`, `pairs.seed`, `train.seed` and `ensemble.seed` = s and runs
`dvc repro`. Printed per seed: each member's OOF AUC, each method's nested OOF AUC, the method
`auto` picked (and what each outer fold picked), the ensemble's gain over the best member with its
paired family-bootstrap 95 % interval, and the AUC on the synthetic test labels; then how the
calibrator fitted on OOF scores does on the test pairs (whose member scores are means over the
fold models), beside one fitted on the holdout (when there is one), one fitted on the other half
of the test pairs (cross-fitted: what a holdout of fold-mean scores would give) and an oracle
fitted on the test labels themselves; last, how often each method wins.

`--holdout-prefix F009` adds a run at the first seed with those families held out.
`--keep DIR` keeps the workspaces (DIR/seed0, ...); `--reuse DIR` skips the pipeline and reruns
only the ensemble stage in those workspaces with this checkout's code (seconds, not minutes).
The first line names the CPU: compare only runs on the same one.
Run from the repo root: `nice -n 10 .venv/bin/python benchmarks/bench_ensemble_seeds.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_demo import cpu_description  # noqa: E402
from conftest import copy_project, run  # noqa: E402

SEEDED = ("synthesize", "folds", "pairs", "train", "ensemble")
REPRO_TIMEOUT_S = 3 * 3600
"""One seed's `dvc repro`: ~7 min alone on 2 cores, over 30 min niced beside other work."""


def workspace_name(seed: int, holdout: str | None) -> str:
    return f"seed{seed}" + (f"-holdout{holdout}" if holdout else "")


def reproduce(work: Path, seed: int, holdout: str | None) -> None:
    """The whole DAG in `work` with every seed set to `seed` (and the holdout prefix, if any)."""
    profile: dict = {section: {"seed": seed} for section in SEEDED}
    if holdout:
        profile["folds"]["holdout_prefix"] = holdout
    profile_path = work.parent / f"{work.name}.profile.yaml"
    profile_path.write_text(yaml.safe_dump(profile))
    run([sys.executable, "-m", "kinship.cli", "profile", str(profile_path)], work)
    run(["git", "commit", "-qam", f"seeds {seed}"], work)
    run(["dvc", "repro"], work, timeout=REPRO_TIMEOUT_S)


def rerun_ensemble(work: Path) -> None:
    """The ensemble stage alone with this checkout's code (no DVC: the members stay as trained)."""
    run([sys.executable, "-m", "kinship.cli", "ensemble"], work)


def measure(work: Path) -> dict:
    """The seed's numbers, from the ensemble's metrics and per-pair tables and the test labels."""
    from kinship.ensemble.calibration import Platt, brier, log_loss
    from kinship.metrics import auc

    metrics = json.loads((work / "reports/ensemble/metrics.json").read_text())
    oof = metrics["oof"]
    tables = {s: pd.read_parquet(work / f"reports/ensemble/{s}.parquet") for s in ("oof", "test")}
    holdout = pd.read_parquet(work / "reports/ensemble/holdout.parquet")
    truth = pd.read_parquet(work / "data/prepared/test_labels.parquet")
    test = tables["test"].merge(truth, on="img_pair", validate="one_to_one")
    y_test = test["is_related"].to_numpy()
    chosen = f"ensemble_{metrics['chosen_method']}"
    # the calibrator's input on OOF rows (the chosen method's out-of-fold score) and on test rows
    oof_score, y_oof = tables["oof"][chosen].to_numpy(), tables["oof"]["label"].to_numpy()
    test_score = test["ensemble_selected"].to_numpy()
    fits = {"oof": Platt().fit(oof_score, y_oof)}
    if len(holdout):
        fits["holdout"] = Platt().fit(
            holdout["ensemble_selected"].to_numpy(), holdout["label"].to_numpy()
        )
    fits["oracle"] = Platt().fit(test_score, y_test)
    # a labelled set of fold-mean scores like the test's, without a holdout run: each half of the
    # test pairs calibrated on the other half (what calibrating on a holdout would give)
    half = np.random.default_rng(0).permutation(len(y_test)) % 2 == 0
    crossfit = np.empty(len(y_test))
    for part in (half, ~half):
        crossfit[part] = Platt().fit(test_score[~part], y_test[~part]).predict(test_score[part])

    def spread(scores):
        from kinship.ensemble.methods import logit

        return float(np.std(logit(scores)))

    return {
        "members": {m: oof["members"][m]["auc"] for m in metrics["members"]},
        "methods": {m: oof["methods"][m]["auc"] for m in oof["methods"]},
        "chosen": metrics["chosen_method"],
        "nested": list(metrics["nested_choices"].values()),
        "ensemble": oof["ensemble"]["auc"],
        "gain": oof["gain_over_best_member"],
        "calibrated_on": metrics.get("calibrated_on", "oof"),
        "test_auc": {
            "ensemble": auc(y_test, test["ensemble_prob"]),
            **{m: auc(y_test, test[m]) for m in metrics["members"]},
        },
        "test_method_auc": {m: auc(y_test, test[f"ensemble_{m}"]) for m in oof["methods"]},
        "test_brier": {
            "as written": brier(y_test, test["ensemble_prob"]),
            **{f"platt on {k}": brier(y_test, f.predict(test_score)) for k, f in fits.items()},
            "platt on the other test half": brier(y_test, crossfit),
        },
        "test_log_loss": {
            "as written": log_loss(y_test, test["ensemble_prob"]),
            **{f"platt on {k}": log_loss(y_test, f.predict(test_score)) for k, f in fits.items()},
            "platt on the other test half": log_loss(y_test, crossfit),
        },
        "platt_slope": {k: f.slope_ for k, f in fits.items()},
        "logit_std": {"oof": spread(oof_score), "test": spread(test_score)},
        "test_rate": {"kin": y_test.mean(), "mean prob": test["ensemble_prob"].mean()},
        "holdout": metrics.get("holdout"),
    }


def show(name: str, m: dict) -> None:
    print(f"\n## {name}")
    print("member OOF AUC:  " + ", ".join(f"{k} {v:.3f}" for k, v in m["members"].items()))
    print("method OOF AUC (nested):  " + ", ".join(f"{k} {v:.3f}" for k, v in m["methods"].items()))
    low, high = m["gain"]["ci95"]
    print(
        f"auto picked {m['chosen']} (outer folds: {', '.join(m['nested'])}); ensemble OOF AUC "
        f"{m['ensemble']:.3f}, gain over {m['gain']['over']} {m['gain']['auc_gain']:+.3f} "
        f"[{low:+.3f}, {high:+.3f}]"
    )
    best = max(m["members"], key=m["members"].get)
    top_test = max(m["test_auc"][k] for k in m["members"])
    print(
        f"test-label AUC: ensemble {m['test_auc']['ensemble']:.3f}, best OOF member {best} "
        f"{m['test_auc'][best]:.3f}, best member on test {top_test:.3f}"
    )
    print(
        "method test-label AUC:  "
        + ", ".join(f"{k} {v:.3f}" for k, v in m["test_method_auc"].items())
    )
    print(f"test-time calibrator fitted on: {m['calibrated_on']}")
    print("test Brier:  " + ", ".join(f"{k} {v:.4f}" for k, v in m["test_brier"].items()))
    print("test log-loss:  " + ", ".join(f"{k} {v:.4f}" for k, v in m["test_log_loss"].items()))
    std, rate = m["logit_std"], m["test_rate"]
    print(
        "Platt slope:  " + ", ".join(f"{k} {v:.3f}" for k, v in m["platt_slope"].items())
        + f"; logit std of the score: OOF {std['oof']:.3f}, test {std['test']:.3f}"
        + f"; test kin rate {rate['kin']:.3f}, mean prob {rate['mean prob']:.3f}"
    )  # fmt: skip
    if m["holdout"]:
        h = m["holdout"]
        print(
            f"holdout ({h['pairs']} pairs): ensemble AUC {h['ensemble']['auc']:.3f}, gain "
            f"{h['gain_over_best_member']['auc_gain']:+.3f} {h['gain_over_best_member']['ci95']}, "
            f"Brier raw {h['brier']['raw']:.4f} calibrated {h['brier']['calibrated']:.4f}"
        )


def summary(results: dict[str, dict]) -> None:
    wins = Counter(max(m["methods"], key=m["methods"].get) for m in results.values())
    picks = Counter(m["chosen"] for m in results.values())
    nested = Counter(c for m in results.values() for c in m["nested"])
    print("\n## summary")
    print("top nested OOF AUC:  " + ", ".join(f"{k} {v}" for k, v in wins.most_common()))
    print("auto's pick (test time):  " + ", ".join(f"{k} {v}" for k, v in picks.most_common()))
    print("auto's pick per outer fold:  " + ", ".join(f"{k} {v}" for k, v in nested.most_common()))
    gains = [m["gain"]["auc_gain"] for m in results.values()]
    print(f"gain over the best member: mean {np.mean(gains):+.3f}, min {min(gains):+.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--holdout-prefix", help="also run the first seed with this holdout")
    parser.add_argument("--keep", type=Path, help="keep the workspaces under this folder")
    parser.add_argument("--reuse", type=Path, help="workspaces of an earlier --keep run")
    args = parser.parse_args()
    runs = [(s, None) for s in args.seeds]
    if args.holdout_prefix:
        runs.append((args.seeds[0], args.holdout_prefix))
    print(f"CPU: {cpu_description()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.reuse or args.keep or Path(tmp)
        results = {}
        for seed, holdout in runs:
            work = root / workspace_name(seed, holdout)
            if args.reuse:
                os.environ["PYTHONPATH"] = str(REPO / "src")
                rerun_ensemble(work)
            else:
                if work.exists():
                    shutil.rmtree(work)
                work.mkdir(parents=True)
                os.environ["PYTHONPATH"] = str(copy_project(work) / "src")
                reproduce(work, seed, holdout)
            try:
                results[work.name] = measure(work)
            except (KeyError, ValueError, FileNotFoundError) as err:  # an older ensemble's tables
                print(f"{work.name}: cannot measure ({err!r}); rerun with --reuse", flush=True)
                continue
            show(work.name, results[work.name])
            sys.stdout.flush()
        summary({k: v for k, v in results.items() if "holdout" not in k})
    return 0


if __name__ == "__main__":
    sys.exit(main())

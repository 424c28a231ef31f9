"""Real FIW numbers: the real-data CPU profile against the peer baselines, on the F09 holdout.

With `--run DIR`, copies the project into DIR (a fresh git repo whose data/real links to this
checkout's data/real), applies `profiles/fiw-cpu.yaml` and runs the DAG one stage at a time
(`dvc repro --single-item`), printing each stage's wall time and peak memory (the largest
resident set of any one process of the stage) and the total against the 60-minute target. Without
`--run`, it reads a finished workspace (`--workspace DIR`, default: this checkout).

Then, on the same 592 holdout pairs (each usable F09 relationship once with one seeded image pair,
plus as many cross-family negatives), each with a 95 % family-bootstrap interval:
- the peer baselines, computed here from the embed stage's dlib descriptors (the image itself, no
  flip): descriptor distance zero-shot; a logistic and a LightGBM head on `(x1−x2)²`, `x1²−x2²`,
  `x1·x2`, `|x1−x2|` trained on pairs of all other families (up to 10 image pairs per
  relationship, as many cross-family negatives; 500 rounds at 0.05, no early stopping);
- every member and the ensemble (the pipeline's own holdout predictions), and kin against
  in-family non-kin on the holdout's extra pairs;
- the ensemble's gain over its best member and, for each member, what removing it costs a
  logistic stack of the members' OOF logits (refit on the OOF rows, scored on the holdout), each
  with a paired family-bootstrap interval.

    python benchmarks/bench_real_fiw.py --run /tmp/fiw-run     # about 40 min on 2 cores
    python benchmarks/bench_real_fiw.py --workspace /tmp/fiw-run
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_demo import cpu_description, stage_order  # noqa: E402
from conftest import copy_project, pipeline_env, run  # noqa: E402

TARGET_S = 3600.0
PROFILE = REPO / "profiles" / "fiw-cpu.yaml"
BASELINE_FEATURES = ["sq_diff", "sq_sub", "prod", "abs_diff"]
N_BOOT = 1000


def timed_stage(stage: str, work: Path) -> tuple[float, float, float]:
    """Run one stage: its wall seconds, and the peak RSS (MiB) of the stage's own process and of
    its largest worker, as the stage logs them at exit (`kinship.cli.peak_rss`; DVC's own
    process, about 0.75 GiB, is not counted)."""
    start = time.perf_counter()
    proc = subprocess.run(
        ["dvc", "repro", "--single-item", stage], cwd=work, env=pipeline_env(),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"dvc repro {stage} failed:\n{proc.stdout[-6000:]}")
    found = re.findall(r"peak RSS (\d+) MiB \(largest worker process (\d+) MiB\)", proc.stdout)
    if not found:
        raise SystemExit(f"dvc repro {stage}: no peak RSS line in its output")
    own, worker = found[-1]
    return seconds, float(own), float(worker)


def run_pipeline(work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    copy_project(work)
    (work / "data").mkdir(exist_ok=True)
    (work / "data" / "real").symlink_to(REPO / "data" / "real")
    run([sys.executable, "-m", "kinship.cli", "profile", str(PROFILE)], work)
    run(["git", "commit", "-qam", "fiw-cpu profile"], work)
    print(f"CPU: {cpu_description()}", flush=True)
    total, timings = 0.0, {}
    for stage in stage_order(work):
        seconds, peak, worker = timed_stage(stage, work)
        total += seconds
        timings[stage] = {"seconds": round(seconds, 1), "peak_rss_mib": round(peak),
                          "largest_worker_rss_mib": round(worker)}  # fmt: skip
        print(f"{stage:28s} {seconds:8.1f} s  peak RSS {peak:6.0f} MiB, "
              f"largest worker {worker:5.0f} MiB", flush=True)  # fmt: skip
    print(f"{'total':28s} {total:8.1f} s  ({total / TARGET_S:.2f} of the {TARGET_S:.0f} s target)")
    (work / "reports" / "bench_real_fiw_timing.json").write_text(json.dumps(timings, indent=2))


def interval(labels, scores, groups) -> str:
    from kinship.metrics import auc, family_bootstrap_aucs

    boots = family_bootstrap_aucs(labels, np.asarray(scores)[:, None], groups, 0, N_BOOT)[:, 0]
    low, high = np.nanpercentile(boots, [2.5, 97.5])
    return f"{auc(labels, scores):.3f} [{low:.3f}, {high:.3f}]"


def paired_gain(labels, better, worse, groups) -> str:
    from kinship.metrics import auc, family_bootstrap_aucs

    boots = family_bootstrap_aucs(labels, np.column_stack([better, worse]), groups, 0, N_BOOT)
    low, high = np.nanpercentile(boots[:, 0] - boots[:, 1], [2.5, 97.5])
    return f"{auc(labels, better) - auc(labels, worse):+.3f} [{low:+.3f}, {high:+.3f}]"


def baselines(work: Path, prepared, holdout: pd.DataFrame) -> dict[str, np.ndarray]:
    """The peer baselines on the holdout pairs, from the embed stage's descriptors."""
    import lightgbm as lgb
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from kinship.frozen.features import pair_features
    from kinship.pairs import training_pairs

    descriptors = np.load(work / "data/embeddings/dlib_descriptors.npy")[:, 0]
    images = prepared.images
    people = prepared.people[prepared.people["fold"] >= 0]
    rels = prepared.relationships[prepared.relationships["fold"] >= 0]
    pairs = training_pairs(
        images[images["split"] == "train"], people, rels, rng=np.random.default_rng(0),
        kin_cap=10, negatives_per_kin=1.0, nonkin_share=0.0,
    )  # fmt: skip
    a, b = descriptors[prepared.rows(pairs["img1"])], descriptors[prepared.rows(pairs["img2"])]
    x, y = pair_features(a, b, BASELINE_FEATURES), pairs["label"].to_numpy()
    ha, hb = (
        descriptors[prepared.rows(holdout["img1"])],
        descriptors[prepared.rows(holdout["img2"])],
    )
    xh, xh_swapped = (
        pair_features(ha, hb, BASELINE_FEATURES),
        pair_features(hb, ha, BASELINE_FEATURES),
    )
    print(
        f"baseline training pairs: {len(pairs)} ({int(y.sum())} kin) "
        f"from {rels['family'].nunique()} families"
    )
    scaler = StandardScaler().fit(x)
    logistic = LogisticRegression(C=1.0, max_iter=3000).fit(scaler.transform(x), y)
    gbm = lgb.LGBMClassifier(
        n_estimators=500, learning_rate=0.05, num_leaves=31, subsample=0.8, subsample_freq=1,
        colsample_bytree=0.5, random_state=0, verbose=-1, deterministic=True, force_row_wise=True,
    ).fit(x, y)  # fmt: skip

    def symmetric(predict):
        return (predict(xh)[:, 1] + predict(xh_swapped)[:, 1]) / 2

    return {
        "peer: dlib distance, zero-shot": -np.linalg.norm(ha - hb, axis=1),
        "peer: dlib + logistic head": symmetric(
            lambda v: logistic.predict_proba(scaler.transform(v))
        ),
        "peer: dlib + LightGBM head": symmetric(gbm.predict_proba),
    }


def stack_ablation(work: Path, members: list[str], prepared, holdout_all: pd.DataFrame):
    """Holdout scores of a logistic stack of the members' OOF logits, with each member left out."""
    from sklearn.linear_model import LogisticRegression

    def logits(path: Path, keys: pd.Series, key: str) -> np.ndarray:
        table = pd.read_parquet(path).set_index(key)["prob"].loc[keys].to_numpy()
        p = np.clip(table, 1e-6, 1 - 1e-6)
        return np.log(p / (1 - p))

    oof_ids = prepared.pairs["pair_id"]
    y = prepared.pairs["label"].to_numpy()
    x_oof = np.column_stack(
        [logits(work / f"data/oof/{m}.parquet", oof_ids, "pair_id") for m in members]
    )
    x_hold = np.column_stack(
        [
            logits(work / f"data/holdout/{m}.parquet", holdout_all["pair_id"], "pair_id")
            for m in members
        ]
    )
    scores = {}
    for left_out in [None, *members]:
        keep = [j for j, m in enumerate(members) if m != left_out]
        model = LogisticRegression(C=1.0, max_iter=2000).fit(x_oof[:, keep], y)
        scores[left_out] = model.decision_function(x_hold[:, keep])
    return scores


def evaluate(work: Path) -> None:
    os.chdir(work)
    from kinship.metrics import auc, pair_families
    from kinship.params import load_params
    from kinship.train_stage import Prepared

    params = load_params()
    prepared = Prepared.load()
    holdout_all = prepared.holdout.reset_index(drop=True)
    if holdout_all.empty:
        raise SystemExit("the workspace has no holdout: use the fiw-cpu profile (F09 holdout)")
    protocol = (holdout_all["kind"] != "in_family_nonkin").to_numpy()
    in_family = (holdout_all["kind"] != "cross_family").to_numpy()
    family_of = dict(zip(prepared.images["image"], prepared.images["family"], strict=True))
    groups = pair_families(holdout_all["pair_id"], family_of)
    labels = holdout_all["label"].to_numpy()
    members = params.all_members
    scores = baselines(work, prepared, holdout_all[protocol])
    scores = {k: np.r_[v] for k, v in scores.items()}
    member_scores = {
        m: pd.read_parquet(f"data/holdout/{m}.parquet").set_index("pair_id")["prob"]
        .loc[holdout_all["pair_id"]].to_numpy()
        for m in members
    }  # fmt: skip
    ensemble = pd.read_parquet("reports/ensemble/holdout.parquet").set_index("pair_id")
    ensemble_prob = ensemble["ensemble_prob"].loc[holdout_all["pair_id"]].to_numpy()
    chosen = json.loads(Path("reports/ensemble/metrics.json").read_text())["chosen_method"]
    p_lab, p_grp = labels[protocol], groups[protocol]
    f_lab, f_grp = labels[in_family], groups[in_family]
    print(f"\nholdout: {protocol.sum()} pairs ({int(p_lab.sum())} kin), "
          f"{int((~protocol).sum())} extra in-family non-kin negatives")  # fmt: skip
    print(f"{'':34s} {'kin vs strangers (592)':26s} kin vs in-family non-kin")
    for name, s in scores.items():
        print(f"{name:34s} {interval(p_lab, s, p_grp):26s} -")
    for name, s in [*member_scores.items(), (f"ensemble ({chosen})", ensemble_prob)]:
        in_fam = interval(f_lab, s[in_family], f_grp) if (~protocol).any() else "-"
        print(f"{name:34s} {interval(p_lab, s[protocol], p_grp):26s} {in_fam}")
    best = max(members, key=lambda m: auc(p_lab, member_scores[m][protocol]))
    gain = paired_gain(p_lab, ensemble_prob[protocol], member_scores[best][protocol], p_grp)
    print(f"\nensemble gain over the best member ({best}), holdout: {gain}")
    if "dlib" in member_scores:
        lgbm = scores["peer: dlib + LightGBM head"]
        gain = paired_gain(p_lab, member_scores["dlib"][protocol], lgbm, p_grp)
        print(f"dlib member over the LightGBM peer baseline: {gain}")
    if len(members) > 1:
        ablation = stack_ablation(work, members, prepared, holdout_all)
        full = ablation[None][protocol]
        print(
            f"\nlogistic stack of all members' OOF logits, holdout: {interval(p_lab, full, p_grp)}"
        )
        for m in members:
            print(f"  what {m} adds: {paired_gain(p_lab, full, ablation[m][protocol], p_grp)}")
    timing = Path("reports/bench_real_fiw_timing.json")
    if timing.is_file():
        print("\nstage times (s) and peak RSS (MiB):", json.loads(timing.read_text()))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--run", type=Path, help="run the real-data profile in this new folder first"
    )
    which.add_argument("--workspace", type=Path, default=REPO, help="a finished workspace")
    args = parser.parse_args()
    if not (REPO / "data/real/fiw/train_relationships.csv").is_file():
        raise SystemExit("the real data is missing: unpack it under data/real/fiw (README)")
    if args.run:
        run_pipeline(args.run.resolve())
    evaluate((args.run or args.workspace).resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())

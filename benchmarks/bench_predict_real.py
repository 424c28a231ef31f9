"""`kinship predict` on real faces: do crops cut by the measured crop spec score as the dataset's?

Takes a finished real-data workspace (`bench_real_fiw.py --run DIR`), adds the artefacts the
predictor reads with this checkout's code — the crop_spec stage's measure, each member's
`crop.json`, the ensemble's model card (the ensemble stage rerun on the same member predictions)
— without retraining anything, then scores the F09 holdout pairs with `kinship.evaluate`:

1. `--no-detect`: the dataset's own crops, as the pipeline scored them; its AUC must equal the
   ensemble's holdout AUC in `reports/ensemble/metrics.json`;
2. with detection: MTCNN finds the face in each FIW crop and the crop spec cuts the window again,
   as for an ordinary photo; close AUCs mean the predictor frames faces as the training images did;
3. the warm latency of one pair with detection (median of 20), every member loaded.

    python benchmarks/bench_predict_real.py --workspace /tmp/fiw-run2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_demo import cpu_description  # noqa: E402


def add_predictor_artefacts(workspace: Path) -> None:
    from kinship.ensemble.stage import run_ensemble
    from kinship.faces import run_crop_spec
    from kinship.params import load_params
    from kinship.train_stage import write_crop_spec

    params = load_params(Path("params.yaml"), [])
    run_crop_spec(params)
    for name in params.all_members:
        write_crop_spec(name, params)
    run_ensemble(params)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--latency-runs", type=int, default=20)
    args = parser.parse_args()
    workspace = args.workspace.resolve()
    os.chdir(workspace)
    import torch  # noqa: F401  (before TensorFlow)

    from kinship.evaluate import evaluate
    from kinship.predictor import Predictor

    start = time.perf_counter()
    add_predictor_artefacts(workspace)
    print(f"crop spec, crop.json and model card: {time.perf_counter() - start:.1f} s")
    spec = json.loads(Path("data/crop_spec.json").read_text())
    params_root = Path(
        json.loads(Path("models/ensemble/ensemble.json").read_text())["trained_on"]["root"]
    )
    holdout = pd.read_parquet("data/prepared/holdout_pairs.parquet")
    if holdout.empty:
        raise SystemExit(f"{workspace}: no holdout pairs (folds.holdout_prefix is null)")
    table = pd.DataFrame(
        {
            "img1": [str(params_root / "train" / t) for t in holdout["img1"]],
            "img2": [str(params_root / "train" / t) for t in holdout["img2"]],
            "label": holdout["label"].astype(int),
            "group": holdout["img1"].str.split("/").str[0],  # the family: bootstrap unit
        }
    )
    start = time.perf_counter()
    predictor = Predictor.load()
    load_seconds = time.perf_counter() - start
    results = {}
    for detect in (False, True):
        start = time.perf_counter()
        summary, scores = evaluate(predictor, table, detect)
        summary["seconds"] = time.perf_counter() - start
        results[detect] = (summary, scores)
    pipeline = json.loads(Path("reports/ensemble/metrics.json").read_text())
    pipeline_auc = pipeline["holdout"]["ensemble"]["auc"]
    photos = [Path(table["img1"].iloc[0]).read_bytes(), Path(table["img2"].iloc[0]).read_bytes()]
    predictor.predict(*photos)  # warm
    latencies = []
    for _ in range(args.latency_runs):
        start = time.perf_counter()
        predictor.predict(*photos)
        latencies.append(time.perf_counter() - start)

    print(f"\nworkspace {workspace}; {cpu_description()}")
    print(
        f"crop spec: MTCNN found a face in {spec['detected']} of {spec['measured_on']} sampled "
        f"training images; square {spec['scale']:.3f} face boxes wide (IQR "
        f"{spec['scale_iqr'][0]:.3f}-{spec['scale_iqr'][1]:.3f}), offset "
        f"({spec['offset_x']:+.3f}, {spec['offset_y']:+.3f}), {spec['output_size']} px"
    )
    print(
        f"members: {', '.join(predictor.names)} (ensemble: {predictor.method}); "
        f"loaded in {load_seconds:.1f} s"
    )
    print(
        f"\n{'holdout pairs':<34}{'scored':>8}{'left out':>10}{'AUC':>8}{'95% CI':>18}"
        f"{'Brier':>8}{'time s':>8}"
    )
    for detect, label in ((False, "--no-detect (dataset crops)"), (True, "detect + crop spec")):
        s = results[detect][0]
        low, high = s["auc_ci95"]
        print(
            f"{label:<34}{s['scored']:>8}{s['left_out']:>10}{s['auc']:>8.4f}"
            f"{f'[{low:.3f}, {high:.3f}]':>18}{s['brier']:>8.4f}{s['seconds']:>8.0f}"
        )
    no_detect = results[False][1]
    detected = results[True][1]
    both = detected["probability"].notna()
    from kinship.metrics import auc

    same_pairs = auc(table["label"][both], no_detect["probability"][both])
    print(
        f"\n--no-detect AUC {results[False][0]['auc']:.4f} vs the pipeline's holdout ensemble AUC "
        f"{pipeline_auc:.4f} (difference {results[False][0]['auc'] - pipeline_auc:+.6f})"
    )
    print(
        f"on the {int(both.sum())} pairs detection kept: --no-detect {same_pairs:.4f}, detect "
        f"{results[True][0]['auc']:.4f} (difference {results[True][0]['auc'] - same_pairs:+.4f})"
    )
    for name in predictor.names:
        print(
            f"  {name:<24} AUC --no-detect {results[False][0]['member_auc'][name]:.4f}, "
            f"detect {results[True][0]['member_auc'][name]:.4f}"
        )
    print(
        f"\none pair with detection, warm, every member loaded: median "
        f"{statistics.median(latencies):.3f} s, max {max(latencies):.3f} s over {len(latencies)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

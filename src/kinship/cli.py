"""`kinship`: the command line behind every DVC stage (dvc.yaml calls `kinship <stage>`).

Each subcommand reads its section of params.yaml, runs one stage and writes its declared outputs.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import resource
import sys
import time
from pathlib import Path

from kinship import paths
from kinship.params import apply_profile, load_params

log = logging.getLogger("kinship")

DESCRIPTION = """\
Kinship verification from face photos (FIW / Kaggle "Recognizing Faces in the Wild").
Run the whole pipeline with `dvc repro`; each stage below is one subcommand, reading its
section of params.yaml (run from the repository root).

stages, in DAG order:
  synthesize  write the embedded default dataset: a synthetic FIW-format folder with real,
              learnable familial signal (data/synthetic/, plus test_labels.csv)
  prepare     index the folder named by data.root: images, people, families, usable
              relationships; one seeded, family-disjoint fold assignment balanced on kin-pair
              count; fixed validation, holdout and test pairs (data/prepared/, reports/prepare/)
  cache       decode every image once at one input size into data/cache/<size>.npy
  embed       dlib's frozen face models once per image: 128-d descriptors (and of the mirror
              image with embed.flip) and 68 landmarks (data/embeddings/, reports/embed/)
  crop_spec   measure, with the MTCNN face detector, how the training images frame a face, so
              that `kinship predict` crops ordinary photos alike (data/crop_spec.json)
  train       train one member on every fold (build once, reset weights per fold), writing
              out-of-fold, holdout and test predictions, checkpoints, metrics and curves;
              `--fold K` trains one fold alone (one per GPU/machine), `--collect` merges them
  ensemble    blend the members' OOF predictions (nested family-fold CV), calibrate, submission.csv
  report      reports/index.html: a self-contained page comparing members and ensemble (tables,
              ROC, correlations, calibration, confusion matrix, data summary, test AUC if labelled)

scaling out (not a stage; `dvc commit train@<member>` records what it wrote):
  fanout      the folds of one or several members as Ray tasks over the GPUs of one or several
              machines, each finished fold sent back into this workspace, then collected
              (docs/fanout.md)

using the trained pipeline (the artefacts behind submission.csv; not stages):
  predict     kinship predict PHOTO1 PHOTO2: are these two people related? Detects and crops the
              faces, prints the ensemble's calibrated probability and each member's
  evaluate    kinship evaluate PAIRS.csv: AUC (bootstrap interval), accuracy and Brier score on
              your own labelled pairs (columns img1, img2, label)
  serve       kinship serve: a web page and a JSON API (POST /api/v1/predict) for the same

profiles (partial params files): `kinship profile profiles/fiw-gpu.yaml` (or fiw-cpu.yaml) switches
params.yaml to the real Kaggle data (data/real/fiw, K=5, F09 holdout); profiles/ci.yaml is the tiny
test pipeline.
"""


COMMANDS: dict[str, str] = {
    "synthesize": "kinship.synth.dataset:run_synthesize",
    "prepare": "kinship.prepare:run_prepare",
    "cache": "kinship.cache:run_cache",
    "embed": "kinship.embed:run_embed",
    "crop_spec": "kinship.faces:run_crop_spec",
    "train": "kinship.train_stage:run_train",
    "ensemble": "kinship.ensemble.stage:run_ensemble",
    "report": "kinship.report.stage:run_report",
}
"""Stage subcommand -> "module:function", imported only when that stage runs: a stage loads its
own modules alone, and dvc.yaml lists exactly those as its deps (tests/test_dvc_deps.py)."""

TOOLS: dict[str, str] = {
    "predict": "kinship.predictor:run_predict",
    "evaluate": "kinship.evaluate:run_evaluate",
    "serve": "kinship.serve.app:run_serve",
}
"""Subcommands that use the trained pipeline (models/) rather than run a stage: they read no
params.yaml, only what the stages wrote."""


RUNNERS: dict[str, str] = {
    "fanout": "kinship.fanout:run_fanout",
}
"""Subcommands that run a stage's work elsewhere (no DVC stage themselves): they read params.yaml
like a stage and also get the global options (`--params`, `--profile`) to hand to the processes
they start."""


def stage_handler(command: str):
    """Import and return the function behind a subcommand."""
    module_name, function = {**COMMANDS, **TOOLS, **RUNNERS}[command].split(":")
    return getattr(importlib.import_module(module_name), function)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kinship",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--params", type=Path, default=paths.PARAMS_FILE, help="params file")
    parser.add_argument(
        "--profile",
        type=Path,
        action="append",
        default=[],
        help="a partial params file merged on top (e.g. profiles/fiw-gpu.yaml); repeatable",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="STAGE")
    sub.add_parser("synthesize", help="write the synthetic FIW-format dataset (embedded default)")
    sub.add_parser("prepare", help="index data.root, assign family folds, sample evaluation pairs")
    cache = sub.add_parser(
        "cache", help="decode every image once at one size (data/cache/<size>.npy)"
    )
    cache.add_argument("--size", type=int, required=True, help="one of params cache.sizes")
    sub.add_parser("embed", help="dlib descriptors and landmarks once per image (data/embeddings/)")
    sub.add_parser(
        "crop_spec", help="measure how the training images frame a face (data/crop_spec.json)"
    )
    train = sub.add_parser("train", help="train one member (all folds, or one with --fold)")
    train.add_argument("--member", dest="name", required=True, help="a key of params.yaml members")
    which = train.add_mutually_exclusive_group()
    which.add_argument("--fold", type=int, help="train this fold only (collect later)")
    which.add_argument(
        "--collect", dest="collect_only", action="store_true", help="merge trained folds' outputs"
    )
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run: keep finished folds and seeds, restart the interrupted "
        "seed from its last epoch (models/<member>/fold<k>.partial/)",
    )
    add_fanout(sub)
    sub.add_parser("ensemble", help="combine the members and write submission.csv")
    sub.add_parser("report", help="write reports/index.html (self-contained, no network)")
    add_tools(sub)
    sub.add_parser("check-params", help="validate params.yaml (with any --profile) and exit")
    profile = sub.add_parser(
        "profile", help="merge a profile into params.yaml in place (comments kept), validated first"
    )
    profile.add_argument("file", type=Path, help="e.g. profiles/fiw-gpu.yaml")
    return parser


def add_fanout(sub) -> None:
    """`kinship fanout` (RUNNERS): the folds of members as Ray tasks over GPUs and machines."""
    fanout = sub.add_parser(
        "fanout",
        help="train the folds of one or several members as Ray tasks over the GPUs of one or "
        "several machines, then collect them (docs/fanout.md)",
    )
    fanout.add_argument(
        "--member", dest="names", action="append", required=True, metavar="MEMBER",
        help="a key of params.yaml members or frozen_members; repeatable",
    )  # fmt: skip
    fanout.add_argument(
        "--folds", type=int, nargs="+", metavar="K", help="these folds only (default: all)"
    )
    fanout.add_argument(
        "--address",
        help="the Ray cluster to use: auto (the one started on this machine by `ray start`), "
        "HOST:PORT of its head, or ray://HOST:10001; default: RAY_ADDRESS when set, else a "
        "Ray started on this machine for this command",
    )
    fanout.add_argument(
        "--gpus-per-fold", type=float, metavar="N",
        help="GPUs of an image member's fold (default: 1 if the cluster has GPUs, else 0)",
    )  # fmt: skip
    fanout.add_argument(
        "--cpus-per-fold", type=int, default=1, metavar="N",
        help="CPUs of a fold, and its process's OMP_NUM_THREADS (default 1)",
    )  # fmt: skip
    fanout.add_argument(
        "--resume", action="store_true",
        help="keep the folds already complete here; the others resume where a node left them",
    )  # fmt: skip


def add_tools(sub) -> None:
    """The subcommands that use the trained pipeline (TOOLS)."""
    predict = sub.add_parser(
        "predict", help="the probability that the people in two photos are related"
    )
    predict.add_argument("photos", nargs=2, type=Path, metavar="PHOTO", help="two image files")
    add_detect_option(predict)
    predict.add_argument(
        "--json", dest="as_json", action="store_true", help="print the result as JSON"
    )
    evaluate = sub.add_parser(
        "evaluate", help="score your own labelled pairs (CSV: img1, img2, label)"
    )
    evaluate.add_argument("pairs", type=Path, metavar="PAIRS.csv")
    add_detect_option(evaluate)
    evaluate.add_argument(
        "--out", type=Path, help="also write each pair's probabilities to this CSV"
    )
    serve = sub.add_parser("serve", help="the web page and JSON API (POST /api/v1/predict)")
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--threads", type=int, default=4, help="request threads")


def add_detect_option(parser) -> None:
    parser.add_argument(
        "--no-detect",
        dest="detect",
        action="store_false",
        help="take the images as already-cropped faces, like the dataset's (no face detection)",
    )


GLOBAL_OPTIONS = ("command", "params", "profile")


def peak_rss() -> str:
    """This process's peak resident memory and its largest finished worker's (Linux: KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return f"peak RSS {own:.0f} MiB (largest worker process {workers:.0f} MiB)"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "profile":
            apply_profile(args.params, args.file)
            log.info("merged %s into %s", args.file, args.params)
            return 0
        if args.command in TOOLS:
            options = {k: v for k, v in vars(args).items() if k not in GLOBAL_OPTIONS}
            return stage_handler(args.command)(**options) or 0
        params = load_params(args.params, args.profile)
        if args.command != "check-params":
            options = {k: v for k, v in vars(args).items() if k not in GLOBAL_OPTIONS}
            if args.command in RUNNERS:
                options["global_options"] = {"params": args.params, "profile": args.profile}
            start = time.perf_counter()
            stage_handler(args.command)(params, **options)
            log.info(
                "%s: done in %.1f s, %s", args.command, time.perf_counter() - start, peak_rss()
            )
    except (ValueError, FileNotFoundError) as err:
        print(f"kinship {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

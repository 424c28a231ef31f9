"""`kinship`: the command line behind every DVC stage (`dvc repro` calls these through stages/).

Each subcommand reads its section of params.yaml, runs one stage and writes its declared outputs.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from kinship import paths
from kinship.params import Params, apply_profile, load_params

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
  train       train one member on every fold (build once, reset weights per fold), writing
              out-of-fold, holdout and test predictions, checkpoints, metrics and curves;
              `--fold K` trains one fold alone (one per GPU/machine), `--collect` merges them
  ensemble    blend the members' OOF predictions (nested family-fold CV), calibrate, submission.csv
  report      reports/index.html: a self-contained page comparing members and ensemble (tables,
              ROC, correlations, calibration, confusion matrix, data summary, test AUC if labelled)

profiles (partial params files): `kinship profile profiles/fiw.yaml` switches params.yaml to the
real Kaggle data (data/real/fiw, K=5, F09 holdout); profiles/ci.yaml is the tiny test pipeline.
"""


def run_synthesize(params: Params) -> None:
    from kinship.synth import generate

    summary = generate(paths.SYNTHETIC_DIR, params.synth_config(), workers=os.cpu_count() or 1)
    log.info("synthesize: %s", summary)


def run_prepare(params: Params) -> None:
    from kinship.prepare import prepare

    prepare(params.data.root_path, params.folds, params.pairs)


def run_cache(params: Params, size: int) -> None:
    import pandas as pd

    from kinship.cache import build_cache
    from kinship.io import write_json

    if size not in params.cache.sizes:
        raise ValueError(
            f"cache size {size} is not listed in params.yaml cache.sizes {params.cache.sizes}"
        )
    if not paths.IMAGES_TABLE.is_file():
        raise FileNotFoundError(f"{paths.IMAGES_TABLE}: run the prepare stage first")
    images = pd.read_parquet(paths.IMAGES_TABLE)
    start = time.perf_counter()
    report = build_cache(
        images, params.data.root_path, size, paths.cache_file(size), params.cache.max_bad_fraction
    )
    write_json(paths.CACHE_REPORTS_DIR / f"{size}.json", report)
    seconds = time.perf_counter() - start
    log.info(
        "cache@%d: %d images (%d unreadable) in %.1f s, %.0f img/s",
        size,
        report["images"],
        report["bad_images"],
        seconds,
        report["images"] / seconds,
    )


def run_embed(params: Params) -> None:
    import pandas as pd

    from kinship.embed import embed_images, write_embeddings
    from kinship.io import write_json

    if not paths.IMAGES_TABLE.is_file():
        raise FileNotFoundError(f"{paths.IMAGES_TABLE}: run the prepare stage first")
    images = pd.read_parquet(paths.IMAGES_TABLE)
    arrays, report = embed_images(
        images, params.data.root_path, params.embed, params.cache.max_bad_fraction
    )
    write_embeddings(arrays)
    write_json(paths.EMBED_REPORT, report)


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
        help="a partial params file merged on top (e.g. profiles/fiw.yaml); repeatable",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="STAGE")
    sub.add_parser("synthesize", help="write the synthetic FIW-format dataset (embedded default)")
    sub.add_parser("prepare", help="index data.root, assign family folds, sample evaluation pairs")
    cache = sub.add_parser(
        "cache", help="decode every image once at one size (data/cache/<size>.npy)"
    )
    cache.add_argument("--size", type=int, required=True, help="one of params cache.sizes")
    sub.add_parser("embed", help="dlib descriptors and landmarks once per image (data/embeddings/)")
    train = sub.add_parser("train", help="train one member (all folds, or one with --fold)")
    train.add_argument("--member", required=True, help="a key of params.yaml members")
    which = train.add_mutually_exclusive_group()
    which.add_argument("--fold", type=int, help="train this fold only (collect later)")
    which.add_argument("--collect", action="store_true", help="merge trained folds' outputs")
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run: keep finished folds and seeds, restart the interrupted "
        "seed from its last epoch (models/<member>/fold<k>.partial/)",
    )
    sub.add_parser("ensemble", help="combine the members and write submission.csv")
    sub.add_parser("report", help="write reports/index.html (self-contained, no network)")
    sub.add_parser("check-params", help="validate params.yaml (with any --profile) and exit")
    profile = sub.add_parser(
        "profile", help="merge a profile into params.yaml in place (comments kept), validated first"
    )
    profile.add_argument("file", type=Path, help="e.g. profiles/fiw.yaml")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "profile":
            apply_profile(args.params, args.file)
            log.info("merged %s into %s", args.file, args.params)
            return 0
        params = load_params(args.params, args.profile)
        if args.command == "synthesize":
            run_synthesize(params)
        elif args.command == "prepare":
            run_prepare(params)
        elif args.command == "cache":
            run_cache(params, args.size)
        elif args.command == "embed":
            run_embed(params)
        elif args.command == "train":
            from kinship.train_stage import run_train

            run_train(
                params, args.member, fold=args.fold, collect_only=args.collect, resume=args.resume
            )
        elif args.command == "ensemble":
            from kinship.ensemble.stage import run_ensemble

            run_ensemble(params)
        elif args.command == "report":
            from kinship.report.stage import run_report

            run_report(params)
    except (ValueError, FileNotFoundError) as err:
        print(f"kinship {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

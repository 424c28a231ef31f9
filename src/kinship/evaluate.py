"""`kinship evaluate PAIRS.csv`: the trained pipeline scored on a user's own labelled pairs.

The CSV has one row per pair: `img1`, `img2` (image paths, relative to the CSV's folder unless
absolute) and `label` (1 related, 0 not); an optional `group` column (e.g. a family id) makes the
bootstrap resample groups rather than pairs, as the pipeline's reports resample families. Each
image is read, detected and cropped once however many rows name it. Pairs with a photo that
cannot be used (no face, corrupt) are listed and left out of the scores, as the pipeline leaves
out pairs with unreadable images.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from kinship.ensemble.calibration import brier
from kinship.io import atomic_file
from kinship.metrics import accuracy, auc, bootstrap_auc
from kinship.photos import PhotoError

COLUMNS = ("img1", "img2", "label")


def read_pairs(path: Path) -> pd.DataFrame:
    """The pairs table, checked: columns, labels 0/1, every image file present (errors name the
    file, row and column; rows are numbered as in a spreadsheet, the header being row 1)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such pairs file")
    try:
        table = pd.read_csv(path, dtype={"img1": str, "img2": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a CSV table ({err})") from None
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(
            f"{path}: missing column(s) {', '.join(missing)}; expected img1, img2, label "
            f"(and optionally group), got {', '.join(map(str, table.columns))}"
        )
    if table.empty:
        raise ValueError(f"{path}: no pairs")
    labels = pd.to_numeric(table["label"], errors="coerce")
    bad = ~labels.isin([0, 1])
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{path} row {row + 2}: label {table['label'].iloc[row]!r}; expected 1 (related) "
            "or 0 (not related)"
        )
    table["label"] = labels.astype(int)
    for column in ("img1", "img2"):
        resolved = []
        for row, value in enumerate(table[column]):
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{path} row {row + 2}: {column} is empty; expected an image path")
            image = Path(value).expanduser()
            image = image if image.is_absolute() else path.parent / image
            if not image.is_file():
                raise FileNotFoundError(f"{path} row {row + 2}: {column} {image}: no such file")
            resolved.append(str(image))
        table[column] = resolved
    return table


def evaluate(
    predictor, table: pd.DataFrame, detect: bool, seed: int = 0
) -> tuple[dict, pd.DataFrame]:
    """Score every usable pair; return the summary and the per-pair table (probabilities, NaN
    where a photo could not be used, with the reason)."""
    images = sorted(set(table["img1"]) | set(table["img2"]))
    photos, unusable = {}, {}
    for image in images:
        try:
            photos[image] = predictor.photos([image], detect)[0]
        except PhotoError as err:
            unusable[image] = err.reason
    usable = table["img1"].isin(photos) & table["img2"].isin(photos)
    scored = table[usable]
    index = {image: i for i, image in enumerate(photos)}
    out = table.copy()
    out["reason"] = [
        "; ".join(f"{r}: {unusable[r]}" for r in (a, b) if r in unusable)
        for a, b in zip(table["img1"], table["img2"], strict=True)
    ]
    for name in ["probability", *predictor.names]:
        out[name] = np.nan
    summary = {
        "pairs": int(len(table)),
        "scored": int(len(scored)),
        "left_out": int((~usable).sum()),
        "ensemble_method": predictor.method,
    }
    if scored.empty:
        raise ValueError("no pair could be scored: " + "; ".join(sorted(set(out["reason"]))[:3]))
    probs, members = predictor.score(
        list(photos.values()), scored["img1"].map(index), scored["img2"].map(index)
    )
    out.loc[usable, "probability"] = probs
    for name, values in members.items():
        out.loc[usable, name] = values
    labels = scored["label"].to_numpy()
    if len(np.unique(labels)) < 2:
        raise ValueError(
            f"the {len(scored)} scored pairs are all labelled {labels[0]}: AUC needs both related "
            "and unrelated pairs"
        )
    groups = scored["group"].to_numpy() if "group" in scored else np.arange(len(scored))
    threshold = predictor.card["threshold"]["probability"]
    low, high = bootstrap_auc(labels, probs, groups, seed)
    summary.update(
        positives=int(labels.sum()),
        auc=round(auc(labels, probs), 6),
        auc_ci95=[round(low, 6), round(high, 6)],
        bootstrap_unit="group" if "group" in scored else "pair",
        threshold=threshold,
        accuracy_at_threshold=round(accuracy(labels, probs, threshold), 6),
        brier=round(brier(labels, probs), 6),
        member_auc={n: round(auc(labels, v), 6) for n, v in members.items()},
    )
    return summary, out


def run_evaluate(pairs: Path, detect: bool = True, out: Path | None = None) -> int:
    """`kinship evaluate PAIRS.csv [--no-detect] [--out scores.csv]`."""
    from kinship.predictor import Predictor

    table = read_pairs(pairs)  # every check before the models load
    predictor = Predictor.load()
    summary, scores = evaluate(predictor, table, detect)
    for reason in sorted(set(scores["reason"]) - {""}):
        print(f"left out: {reason}", file=sys.stderr)
    if out is not None:
        with atomic_file(Path(out)) as fh:
            scores.to_csv(fh, index=False, float_format="%.6f")
    low, high = summary["auc_ci95"]
    print(f"pairs: {summary['scored']} scored ({summary['positives']} related), "
          f"{summary['left_out']} left out")  # fmt: skip
    print(f"AUC {summary['auc']:.4f}  [{low:.4f}, {high:.4f}] (95% bootstrap over "
          f"{summary['bootstrap_unit']}s)")  # fmt: skip
    print(f"accuracy at the ensemble's threshold {summary['threshold']:.4f}: "
          f"{summary['accuracy_at_threshold']:.4f}")  # fmt: skip
    print(f"Brier score: {summary['brier']:.4f}")
    for name, value in summary["member_auc"].items():
        print(f"  {name:<24} AUC {value:.4f}")
    if predictor.info()["dataset"]["synthetic"]:
        print("warning: these models were trained on the synthetic demo data", file=sys.stderr)
    return 0

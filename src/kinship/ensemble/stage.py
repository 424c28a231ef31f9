"""The ensemble stage: read the members' predictions, run the nested cross-validation, and write
the submission, the test-time ensemble and the reports (`kinship ensemble`)."""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pandas as pd

from kinship import paths
from kinship.ensemble.inputs import METHOD_PREFIX, EnsembleInputs, load_inputs
from kinship.ensemble.methods import make_blender, user_weights
from kinship.ensemble.nested import NestedResult, Recipe, Rows, nested, recalibrate
from kinship.ensemble.params import EnsembleParams
from kinship.ensemble.scores import split_report
from kinship.ensemble.submission import build_submission, read_sample, write_submission
from kinship.io import atomic_dir, atomic_file, write_json
from kinship.metrics import auc, best_threshold, by_kind
from kinship.params import Params

log = logging.getLogger(__name__)

SUBMISSION_FILE = paths.SUBMISSION_FILE
MODELS_DIR = paths.ENSEMBLE_MODELS_DIR
REPORTS_DIR = paths.ENSEMBLE_REPORTS_DIR
TABLES = ("oof", "holdout", "test")


def run_ensemble(params: Params) -> dict:
    """`kinship ensemble`: every output is complete, or the stage fails before writing it.

    One BLAS/OpenMP thread: the fits are tiny, and more threads only contend (measured: a
    logistic fit on 4,000 pairs took 80 ms with the default threads on 2 shared cores, 10 ms
    with one)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return _run(params)


def _run(params: Params) -> dict:
    ep = params.ensemble
    names = list(ep.members) if ep.members is not None else params.all_members
    # 1. inputs, checked: member tables against the prepared pairs, the sample submission
    inputs = load_inputs(names)
    sample = read_sample(params.data.root_path)
    member_auc = check_min_auc(inputs, ep)
    # 2. nested CV for honest OOF numbers; the test-time ensemble refit on all OOF rows
    fixed = None if ep.method == "auto" else ep.method
    recipe = Recipe(
        lambda m: make_blender(m, ep, names),
        list(ep.methods),
        fixed,
        ep.calibration,
        ep.auto_rule,
        ep.seed,
        ep.bootstrap,
    )
    result = nested(recipe, Rows(inputs.oof, inputs.labels, inputs.folds, inputs.groups))
    holdout_probs = calibrate_on_holdout(inputs, result, ep)
    # 3. the submission, checked before anything is written
    test_probs = result.final.predict_proba(inputs.test)
    submission = build_submission(sample, inputs.test_pairs["img_pair"], test_probs)
    # 4. numbers and tables, then the writes
    tables = score_tables(inputs, result, holdout_probs)
    best = max(names, key=lambda n: member_auc[n])
    metrics = ensemble_metrics(inputs, result, ep, tables, best)
    write_models(result, ep, names, model_card(params, inputs, result, metrics, member_auc))
    for name in TABLES:
        with atomic_file(REPORTS_DIR / f"{name}.parquet", "wb") as fh:
            tables[name].to_parquet(fh, index=False)
    write_json(REPORTS_DIR / "metrics.json", metrics)
    write_submission(submission, sample, SUBMISSION_FILE)
    oof = metrics["oof"]
    log.info(
        "ensemble: %s, nested OOF auc %.4f %s; gain over %s %+.4f %s; brier %.4f -> %.4f",
        result.final.chosen,
        oof["ensemble"]["auc"],
        oof["ensemble"]["auc_ci95"],
        best,
        oof["gain_over_best_member"]["auc_gain"],
        oof["gain_over_best_member"]["ci95"],
        oof["brier"]["raw"],
        oof["brier"]["calibrated"],
    )
    return metrics


def check_min_auc(inputs: EnsembleInputs, ep: EnsembleParams) -> dict[str, float]:
    """Each member's OOF AUC; an error naming the best one when all are below `min_auc`."""
    member_auc = {n: auc(inputs.labels, inputs.oof[:, j]) for j, n in enumerate(inputs.members)}
    for name, value in member_auc.items():
        log.info("ensemble: member %s OOF auc %.4f", name, value)
    best = max(member_auc, key=lambda n: np.nan_to_num(member_auc[n], nan=-1.0))
    if not member_auc[best] >= ep.min_auc:
        raise ValueError(
            f"ensemble.min_auc={ep.min_auc}: every member's OOF AUC is below it; the best is "
            f"{best} with {member_auc[best]:.4f} (lower ensemble.min_auc or improve the members)"
        )
    return member_auc


def calibrate_on_holdout(
    inputs: EnsembleInputs, result: NestedResult, ep: EnsembleParams
) -> np.ndarray | None:
    """With a holdout, the test-time calibrator is refitted on it (its member scores are means
    over the fold models, as the test's are; see `recalibrate`) and the holdout's own
    probabilities are cross-fitted on family halves. None without a holdout."""
    if not len(inputs.holdout_pairs):
        return None
    holdout = inputs.holdout_pairs
    rows = Rows(
        inputs.holdout,
        holdout["label"].to_numpy(dtype=np.int64),
        holdout["fold"].to_numpy(dtype=np.int64),
        holdout["family"].to_numpy(),
    )
    try:
        return recalibrate(result.final, ep.calibration, rows)
    except ValueError as err:
        raise ValueError(f"ensemble calibration on the holdout: {err}") from None


def score_tables(
    inputs: EnsembleInputs, result: NestedResult, holdout_probs: np.ndarray | None = None
) -> dict[str, pd.DataFrame]:
    """Per pair: members, every method (out of fold on OOF rows), the chosen raw score
    (`ensemble_selected`), the score the ranking numbers use (`ensemble_ranked`, see
    `nested.one_scale`) and the calibrated probability (`ensemble_prob`: on the holdout,
    cross-fitted); the same columns in all three tables, an empty holdout included."""
    oof = {
        **result.method_scores,
        "selected": result.selected,
        "ranked": result.ranked,
        "prob": result.calibrated,
    }
    holdout = _predict(result, inputs.holdout)
    if holdout_probs is not None:
        holdout["prob"] = holdout_probs
    return {
        "oof": _table(inputs.pairs, inputs.members, inputs.oof, oof),
        "holdout": _table(inputs.holdout_pairs, inputs.members, inputs.holdout, holdout),
        "test": _table(
            inputs.test_pairs, inputs.members, inputs.test, _predict(result, inputs.test)
        ),
    }


def _predict(result: NestedResult, X: np.ndarray) -> dict[str, np.ndarray]:
    """The test-time ensemble's scores: every method, the chosen one and its probability."""
    final = result.final
    if not len(X):
        return {name: np.empty(0) for name in [*final.blenders, "selected", "ranked", "prob"]}
    return {
        **final.predict_all(X),
        "selected": final.predict_raw(X),
        "ranked": final.predict_raw(X),  # one model: no scales to reconcile
        "prob": final.predict_proba(X),
    }


def _table(rows: pd.DataFrame, members, X, ensemble: dict[str, np.ndarray]) -> pd.DataFrame:
    columns = {name: X[:, j] for j, name in enumerate(members)}
    columns.update({f"{METHOD_PREFIX}{name}": scores for name, scores in ensemble.items()})
    scores = pd.DataFrame(columns, index=rows.index, columns=list(columns), dtype=float)
    return pd.concat([rows, scores], axis=1)


def ensemble_metrics(inputs, result: NestedResult, ep: EnsembleParams, tables, best) -> dict:
    final = result.final
    metrics = {
        "members": inputs.members,
        "method": ep.method,
        "auto_rule": ep.auto_rule,
        "chosen_method": final.chosen,
        "nested_choices": {f"fold{k}": m for k, m in result.choices.items()},
        "nested_members": {f"fold{k}": kept for k, kept in result.kept.items()},
        "test_time_members": final.blenders[final.chosen].kept_names,
        "min_auc": ep.min_auc,
        "calibration": ep.calibration,
        "calibrated_on": "holdout" if len(inputs.holdout_pairs) else "oof",
        "weights": weight_sets(result, ep, inputs.members),
        "bootstrap": {"unit": "family", "resamples": ep.bootstrap, "seed": ep.seed},
        "unscorable_pairs": inputs.unscorable,
    }
    for split in ("oof", "holdout"):
        table = tables[split]
        if len(table):
            metrics[split] = split_report(
                table["label"].to_numpy(dtype=np.int64),
                table["family"].to_numpy(),
                table["fold"].to_numpy() if split == "oof" else None,
                {n: table[n].to_numpy() for n in inputs.members},
                {m: table[f"{METHOD_PREFIX}{m}"].to_numpy() for m in ep.methods},
                table[f"{METHOD_PREFIX}selected"].to_numpy(),
                table[f"{METHOD_PREFIX}ranked"].to_numpy(),
                table[f"{METHOD_PREFIX}prob"].to_numpy(),
                best,
                ep.seed,
                ep.bootstrap,
            )
            scored = {n: table[n] for n in inputs.members}
            scored["ensemble"] = table[f"{METHOD_PREFIX}prob"]
            metrics[split]["auc_by_kind"] = {
                name: by_kind(table["label"], table["kind"], scores)
                for name, scores in scored.items()
            }
    return metrics


def weight_sets(result: NestedResult, ep: EnsembleParams, names: list[str]) -> dict:
    """The users' weights (as used: unlisted 0, {} equal) beside the searched ones, never merged."""
    weights = {"user": dict(zip(names, map(float, user_weights(ep, names)), strict=True))}
    search = result.final.blenders.get("weight_search")
    if search is not None:
        found = search.describe()["weights"]
        weights["searched"] = {n: found.get(n, 0.0) for n in names}
    return weights


def model_card(params: Params, inputs: EnsembleInputs, result, metrics: dict, member_auc) -> dict:
    """What `kinship predict` and `kinship serve` tell a user about the models: the data they were
    trained on, their scores, and the decision threshold (the calibrated probability that is most
    accurate on the OOF pairs)."""
    images = pd.read_parquet(paths.IMAGES_TABLE, columns=["family", "split"])
    train = images[images["split"] == "train"]
    root = params.data.root_path
    threshold, accuracy = best_threshold(inputs.labels, result.calibrated)
    holdout = metrics.get("holdout", {})
    members = {}
    for j, name in enumerate(inputs.members):
        h_auc = None
        if len(inputs.holdout_pairs):
            h_auc = round(auc(inputs.holdout_pairs["label"].to_numpy(), inputs.holdout[:, j]), 6)
        members[name] = {
            "model": params.member_info(name)["model"],
            "oof_auc": round(member_auc[name], 6),
            "holdout_auc": h_auc,
        }
    return {
        "trained_on": {
            "root": str(root),
            "synthetic": root.resolve() == paths.SYNTHETIC_DIR.resolve(),
            "families": int(train["family"].nunique()),
            "images": int(len(train)),
        },
        "scores": {
            "oof_auc": metrics["oof"]["ensemble"]["auc"],
            "oof_auc_ci95": metrics["oof"]["ensemble"]["auc_ci95"],
            "holdout_auc": holdout.get("ensemble", {}).get("auc"),
            "members": members,
        },
        "threshold": {
            "probability": round(float(threshold), 6),
            "chosen_on": "oof",
            "oof_accuracy": round(float(accuracy), 6),
        },
    }


def write_models(result: NestedResult, ep: EnsembleParams, names: list[str], card: dict) -> None:
    """The test-time ensemble: `calibrator.predict(blender.predict(X))`, X = pairs × members;
    with the model card (`model_card`) in ensemble.json."""
    final = result.final
    with atomic_dir(MODELS_DIR) as tmp:
        model = {
            "members": names,
            "method": final.chosen,
            "blender": final.blenders[final.chosen],
            "calibrator": final.calibrator,
        }
        (tmp / "ensemble.pkl").write_bytes(pickle.dumps(model, protocol=5))
        write_json(
            tmp / "ensemble.json",
            {
                "members": names,
                "chosen_method": final.chosen,
                "oof_auc_by_method": {m: round(v, 6) for m, v in final.cv_auc.items()},
                "fitted": {m: b.describe() for m, b in final.blenders.items()},
                "calibrator": final.calibrator.describe(),
                "weights": weight_sets(result, ep, names),
                **card,
            },
        )

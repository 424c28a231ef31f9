"""A fold's folder under `models/<member>/`: where it trains, when it counts as complete, and
what an interrupted run leaves for `--resume`.

A fold trains in `fold<k>.partial/` (its `progress/` holding each finished seed's predictions and
the running seed's resumable state) and becomes `fold<k>/` by a rename once `complete.json` (the
member, the fold, the member's params) is written, last. `collect` takes only complete folds.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np

from kinship import paths
from kinship.io import atomic_file, replace_dir, write_json
from kinship.params import Params

log = logging.getLogger(__name__)


def fold_dir(name: str, fold: int) -> Path:
    """A complete fold: one checkpoint per seed, its predictions, timing and `complete.json`."""
    return paths.MODELS_DIR / name / f"fold{fold}"


PROGRESS_DIR = "progress"
"""Inside `fold<k>.partial/`: each finished seed's predictions and timing, and the running seed's
resumable training state (`seed<s>.train/`, see `kinship.training.FitCheckpoints`)."""
COMPLETE_FILE = "complete.json"
"""Written last into a fold's folder: `collect` takes only folds that have it."""


def partial_dir(name: str, fold: int) -> Path:
    """Where a fold trains until it is complete (left behind, for `--resume`, when killed)."""
    return paths.MODELS_DIR / name / f"fold{fold}.partial"


def start_fold(name: str, fold: int, resume: bool) -> Path:
    """The fold's working folder: emptied for a fresh run, kept with `resume`."""
    work = partial_dir(name, fold)
    if resume and (work / COMPLETE_FILE).is_file():  # interrupted while being put in place
        return work
    if not resume:
        shutil.rmtree(work, ignore_errors=True)
    elif not work.is_dir():
        log.info("%s fold %d: nothing to resume (%s is absent): from scratch", name, fold, work)
    (work / PROGRESS_DIR).mkdir(parents=True, exist_ok=True)
    return work


def finish_fold(work: Path, name: str, fold: int, member_params: dict) -> None:
    """Write the completion marker last, then put the finished folder in place of `fold<k>/`."""
    write_json(
        work / COMPLETE_FILE, {"member": name, "fold": fold, "params": _plain(member_params)}
    )
    replace_dir(work, fold_dir(name, fold))


def _plain(value: dict) -> dict:
    """`value` as JSON reads it back (tuples become lists), for comparing params."""
    return json.loads(json.dumps(value))


def save_seed(progress: Path, seed: int, probs: dict, entry: dict) -> None:
    """Keep a finished seed's predictions and timing (its JSON last), drop its training state."""
    with atomic_file(progress / f"seed{seed}.npz", "wb") as fh:
        np.savez(fh, **{key.removesuffix(".parquet"): p for key, p in probs.items()})
    write_json(progress / f"seed{seed}.json", entry)  # last: the seed is done
    shutil.rmtree(progress / f"seed{seed}.train", ignore_errors=True)


def seed_done(progress: Path, seed: int) -> tuple[dict, dict] | None:
    """A seed finished by an interrupted run: its predictions and timing; None otherwise."""
    entry_file = progress / f"seed{seed}.json"
    if not entry_file.is_file():
        return None
    with np.load(progress / f"seed{seed}.npz") as saved:
        probs = {f"{key}.parquet": saved[key] for key in saved.files}
    return probs, json.loads(entry_file.read_text())


def add_seed(sums: dict, timing: dict, probs: dict, entry: dict) -> None:
    """Add a seed's predictions to the fold's sums and its timing to the fold's."""
    for key in sums:
        sums[key] += probs[key]
    timing["seeds"].append(entry)


def check_fold_complete(name: str, fold: int, params: Params) -> None:
    """Raise unless `fold<k>/` holds a finished fold of this member trained with its params."""
    marker = fold_dir(name, fold) / COMPLETE_FILE
    if not marker.is_file():
        interrupted = partial_dir(name, fold).is_dir()
        raise FileNotFoundError(
            f"{marker}: fold {fold} of {name} has not been trained"
            + (
                f" (an interrupted run left {partial_dir(name, fold)}: run `kinship train "
                f"--member {name} --fold {fold} --resume`)"
                if interrupted
                else f" (run `kinship train --member {name} --fold {fold}`)"
            )
        )
    saved = json.loads(marker.read_text()).get("params", {})
    section = "members" if name in params.members else "frozen_members"
    ours = _plain(asdict(getattr(params, section)[name]))
    changed = sorted(k for k in ours.keys() | saved.keys() if ours.get(k) != saved.get(k))
    if changed:
        raise ValueError(
            f"{marker}: fold {fold} of {name} was trained with other params ({', '.join(changed)} "
            f"differ from params.yaml {section}.{name}); retrain it"
        )

"""`kinship fanout`: the folds of one or several members fanned out over the GPUs of one machine
and over several machines, with Ray (docs/fanout.md).

1. Each (member, fold) is one Ray task asking for `--gpus-per-fold` GPUs (Ray sets
   CUDA_VISIBLE_DEVICES for it) and `--cpus-per-fold` CPUs. It runs the one-fold path,
   `kinship train --member M --fold K`, as its own process in the node's checkout (TensorFlow
   and torch never share a process), with OMP_NUM_THREADS set to `--cpus-per-fold`.
2. Before training, the task checks that the node's workspace holds what the driver's holds
   (code, params, prepared tables, the member's cache or embeddings, its weights): a node on
   another commit or with other data is refused by name, not trained on.
3. The finished fold (`models/<member>/fold<k>/` and its curves) comes back to the driver as
   tar bytes and is put in place atomically: no shared filesystem is needed, and a fold is in
   the driver's workspace whole or not at all.
4. Once every fold of a member is complete there, the driver collects it (as
   `kinship train --member M --collect`). A failed fold fails the command, naming the member,
   the fold, the node and the end of the fold's log; the folds that came back stay in place
   (complete folds: `--resume` keeps them).

`ray` is imported here only: no stage loads this module.
"""

from __future__ import annotations

import collections
import contextlib
import io
import logging
import os
import platform
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from kinship import paths
from kinship.fanout_workspace import differences, global_argv, node_params, workspace_digests
from kinship.fold_files import check_fold_complete, fold_dir
from kinship.io import atomic_dir
from kinship.params import Params
from kinship.train_stage import check_member, run_train

log = logging.getLogger(__name__)

WORKSPACE_ENV = "KINSHIP_WORKSPACE"
"""In the environment of a node's `ray start`: the node's checkout, when it lies at another path
than the driver's (by default a fold runs at the driver's path)."""
LOG_TAIL_LINES = 30
"""How many of a failed fold's last log lines its error shows."""


class FoldsFailed(ValueError):
    """Some folds failed: the message names each (member, fold, node) with its log's end."""


@dataclass(frozen=True)
class FoldJob:
    """One fold of one member, and what its Ray task asks for."""

    member: str
    fold: int
    num_gpus: float
    num_cpus: int

    def __str__(self) -> str:
        return f"{self.member} fold {self.fold}"


def run_fanout(
    params: Params,
    names: list[str],
    folds: list[int] | None = None,
    address: str | None = None,
    gpus_per_fold: float | None = None,
    cpus_per_fold: int = 1,
    resume: bool = False,
    global_options: dict | None = None,
) -> None:
    """`kinship fanout`: train the folds of `names` as Ray tasks, put each in place, collect
    each member whose folds are all complete. `global_options` ({"params": file, "profile":
    [files]}, as `kinship` was given them) go to every fold process, read in its node's checkout."""
    names = list(dict.fromkeys(names))
    for name in names:
        check_member(params, name)
    folds = checked_folds(folds)
    if cpus_per_fold < 1:
        raise ValueError(f"--cpus-per-fold {cpus_per_fold}: must be at least 1")
    if gpus_per_fold is not None and gpus_per_fold < 0:
        raise ValueError(f"--gpus-per-fold {gpus_per_fold:g}: must be 0 or more")
    options = global_options or {"params": paths.PARAMS_FILE, "profile": []}
    todo = [(m, k) for m in names for k in folds if not (resume and is_complete(m, k, params))]
    if resume and len(todo) < len(names) * len(folds):
        log.info("fanout: %d complete folds kept (--resume)", len(names) * len(folds) - len(todo))
    failures = []
    if todo:
        import ray

        ray.init(address=address, log_to_driver=True)
        try:
            gpus = gpus_per_fold if gpus_per_fold is not None else default_gpus(ray)
            jobs = [
                FoldJob(m, k, 0 if m in params.frozen_members else gpus, cpus_per_fold)
                for m, k in todo
            ]
            check_feasible(ray, jobs)
            failures = run_jobs(ray, jobs, params, options, resume)
        finally:
            ray.shutdown()
    for name in names:
        if name not in {f.member for f in failures}:
            collect_if_complete(name, params)
    if failures:
        raise FoldsFailed(
            f"{len(failures)} of {len(todo)} folds failed (the others are in place; rerun with "
            "--resume to train only what is missing):\n\n"
            + "\n\n".join(f.message for f in failures)
        )


def checked_folds(folds: list[int] | None) -> list[int]:
    """The requested folds (all of prepare's by default), each one of prepare's."""
    if not paths.PAIRS_TABLE.is_file():
        raise FileNotFoundError(f"{paths.PAIRS_TABLE}: missing (run `dvc repro prepare`)")
    valid = sorted({int(k) for k in pd.read_parquet(paths.PAIRS_TABLE, columns=["fold"])["fold"]})
    if folds is None:
        return valid
    unknown = [k for k in folds if k not in valid]
    if unknown:
        raise ValueError(f"--folds {' '.join(map(str, unknown))}: folds are {valid}")
    return sorted(set(folds))


def is_complete(name: str, fold: int, params: Params) -> bool:
    """Whether this workspace holds the fold complete, trained with these params."""
    try:
        check_fold_complete(name, fold, params)
    except (FileNotFoundError, ValueError):
        return False
    return True


def default_gpus(ray) -> float:
    """One GPU per fold when the cluster has GPUs, none otherwise."""
    total = ray.cluster_resources().get("GPU", 0)
    log.info("fanout: %g GPUs in the Ray cluster: %d per fold", total, 1 if total else 0)
    return 1 if total else 0


def check_feasible(ray, jobs: list[FoldJob]) -> None:
    """A ValueError when no node has the CPUs and GPUs a fold asks for (Ray would wait for one
    forever)."""
    nodes = [n["Resources"] for n in ray.nodes() if n["Alive"]]
    for cpus, gpus in sorted({(j.num_cpus, j.num_gpus) for j in jobs}):
        if not any(r.get("CPU", 0) >= cpus and r.get("GPU", 0) >= gpus for r in nodes):
            have = [(r.get("CPU", 0), r.get("GPU", 0)) for r in nodes]
            raise ValueError(
                f"no node of the Ray cluster has {cpus} CPUs and {gpus:g} GPUs for a fold (its "
                f"nodes' CPUs, GPUs: {have}); lower --cpus-per-fold or --gpus-per-fold"
            )


@dataclass(frozen=True)
class Failure:
    member: str
    message: str


def run_jobs(ray, jobs: list[FoldJob], params: Params, options: dict, resume: bool):
    """Submit every fold and put each in place as it returns; the failed folds."""
    remote = ray.remote(train_fold_task)
    root = str(Path.cwd().resolve())
    expected = {m: workspace_digests(m, params) for m in dict.fromkeys(j.member for j in jobs)}
    pending = {}
    for job in jobs:
        ref = remote.options(
            num_cpus=job.num_cpus, num_gpus=job.num_gpus, scheduling_strategy="SPREAD",
            name=f"kinship {job.member} fold {job.fold}",
        ).remote(job, root, options, expected[job.member], resume)  # fmt: skip
        pending[ref] = job
    log.info("fanout: %d folds submitted: %s", len(jobs), ", ".join(map(str, jobs)))
    failures = []
    try:
        while pending:
            [ref], _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as err:
                result = {"error": f"{job}: the Ray task failed: {err}"}
            if "error" in result:
                log.error("%s", result["error"])
                failures.append(Failure(job.member, result["error"]))
            else:
                put_in_place(job, result["archives"])
                log.info("%s: in place (trained on %s)", job, result["node"])
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref)  # a KeyboardInterrupt in the task, which stops its fold process
        raise
    return failures


def collect_if_complete(name: str, params: Params) -> None:
    """Collect a member whose folds are all complete here; say what is missing otherwise."""
    missing = [k for k in checked_folds(None) if not is_complete(name, k, params)]
    if missing:
        log.warning(
            "%s: folds %s are not complete here: not collected (train them, then "
            "`kinship train --member %s --collect`)", name, missing, name,
        )  # fmt: skip
        return
    run_train(params, name, collect_only=True)


def fold_outputs(name: str, fold: int) -> list[Path]:
    """What one fold writes, in the order it is put in place: its curves, then its folder
    (whose completion marker makes it count)."""
    return [paths.curves_dir(name, fold), fold_dir(name, fold)]


def put_in_place(job: FoldJob, archives: dict[str, bytes]) -> None:
    """Unpack each returned folder beside its target, then rename it into place."""
    allowed = {p.as_posix() for p in fold_outputs(job.member, job.fold)}
    for rel, data in archives.items():
        if rel not in allowed:
            raise ValueError(f"{job}: a node returned {rel!r}; expected one of {sorted(allowed)}")
        with atomic_dir(Path(rel)) as tmp, tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(tmp, filter="data")


def pack(folder: Path) -> bytes:
    """A folder's files as an uncompressed tar (names relative to the folder)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(folder.rglob("*")):
            tar.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)
    return buffer.getvalue()


# --- on the node ------------------------------------------------------------------------------


def train_fold_task(
    job: FoldJob, driver_root: str, options: dict, expected: dict, resume: bool
) -> dict:
    """A Ray task: check the node's workspace, train one fold in its own process, return the
    fold's folders as tar bytes ({"node", "archives"}) or {"error": message}."""
    import ray

    root = Path(os.environ.get(WORKSPACE_ENV) or driver_root)
    node = f"{platform.node()} {ray.util.get_node_ip_address()} ({root})"
    if not root.is_dir():
        return {"error": f"{job} on {node}: no such folder (set {WORKSPACE_ENV} for its Ray)"}
    with contextlib.chdir(root):
        try:
            differ = differences(expected, workspace_digests(job.member, node_params(options)))
        except (ValueError, FileNotFoundError) as err:
            return {"error": f"{job} on {node}: the node's params: {err}; not trained"}
        if differ:
            return {
                "error": f"{job} on {node}: the node's workspace differs from the driver's in "
                f"{differ} (every node needs the same checkout, params, venv and data/: "
                "docs/fanout.md); not trained"
            }
        argv = [
            sys.executable, "-m", "kinship.cli", *global_argv(options), "train",
            "--member", job.member, "--fold", str(job.fold), *(["--resume"] if resume else []),
        ]  # fmt: skip
        code, tail = run_logged(argv, fold_env(job), prefix=f"[{job}] ")
        if code != 0:
            return {
                "error": f"{job} on {node}: `kinship train --member {job.member} --fold "
                f"{job.fold}` exited {code}; its last lines:\n" + "\n".join(tail)
            }
        archives = {p.as_posix(): pack(p) for p in fold_outputs(job.member, job.fold) if p.is_dir()}
    return {"node": node, "archives": archives}


def fold_env(job: FoldJob) -> dict[str, str]:
    """The fold process's environment: Ray's (CUDA_VISIBLE_DEVICES names the task's GPUs), with
    OMP_NUM_THREADS = its CPUs (on CPU, results depend on the thread count) and no GPU for a
    fold that asked for none."""
    env = dict(os.environ, OMP_NUM_THREADS=str(job.num_cpus), PYTHONUNBUFFERED="1")
    if job.num_gpus == 0:
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def run_logged(argv: list[str], env: dict, prefix: str) -> tuple[int, list[str]]:
    """Run a command, echoing its output line by line (Ray forwards it to the driver); its exit
    code and last lines. Interrupted (a cancelled task), it stops the command."""
    tail = collections.deque(maxlen=LOG_TAIL_LINES)
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    try:
        for line in proc.stdout:
            tail.append(line.rstrip("\n"))
            print(prefix + line, end="", file=sys.stderr, flush=True)
        return proc.wait(), list(tail)
    finally:
        if proc.poll() is None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)
            proc.kill()
            proc.wait()

"""`kinship fanout`: a member's folds as Ray tasks on a local cluster of two worker nodes, each
node with its own copy of the workspace (as separate machines without a shared filesystem), give
the serial run's outputs bit for bit (checkpoints, fold and member predictions, curves, metrics);
a failed fold, a node whose workspace differs and bad input are named; `--resume` trains only
what is missing."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import CI_PROFILE, copy_project, pipeline_env, run, write_crop_spec

from kinship.fanout import WORKSPACE_ENV
from kinship.params import load_params

MEMBER = "siamese_cnn"
"""The CI profile's cheapest image member: a fold trains in seconds."""
NODES = ("node_a", "node_b")
TIMINGS = ("timing.json",)
"""Files that hold wall times: the only outputs a rerun may change."""


def kinship(work: Path, *args: str, threads: int | None = None) -> subprocess.CompletedProcess:
    """`kinship ARGS` in `work` (exit code and output returned, not checked)."""
    env = pipeline_env()
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    return subprocess.run(
        [sys.executable, "-m", "kinship.cli", *args],
        cwd=work, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def checked(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
    )
    return proc


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """The CI profile's workspace as it stands before MEMBER's train stage: synthesized,
    prepared, cached at the member's size, with a crop spec."""
    work = copy_project(tmp_path_factory.mktemp("fanout"))
    run([sys.executable, "-m", "kinship.cli", "profile", str(CI_PROFILE)], work)
    size = load_params(work / "params.yaml").members[MEMBER].input_size
    for stage in (["synthesize"], ["prepare"], ["cache", "--size", str(size)]):
        run([sys.executable, "-m", "kinship.cli", *stage], work)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        write_crop_spec(output_size=size)
    return work


@pytest.fixture(scope="module")
def serial(base, tmp_path_factory) -> Path:
    """MEMBER trained by `kinship train` in one process, with one thread (as a fold task with
    one CPU: on CPU, float results depend on the thread count)."""
    work = tmp_path_factory.mktemp("serial") / "work"
    shutil.copytree(base, work, symlinks=True)
    checked(kinship(work, "train", "--member", MEMBER, threads=1))
    return work


@pytest.fixture(scope="module")
def cluster(base, tmp_path_factory):
    """A Ray head with no CPU (nothing runs there) and two worker nodes of one CPU each, each
    node's tasks working in its own copy of the workspace (WORKSPACE_ENV). Ray's token
    authentication is off (this process read Ray's config when it imported ray; a token in
    the user's ~/.ray is not read)."""
    from ray.cluster_utils import Cluster  # ray is a required dependency: never a skip

    root = tmp_path_factory.mktemp("nodes")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_AUTH_MODE", "disabled")
        ray_cluster = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 0, "object_store_memory": 80 * 2**20},
        )
        nodes = {}
        try:
            for name in NODES:
                nodes[name] = root / name
                mp.setenv(WORKSPACE_ENV, str(nodes[name]))  # the node's processes inherit it
                ray_cluster.add_node(num_cpus=1, object_store_memory=80 * 2**20)
            mp.delenv(WORKSPACE_ENV)
            ray_cluster.wait_for_nodes()
            yield ray_cluster.address, nodes
        finally:
            ray_cluster.shutdown()


def fresh_copies(base: Path, *targets: Path) -> None:
    for target in targets:
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(base, target, symlinks=True)


def member_outputs(work: Path) -> dict[str, bytes]:
    """Every file MEMBER's train stage writes (timings aside), by path."""
    roots = [f"models/{MEMBER}", f"reports/curves/{MEMBER}", f"reports/members/{MEMBER}"]
    roots += [f"data/{d}/{MEMBER}.parquet" for d in ("oof", "holdout", "test")]
    files = {}
    for root in map(work.joinpath, roots):
        for path in [root] if root.is_file() else sorted(root.rglob("*")):
            if path.is_file() and path.name not in TIMINGS:
                files[path.relative_to(work).as_posix()] = path.read_bytes()
    return files


def complete_folds(work: Path) -> set[int]:
    return {int(p.parent.name[4:]) for p in (work / "models" / MEMBER).glob("fold*/complete.json")}


def test_two_nodes_give_the_serial_run_bit_for_bit(base, serial, cluster, tmp_path):
    address, nodes = cluster
    fresh_copies(base, *nodes.values())
    driver = tmp_path / "driver"
    fresh_copies(base, driver)
    out = checked(kinship(driver, "fanout", "--member", MEMBER, "--address", address))
    # each node trained one fold in its own workspace; the driver's came back through Ray
    assert [len(complete_folds(node)) for node in nodes.values()] == [1, 1]
    assert complete_folds(nodes["node_a"]) | complete_folds(nodes["node_b"]) == {0, 1}
    for node in nodes.values():
        assert not (node / "data/oof" / f"{MEMBER}.parquet").exists()  # collected on the driver
    expected = member_outputs(serial)
    got = member_outputs(driver)
    assert sorted(got) == sorted(expected)
    assert [path for path in expected if got[path] != expected[path]] == []
    assert any(path.endswith("/model.pt") for path in got)  # checkpoints compared too
    assert "siamese_cnn fold 0: in place" in out.stderr and "OOF auc" in out.stderr
    leftovers = [p.name for p in (driver / "models" / MEMBER).iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_a_failing_fold_names_itself_and_resume_trains_only_it(base, serial, cluster, tmp_path):
    address, nodes = cluster
    fresh_copies(base, *nodes.values())
    broken = nodes["node_b"] / "models" / MEMBER
    broken.write_text("a file where the member's folder belongs")  # the fold cannot be written
    driver = tmp_path / "driver"
    fresh_copies(base, driver)
    failed = kinship(driver, "fanout", "--member", MEMBER, "--address", address)
    assert failed.returncode == 2, failed.stderr
    message = failed.stderr[failed.stderr.index("kinship fanout: error:") :]
    assert "1 of 2 folds failed" in message
    [fold_b] = {0, 1} - complete_folds(nodes["node_a"])
    assert f"{MEMBER} fold {fold_b} on " in message and str(nodes["node_b"]) in message
    assert f"`kinship train --member {MEMBER} --fold {fold_b}` exited 1" in message
    assert "Error" in message.splitlines()[-1]  # the end of the fold's traceback
    # the fold that came back is complete; nothing was collected
    assert complete_folds(driver) == {1 - fold_b}
    assert not (driver / "data/oof" / f"{MEMBER}.parquet").exists()

    broken.unlink()
    resumed = checked(kinship(driver, "fanout", "--member", MEMBER, "--address", address,
                              "--resume"))  # fmt: skip
    assert "1 complete folds kept (--resume)" in resumed.stderr
    assert f"submitted: {MEMBER} fold {fold_b}\n" in resumed.stderr
    expected = member_outputs(serial)
    got = member_outputs(driver)
    assert [path for path in expected if got.get(path) != expected[path]] == []


def test_a_node_with_other_data_or_params_is_refused_untrained(base, cluster):
    address, nodes = cluster
    fresh_copies(base, *nodes.values())
    size = load_params(base / "params.yaml").members[MEMBER].input_size
    for node in nodes.values():  # whichever node a fold lands on differs from the driver
        cache = node / f"data/cache/{size}.npy"
        data = bytearray(cache.read_bytes())
        data[-1] ^= 1
        cache.write_bytes(bytes(data))
        raw = yaml.safe_load((node / "params.yaml").read_text())
        raw["train"]["seed"] += 1
        (node / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    failed = kinship(base, "fanout", "--member", MEMBER, "--address", address)
    assert failed.returncode == 2
    message = failed.stderr[failed.stderr.index("kinship fanout: error:") :]
    assert "2 of 2 folds failed" in message
    for fold in (0, 1):
        assert f"{MEMBER} fold {fold} on " in message
    assert (
        message.count(
            f"the node's workspace differs from the driver's in data/cache/{size}.npy, params"
        )
        == 2
    )
    assert message.count("; not trained") == 2
    assert [complete_folds(node) for node in nodes.values()] == [set(), set()]
    assert not (base / "models" / MEMBER).exists()


@pytest.mark.parametrize(
    "args, error",
    [
        (["--member", "siamese_cn"], "unknown member 'siamese_cn' (did you mean 'siamese_cnn'?)"),
        (["--member", MEMBER, "--folds", "1", "3"], "--folds 3: folds are [0, 1]"),
        (["--member", MEMBER, "--cpus-per-fold", "0"], "--cpus-per-fold 0: must be at least 1"),
        (["--member", MEMBER, "--gpus-per-fold", "1"],
         "no node of the Ray cluster has 1 CPUs and 1 GPUs"),
    ],
)  # fmt: skip
def test_bad_input_is_named(base, cluster, args, error):
    address, _ = cluster
    proc = kinship(base, "fanout", *args, "--address", address)
    assert proc.returncode == 2
    assert f"kinship fanout: error: {error}" in proc.stderr
    assert not (base / "models" / MEMBER).exists()

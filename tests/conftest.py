"""Shared fixtures: the tiny end-to-end pipeline, built once per test run and reused."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# torch, and torchvision.ops (which loads torch._dynamo and triton), must come before TensorFlow in
# one process: TensorFlow first, then triton, segfaults (both bundle LLVM). Test processes load
# both frameworks, so load torch's side first; pipeline processes each load one framework only.
# Both are required dependencies: an install without them fails here, loudly, never skips.
import torch  # noqa: F401, I001
import torchvision.ops  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
CI_PROFILE = REPO / "profiles" / "ci.yaml"


def pipeline_env() -> dict[str, str]:
    """The environment for `dvc` and stage commands: this interpreter's bin first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(
        GIT_AUTHOR_NAME="test", GIT_AUTHOR_EMAIL="test@example.invalid",
        GIT_COMMITTER_NAME="test", GIT_COMMITTER_EMAIL="test@example.invalid",
        PYTHONUNBUFFERED="1",
    )  # fmt: skip
    return env


def run(cmd: list[str], cwd: Path, timeout: float = 1800) -> subprocess.CompletedProcess:
    """Run a command; on failure show its output in the test report."""
    proc = subprocess.run(
        cmd, cwd=cwd, env=pipeline_env(), capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-6000:]}"
            f"\n--- stderr\n{proc.stderr[-6000:]}"
        )
    return proc


def write_crop_spec(output_size: int) -> None:
    """The crop_spec stage's output, as the train stages read it (for tests that train without
    running that stage: its measure is tested in tests/test_predict.py)."""
    from kinship import paths
    from kinship.faces import CropSpec
    from kinship.io import write_json

    spec = CropSpec("mtcnn", 0.9, 1.6, 0.0, 0.0, output_size, 200, 150, (1.5, 1.7))
    write_json(paths.CROP_SPEC, spec.to_json())


OUTPUT_DIRS = ("data/", "models/", "reports/", "submission.csv")
"""Pipeline outputs (DVC writes them; a copy must not carry a workspace's stale ones)."""


def copy_project(dest: Path) -> Path:
    """Copy the project's files (tracked, and untracked but not ignored; no pipeline outputs)
    into a fresh git repo."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for rel in filter(None, listed):
        if rel.startswith(OUTPUT_DIRS) and not rel.endswith(".gitignore"):
            continue
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    run(["git", "init", "-q"], dest)
    run(["git", "add", "-A"], dest)
    run(["git", "commit", "-qm", "copy"], dest)
    return dest


@pytest.fixture(scope="session")
def ci_pipeline(tmp_path_factory) -> Path:
    """The whole DAG under profiles/ci.yaml, reproduced once in a temporary copy of the repo."""
    work = copy_project(tmp_path_factory.mktemp("pipeline"))
    run([sys.executable, "-m", "kinship.cli", "profile", str(CI_PROFILE)], work)
    run(["git", "commit", "-qam", "ci profile"], work)
    run(["dvc", "repro"], work)
    return work

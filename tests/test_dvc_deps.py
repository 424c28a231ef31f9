"""DVC knows every project file a stage reads: each stage's `deps` in dvc.yaml cover the modules its
command imports, derived here from the source (every `import` in every reached module, including
imports inside functions, plus the member modules the registry names), so a changed default or
helper reruns the stages that use it."""

from __future__ import annotations

import ast
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kinship.cli import COMMANDS
from kinship.members.registry import MODELS
from kinship.train_stage import TRAINERS

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"


def module_file(module: str) -> Path | None:
    """The file of a `kinship` module or package; None for a name that is neither."""
    base = SRC.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    """Every `kinship` module a file imports, anywhere in it (top level or inside functions)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] == "kinship"}


def import_closure(roots: list[str]) -> set[Path]:
    """The files loaded by importing `roots`: each module, its parent packages, and so on."""
    files: set[Path] = set()
    todo = list(roots)
    while todo:
        module = todo.pop()
        parts = module.split(".")
        for depth in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__, a/b/__init__
            path = module_file(".".join(parts[:depth]))
            if path is not None and path not in files:
                files.add(path)
                todo.extend(imported_modules(path))
    return files


def stage_roots(stage: dict) -> list[str]:  # a dvc.yaml stage (a foreach stage: its do + foreach)
    """The modules a stage's command runs: the CLI and its subcommand's handler; for a train
    stage, the trainer of its params section and, for image members, every registered member
    module (both are imported by name)."""
    argv = shlex.split(stage_body(stage)["cmd"])
    assert argv[0] == "kinship", f"stage command {argv} should call `kinship <stage>`"
    roots = ["kinship.cli", module_of(COMMANDS[argv[1]])]
    if argv[1] == "train":
        section = stage["foreach"].strip("${}")
        roots.append(module_of(TRAINERS[section]))
        if section == "members":
            roots += [module_of(target) for target in MODELS.values()]
    return roots


def module_of(target: str) -> str:
    return target.split(":")[0]


def dvc_stages() -> dict[str, dict]:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def stage_body(stage: dict) -> dict:
    return stage.get("do", stage)


def dep_paths(stage: dict) -> list[str]:
    return [dep if isinstance(dep, str) else next(iter(dep)) for dep in stage_body(stage)["deps"]]


def covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(REPO).as_posix()
    return any(rel == dep.rstrip("/") or rel.startswith(dep.rstrip("/") + "/") for dep in deps)


@pytest.mark.parametrize("name", sorted(dvc_stages()))
def test_stage_deps_cover_every_imported_module(name):
    stage = dvc_stages()[name]
    deps = dep_paths(stage)
    needed = import_closure(stage_roots(stage))
    missing = sorted(p.relative_to(REPO).as_posix() for p in needed if not covered(p, deps))
    assert not missing, f"dvc.yaml stage {name!r} imports these but lacks them in deps: {missing}"


@pytest.mark.parametrize("name", sorted(dvc_stages()))
def test_stage_source_deps_exist(name):
    """A listed source dependency that no longer exists is a typo or a leftover."""
    for dep in dep_paths(dvc_stages()[name]):
        if dep.startswith(("src/", "vendor/")):
            assert (REPO / dep).exists(), f"dvc.yaml stage {name!r}: dep {dep} does not exist"


def test_closure_follows_imports_inside_functions(tmp_path):
    """The derivation itself: a function-level import counts, a string does not."""
    source = tmp_path / "m.py"
    source.write_text(
        "import os\nfrom kinship import paths\n"
        "def f():\n    from kinship.params import Params\n    return 'kinship.io'\n"
    )
    assert imported_modules(source) == {"kinship", "kinship.paths", "kinship.params",
                                        "kinship.params.Params"}  # fmt: skip
    closure = import_closure(["kinship.params"])
    assert SRC / "kinship" / "__init__.py" in closure
    assert SRC / "kinship" / "paths.py" in closure  # params imports paths


def test_train_stage_covers_member_modules():
    """The registry's string targets are followed: a train stage reaches the member modules."""
    closure = import_closure(stage_roots(dvc_stages()["train"]))
    assert SRC / "kinship" / "members" / "keras_vggface.py" in closure
    assert SRC / "kinship" / "members" / "torch_member.py" in closure


COMMITTED_INPUTS = ("src/", "weights/", "params.yaml")
"""Deps that git holds (code, weight folders, params); the others are earlier stages' outputs,
absent or different in a fresh clone until `dvc repro` (or `dvc pull`) brings them."""


def test_committed_dvc_lock_matches_code_and_params():
    """dvc.lock is committed (DVC's experiments and `dvc metrics diff` need it tracked) and must
    record the committed code, commands and params: `dvc status` may find outputs and the
    outputs-as-deps of later stages missing (a fresh clone has none), never a changed source file,
    weight folder, command or param."""
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "dvc"), "status", "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    stale = {}
    for stage, changes in json.loads(proc.stdout or "{}").items():
        for change in changes:
            if change == "changed command":
                stale.setdefault(stage, []).append("command")
            elif isinstance(change, dict) and "changed deps" in change:
                stale.setdefault(stage, []).extend(
                    dep for dep in change["changed deps"] if dep.startswith(COMMITTED_INPUTS)
                )
    stale = {stage: deps for stage, deps in stale.items() if deps}
    assert not stale, (
        "dvc.lock is stale: run `make repro` on the committed params.yaml and commit dvc.lock "
        f"with the metrics it wrote; changed since the lock: {stale}"
    )

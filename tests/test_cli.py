"""The `kinship` command: what DVC calls for every stage."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from fiwfixtures import quirky_fiw

from kinship.cli import COMMANDS, RUNNERS, TOOLS, build_parser, stage_handler

REPO = Path(__file__).resolve().parents[1]


def test_every_subcommand_has_a_handler():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    handled = set(COMMANDS) | set(TOOLS) | set(RUNNERS)
    assert handled == set(sub.choices) - {"check-params", "profile"}
    assert len(handled) == len(COMMANDS) + len(TOOLS) + len(RUNNERS)  # each in one table
    for command in [*COMMANDS, *TOOLS, *RUNNERS]:
        assert callable(stage_handler(command))


def test_a_stage_logs_its_time_and_peak_memory(tmp_path):
    """Each stage ends with one line giving its wall time and peak RSS (the benchmarks parse it)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["root"] = str(quirky_fiw(tmp_path / "fiw"))
    params["folds"]["k"] = 2
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    proc = subprocess.run(
        [sys.executable, "-m", "kinship.cli", "prepare"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "prepare: done in" in proc.stderr and "MiB (largest worker process" in proc.stderr
    assert (tmp_path / "data/prepared/pairs.parquet").is_file()


def test_a_stage_error_names_the_problem_and_exits_2(tmp_path):
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    proc = subprocess.run(
        [sys.executable, "-m", "kinship.cli", "cache", "--size", "33"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "kinship cache: error: cache size 33 is not listed in params.yaml cache.sizes" in (
        proc.stderr
    )

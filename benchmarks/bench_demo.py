"""Wall time of each stage of the demo pipeline (default params, synthetic data).

Copies the project into a temporary git repo, then runs the DAG one stage at a time in its order
(`dvc repro --single-item <stage>`), printing each stage's seconds, the total and its ratio to the
10-minute target, then a no-op `dvc repro`. Member AUCs are printed from their metrics.json.
The first line names the CPU: times, and even AUCs, differ between CPU models (TensorFlow and
torch pick different SIMD kernels), so compare runs on the same one.
Run: `.venv/bin/python benchmarks/bench_demo.py [--keep DIR]` from the repo root.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from conftest import copy_project, run  # noqa: E402

TARGET_S = 600.0


def stage_order(work: Path) -> list[str]:
    """Stage names in dvc.yaml order, which follows the DAG (each stage after its inputs)."""
    return run(["dvc", "stage", "list", "--name-only"], work).stdout.split()


def cpu_description() -> str:
    """The CPU model, its core count and its widest vector extension, from /proc/cpuinfo."""
    info = Path("/proc/cpuinfo")
    fields: dict[str, str] = {}
    for line in info.read_text().splitlines() if info.is_file() else []:
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    vector = next((f for f in ("avx512f", "avx2", "avx") if f in flags), "no AVX")
    return f"{fields.get('model name', 'unknown CPU')}, {os.cpu_count()} cores, {vector}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", type=Path, help="copy the finished workspace here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = copy_project(Path(tmp))
        print(f"CPU: {cpu_description()}", flush=True)
        total = 0.0
        for stage in stage_order(work):
            start = time.perf_counter()
            run(["dvc", "repro", "--single-item", stage], work)
            seconds = time.perf_counter() - start
            total += seconds
            print(f"{stage:32s} {seconds:7.1f} s", flush=True)
        print(
            f"{'total':32s} {total:7.1f} s  ({total / TARGET_S:.2f} of the {TARGET_S:.0f} s target)"
        )
        start = time.perf_counter()
        run(["dvc", "repro"], work)
        print(f"{'no-op dvc repro':32s} {time.perf_counter() - start:7.1f} s")
        for path in sorted((work / "reports" / "members").glob("*/metrics.json")):
            oof = json.loads(path.read_text())["oof"]
            low, high = oof["auc_ci95"]
            print(f"{path.parent.name:32s} OOF AUC {oof['auc']:.3f} [{low:.3f}, {high:.3f}]")
        if args.keep:
            shutil.copytree(work, args.keep, dirs_exist_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

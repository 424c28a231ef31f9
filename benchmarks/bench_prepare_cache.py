"""Wall time of `dvc repro` for prepare + cache@224 on the real Kaggle FIW data (target < 120 s).

Copies the project into a temporary git repo, applies profiles/fiw-gpu.yaml with data.root pointing
at data/real/fiw (absolute path, outside the copy), then times, each from a clean state:
  1. `dvc repro cache@224`  (runs prepare, then the 224 px cache) — the target
  2. every other cache size of the profile, one `dvc repro cache@<size>` each
  3. a no-op `dvc repro` (after the rest of the DAG has run once)
Run: `.venv/bin/python benchmarks/bench_prepare_cache.py` (from the repo root).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from conftest import copy_project, run  # noqa: E402

from kinship.params import apply_profile, load_params  # noqa: E402

REAL = REPO / "data" / "real" / "fiw"
TARGET_S = 120.0


def timed(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    run(cmd, cwd)
    return time.perf_counter() - start


def main() -> int:
    if not (REAL / "train").is_dir():
        print(f"skipped: real FIW data not found in {REAL} (see README, 'Real data')")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        work = copy_project(Path(tmp))
        apply_profile(work / "params.yaml", REPO / "profiles" / "fiw-gpu.yaml")
        profile = Path(tmp) / "abs.yaml"
        profile.write_text(f"data:\n  root: {REAL}\n")
        apply_profile(work / "params.yaml", profile)
        sizes = load_params(work / "params.yaml").cache.sizes
        seconds = timed(["dvc", "repro", "cache@224"], work)
        ratio = seconds / TARGET_S
        print(
            f"dvc repro prepare + cache@224: {seconds:6.1f} s ({ratio:.2f} of the {TARGET_S:.0f} s)"
        )
        for size in sizes:
            if size != 224:
                took = timed(["dvc", "repro", f"cache@{size}"], work)
                print(f"dvc repro cache@{size}:           {took:6.1f} s")
        run(["dvc", "repro"], work)  # the rest of the DAG (synthesize), so the next is a no-op
        print(f"no-op dvc repro:                  {timed(['dvc', 'repro'], work):6.1f} s")
    return 0 if seconds < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())

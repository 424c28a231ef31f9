"""Time of `dvc repro` after editing one ensemble weight (target <= 10 s): only ensemble and report
rerun. Needs a reproduced workspace, e.g. from `benchmarks/bench_demo.py --keep DIR`.
Run: `.venv/bin/python benchmarks/bench_ensemble_rerun.py DIR`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from conftest import run  # noqa: E402

TARGET_S = 10.0


def main() -> int:
    work = Path(sys.argv[1])
    params_path = work / "params.yaml"
    original = params_path.read_text()
    raw = yaml.safe_load(original)
    member = next(iter(raw["members"]))
    # a weight this workspace has not seen: a repeated one is restored from DVC's run cache
    weight = round(2.0 + time.time() % 1.0, 6)
    raw["ensemble"]["weights"] = {**(raw["ensemble"]["weights"] or {}), member: weight}
    try:
        params_path.write_text(yaml.safe_dump(raw, sort_keys=False))
        start = time.perf_counter()
        out = run(["dvc", "repro"], work).stdout
        seconds = time.perf_counter() - start
    finally:
        params_path.write_text(original)
    ran = [line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")]
    print(f"stages rerun: {', '.join(ran)}")
    ratio = seconds / TARGET_S
    print(f"dvc repro after an ensemble weight edit: {seconds:.1f} s ({ratio:.2f} of the target)")
    run(["dvc", "repro"], work)  # back to the committed params
    return 0


if __name__ == "__main__":
    sys.exit(main())

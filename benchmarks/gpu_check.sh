#!/usr/bin/env bash
# One command on a GPU machine (python 3.12 + torch with CUDA; no TensorFlow, DVC or network
# needed): installs the carried wheels the machine lacks into a temporary folder, then runs
# benchmarks/bench_gpu.py on Keras' torch backend within a wall-clock budget. Prints the table;
# with $OUT set (the device tool brings back what is under it) also writes $OUT/gpu_bench.json and
# the whole printout to $OUT/gpu_bench.log. Exit status: bench_gpu.py's (0 targets met, 1 missed,
# 2 refused: no CUDA device), 124 when the hard time limit stopped it.
#
#   bash benchmarks/gpu_check.sh [bench_gpu.py options, e.g. --families 200]
#   BUDGET=480 WHEELS=benchmarks/wheels PYTHON=python3 bash benchmarks/gpu_check.sh
# First, once, where PyPI is reachable: bash benchmarks/gpu_wheels.sh (docs/gpu-benchmark.md).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
wheels="${WHEELS:-$repo/benchmarks/wheels}"
budget="${BUDGET:-480}"  # bench_gpu.py paces itself to this; the hard stop is 60 s later
site="$(mktemp -d "${TMPDIR:-/tmp}/kinship-site.XXXXXX")"
trap 'rm -rf "$site"' EXIT

echo "wheels ($wheels):"
"$python" "$repo/benchmarks/install_wheels.py" "$wheels" "$site"

export KERAS_BACKEND=torch
export PYTHONPATH="$repo/src:$site${PYTHONPATH:+:$PYTHONPATH}"
export TF_CPP_MIN_LOG_LEVEL=2
args=(--budget "$budget" "$@")
log=/dev/null
if [[ -n "${OUT:-}" ]]; then
  mkdir -p "$OUT"
  args+=(--json "$OUT/gpu_bench.json")
  log="$OUT/gpu_bench.log"
fi
status=0
timeout --kill-after=20 "$((budget + 60))" \
  "$python" "$repo/benchmarks/bench_gpu.py" "${args[@]}" 2>&1 | tee "$log" || status=${PIPESTATUS[0]}
exit "$status"

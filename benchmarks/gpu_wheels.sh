#!/usr/bin/env bash
# One-off, where PyPI is reachable: download the wheels a bare GPU machine lacks into
# benchmarks/wheels/ (git-ignored), to carry there for benchmarks/gpu_check.sh.
#
# The lent GPU machines have python 3.12 with torch (2.11, CUDA), numpy, pandas, pyarrow, h5py,
# ml-dtypes, absl-py, rich, pillow, scikit-learn, pyyaml, packaging and typing-extensions, but no
# network. Missing: Keras and its two small dependencies (namex, optree), tqdm (kinship.cache),
# facenet-pytorch (installed without its dependencies, as in the Makefile: it pins torch<2.3), and
# torchvision, which facenet-pytorch imports (installed there only when the machine has none and
# its torch is the one this torchvision release was built for). cp312 manylinux x86_64 wheels.
#
#   bash benchmarks/gpu_wheels.sh [DEST]          (DEST defaults to benchmarks/wheels)
#   PYTHON_VERSION=3.12 TORCHVISION=0.26.0 bash benchmarks/gpu_wheels.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="${1:-$here/wheels}"
python_version="${PYTHON_VERSION:-3.12}"
abi="cp${python_version/./}"
torchvision="${TORCHVISION:-0.26.0}"  # the release for torch 2.11
pip="${PIP:-python3 -m pip}"
limit_mib=48  # the device tool carries at most 64 MiB in all

packages=(
  keras==3.15.1           # pyproject.toml's pin
  namex==0.1.0
  optree==0.20.0
  tqdm==4.70.1            # pyproject.toml's pin
  facenet-pytorch==2.6.0  # the Makefile's pin
  "torchvision==$torchvision"
)

mkdir -p "$dest"
$pip download --quiet --no-deps --only-binary=:all: \
  --python-version "$python_version" --implementation cp --abi "$abi" \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform any \
  --dest "$dest" "${packages[@]}"

ls -l "$dest"/*.whl
size_kib=$(du -sk "$dest" | cut -f1)
echo "total: $((size_kib / 1024)) MiB in $dest"
if ((size_kib > limit_mib * 1024)); then
  echo "gpu_wheels: $((size_kib / 1024)) MiB exceeds $limit_mib MiB; remove stale wheels" >&2
  exit 1
fi

#!/usr/bin/env bash
# Wheels for benchmarks/gpu_check.sh on the GPU machine (Python 3.12, x86-64, no network): wmrl's
# dependencies that its image lacks, downloaded here into .whl/ (kept out of git by .git/info/exclude).
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d .whl gymnasium farama-notifications cloudpickle ale-py minatar

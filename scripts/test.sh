#!/usr/bin/env bash
# Builds judgeq (Release) and runs every CPU test (ctest labels unit and model).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DJUDGEQ_EXCLUDE_REGEX= >/dev/null
cmake --build "$BUILD" -j"$(nproc)"
cd "$BUILD"
ctest -L 'unit|model' --output-on-failure -j"$(nproc)"

#!/usr/bin/env bash
# Builds judgeq and runs the main job on the project's own testbed model on CPU: a small
# comparison of eviction methods (Judge Q among them) at two KV budgets on RULER tasks at 2K
# tokens, a few samples each. Results: runs/demo/results.md (+ metrics.json, plots).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DJUDGEQ_EXCLUDE_REGEX= >/dev/null
cmake --build "$BUILD" -j"$(nproc)"
MODEL=models/testbed
if [ ! -f "$MODEL/model.safetensors" ]; then
  echo "error: $MODEL/model.safetensors is missing; see $MODEL/README.md for how to train it" >&2
  exit 1
fi
METHODS=full,streamingllm,h2o,snapkv,pyramidkv
SOFT=()
if [ -f "$MODEL/judgeq.safetensors" ]; then
  METHODS=$METHODS,judgeq
  SOFT=(--soft-tokens "$MODEL/judgeq.safetensors")
fi
OUT=${OUT:-runs/demo}
rm -rf "$OUT"
"$BUILD/judgeq-eval" run --model "$MODEL" --bench ruler \
  --tasks niah_single_2,niah_multikey_1,niah_multivalue,vt --lengths 2048 --limit 4 \
  --methods "$METHODS" --budgets 64,128 "${SOFT[@]}" --data-dir "${JUDGEQ_DATA:-../shared/data}" --out "$OUT"
cat "$OUT/results.md"

#!/usr/bin/env bash
# The command sent to the H200 machine (run from the repository root; the carry folder .testbed_carry/
# must travel with it: filler_tok.npz, words.json, eval/).  Everything the run produces goes to $OUT, flat,
# 7 files (the device tool returns at most 8 files of at most 16 MiB each, at most 2 folders down):
#   config.json, generation_config.json, model.safetensors.part0, model.safetensors.part1 (15 MiB byte chunks;
#   scripts/testbed/fetch_weights.sh joins them), train_log.txt, eval.json (train.sha256 = sha256 of the whole
#   model.safetensors; written right after each export, so it exists even if the evaluation is cut), samples.txt
# Time: train.py stops training at TESTBED_TOTAL - 57 s and evaluates within the budget (the script ends at
# ~TESTBED_TOTAL - 40 s); `timeout` is a hard stop well inside the tool's 600 s per-call limit.
# Extra arguments are passed to train.py (e.g. --init DIR --phase-fracs 0,0.3 for a continuation run).
set -o pipefail
export TESTBED_T0=$(date +%s.%N) PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
OUT=${OUT:-out/testbed}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
echo "cpus: $(nproc)"
timeout -s TERM "${TESTBED_TIMEOUT:-560}" python3 scripts/testbed/train.py --out "$OUT" \
  --total-seconds "${TESTBED_TOTAL:-540}" "$@" 2>&1 | tee "$OUT/train_log.txt"

#!/usr/bin/env bash
# The command sent to the H200 machine (run from the repository root; the carry folder .testbed_carry/
# must travel with it: filler_tok.npz, words.json, eval/).  Everything the run produces goes to $OUT:
#   model/{config.json,model.safetensors,generation_config.json,train_meta.json}, train_log.txt, eval.json,
#   samples.txt
# Extra arguments are passed to train.py (e.g. --init DIR --phase-fracs 0,0.3 for a continuation run).
set -o pipefail
export TESTBED_T0=$(date +%s.%N) PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
OUT=${OUT:-out/testbed}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
echo "cpus: $(nproc)"
timeout -s TERM "${TESTBED_TIMEOUT:-592}" python3 scripts/testbed/train.py --out "$OUT" \
  --total-seconds "${TESTBED_TOTAL:-575}" "$@" 2>&1 | tee "$OUT/train_log.txt"

#!/usr/bin/env bash
# On the H200 machine: build judgeq against the Python torch's LibTorch, then real-shape parity
# (Llama-3.1-8B and Mistral-7B-v0.3 configs, seeded random bf16 weights, 8K tokens) and speed vs
# HF transformers (sdpa, bf16) in the same run, the training-step benchmark and the grid-vs-
# per-variant benchmark. Results land in $OUT (or ./bench_out).
# Builds through scripts/gpu_common.sh. Needs .dev/root (Debian's libpcre2-dev unpacked) and, for the grid, .dev/data/ruler and
# .dev/data/tokenizers/llama3 (copies of ../shared/data), carried along.
# STAGES (default "parity speed train grid"; also "h2o") and PARITY_MODELS select what runs.
set -euo pipefail
OUT=${OUT:-bench_out}
mkdir -p "$OUT"
t0=$(date +%s)
source scripts/gpu_common.sh judgeq_bench_real_shape judgeq_bench_pipeline judgeq-eval judgeq-train
STAGES=${STAGES:-parity speed train grid}
has() { [[ " $STAGES " == *" $1 "* ]]; }
if has train; then
  d=$(mktemp -d); cp bench/configs/llama-3.1-8b.json $d/config.json
  timeout 150 ./build-gpu/bench/judgeq_bench_pipeline --config $d/config.json --mode train --lengths 8192,32768 --out "$OUT" || echo "train bench failed"
fi
if has grid; then
  d=$(mktemp -d); cp bench/configs/llama-3.1-8b.json $d/config.json
  timeout 200 ./build-gpu/bench/judgeq_bench_pipeline --config $d/config.json --mode grid --samples 2 \
    --tokenizer .dev/data/tokenizers/llama3/tokenizer.model --data-root .dev/data --out "$OUT" || echo "grid bench failed"
fi
if has h2o; then
  # H2O's cost at each of H2O_LENGTHS: the prefill with and without it, and each kernel of its
  # fused passes (judgeq_h2o_N.json).
  d=$(mktemp -d); cp bench/configs/llama-3.1-8b.json $d/config.json
  for n in ${H2O_LENGTHS:-8192 32768 131072}; do
    timeout 200 ./build-gpu/bench/judgeq_bench_real_shape --config $d/config.json --mode h2o --lengths $n --reps 3 \
      --out $d && mv $d/judgeq_h2o.json "$OUT/judgeq_h2o_$n.json" || echo "h2o bench failed at $n"
  done
fi
has parity || PARITY_MODELS=""
for name in ${PARITY_MODELS-llama-3.1-8b mistral-7b-v0.3}; do
  d=$(mktemp -d); cp bench/configs/$name.json $d/config.json
  ./build-gpu/bench/judgeq_bench_real_shape --config $d/config.json --mode parity --lengths 8192 --out $d
  python3 bench/hf_reference.py --config-dir $d --mode parity --lengths 8192 --judgeq $d/judgeq_parity.safetensors --out "$OUT/parity_$name.json"
done
has speed || { echo "total: $(( $(date +%s) - t0 )) s"; exit 0; }
d=$(mktemp -d); cp bench/configs/llama-3.1-8b.json $d/config.json
LENGTHS=${LENGTHS:-8192,32768,131072}
./build-gpu/bench/judgeq_bench_real_shape --config $d/config.json --mode speed --lengths $LENGTHS --out $d
cp $d/judgeq_speed.json "$OUT/"
python3 bench/hf_reference.py --config-dir $d --mode speed --lengths $LENGTHS --out "$OUT/hf_speed.json"
echo "total: $(( $(date +%s) - t0 )) s"

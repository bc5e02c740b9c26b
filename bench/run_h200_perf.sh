#!/usr/bin/env bash
# On one H200 (CUDA_VISIBLE_DEVICES picks it), after a build into build-gpu/ (scripts/gpu_common.sh):
# the decoding step replayed as a CUDA graph under the kernel profiler (alone after 32K, and the
# grid's batch of a full-KV and 15 compressed caches after 8K), prefill/decode/eviction
# overhead at 32K, and the grid-vs-one-variant-at-a-time benchmark at 8K, all at the Llama-3.1-8B
# shape with seeded random weights. Summaries and JSON land in $OUT.
#   bash bench/run_h200_perf.sh      (GRID_SAMPLES, default 3)
set -uo pipefail
OUT=${OUT:-bench_out}; mkdir -p "$OUT"; B=${B:-build-gpu}
cfg=$(mktemp -d); cp bench/configs/llama-3.1-8b.json $cfg/config.json
P=$(mktemp -d)
timeout 120 $B/bench/judgeq_bench_profile --config $cfg/config.json --what decode_graph --context 32768 --steps 5 \
  --out $P > $P/profile.log 2>&1; echo "profile: exit $?"; grep "ms per step" $P/profile.log
{ grep "ms per step" $P/profile.log; python3 bench/profile_summary.py $P/decode_graph_trace.json 5 40; } \
  > "$OUT/h200_decode_graph_profile.txt" 2>&1
timeout 200 $B/bench/judgeq_bench_profile --config $cfg/config.json --what decode_grid --context 8192 --steps 10 \
  --out $P > $P/grid_profile.log 2>&1; echo "grid decode profile: exit $?"
{ cat $P/grid_profile.log; python3 bench/profile_summary.py $P/decode_grid_trace.json 10 40; } \
  > "$OUT/h200_grid_decode_profile.txt" 2>&1
timeout 240 $B/bench/judgeq_bench_real_shape --config $cfg/config.json --mode speed --lengths 32768 --out $P \
  > $P/speed.log 2>&1; echo "speed: exit $?"; cp $P/judgeq_speed.json "$OUT/" 2>/dev/null; grep -v "^\[" $P/speed.log | tail -20
timeout 300 $B/bench/judgeq_bench_pipeline --config $cfg/config.json --mode grid --samples ${GRID_SAMPLES:-3} \
  --tokenizer .dev/data/tokenizers/llama3/tokenizer.model --data-root .dev/data --out "$OUT" > $P/grid.log 2>&1
echo "grid: exit $?"; grep "^grid" $P/grid.log; tail -3 $P/grid.log

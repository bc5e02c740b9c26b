#!/usr/bin/env bash
# On one H200: the testbed's Judge Q soft tokens (judgeq-train prepare + fit on chat-style prompts
# over filler text), a first results grid on RULER 4K, plus the CUDA-graph decoding and grid-engine
# benchmarks at the Llama-3.1-8B shape. Every stage has a time box and the whole script a deadline
# (DEADLINE seconds, default 540) so that what finished comes back in $OUT:
#   judgeq_decode.json, judgeq_pipeline_grid.json, soft.tar.gz (runs: logs + judgeq.safetensors),
#   results.tar.gz (judgeq-eval run folders), log.txt
# Carry .dev/root (Debian's libpcre2-dev unpacked), .dev/data (ruler/, niah/, tokenizers/llama3 from
# ../shared/data) and .dev/soft/{chats,val}.jsonl (scripts/softtokens/make_chat_data.py).
set -uo pipefail
OUT=${OUT:-out}; mkdir -p "$OUT"
source scripts/gpu_common.sh judgeq-eval judgeq-train judgeq_bench_real_shape judgeq_bench_pipeline || exit 1
cfg=$(mktemp -d); cp bench/configs/llama-3.1-8b.json $cfg/config.json
if stage 60 decode; then
  box 70 $B/bench/judgeq_bench_real_shape --config $cfg/config.json --mode decode --decode-context 32768 --decode-tokens 64 --out "$OUT" || echo "decode bench failed ($?)"
fi
if stage 80 grid; then
  box 100 $B/bench/judgeq_bench_pipeline --config $cfg/config.json --mode grid --samples 1 \
    --tokenizer .dev/data/tokenizers/llama3/tokenizer.model --data-root .dev/data --out "$OUT" || echo "grid bench failed ($?)"
  rm -f "$OUT/bench_soft.safetensors"
fi
TB=models/testbed; mkdir -p soft
if stage 150 prepare; then
  box 80 $B/judgeq-train prepare --model $TB --data .dev/soft/chats.jsonl --out soft/train.h5 --max-new-tokens 48 \
    --max-prompt-tokens 3000 --batch 64 --device cuda --dtype fp32 --log-every 200 || echo "prepare failed ($?)"
  box 20 $B/judgeq-train prepare --model $TB --data .dev/soft/val.jsonl --out soft/val.h5 --max-new-tokens 48 \
    --max-prompt-tokens 3000 --batch 64 --device cuda --dtype fp32 --quiet || echo "prepare val failed ($?)"
fi
fit() {  # S steps
  box 90 $B/judgeq-train fit --model $TB --train soft/train.h5 --val soft/val.h5 --soft-tokens $1 --steps $2 --batch 4 \
    --lr 0.01 --val-every 100 --val-samples 32 --checkpoint-every 100 --log-every 25 --device cuda --dtype fp32 --out soft/s$1 \
    || echo "fit S=$1 failed ($?)"
}
if [ -f soft/train.h5 ] && stage 100 fit S=32; then fit 32 200; fi
if [ -f soft/s32/judgeq.safetensors ] && stage 60 results; then
  box 150 $B/judgeq-eval run --model $TB --bench ruler --lengths 4096 --limit 5 --data-dir .dev/data \
    --methods full,streamingllm,h2o,snapkv,pyramidkv,laq,judgeq,oracle --budgets 64,128,256,512 \
    --soft-tokens soft/s32/judgeq.safetensors --device cuda --dtype fp32 --max-batch 32 --out res/ruler4k_paper || echo "results run stopped ($?)"
fi
if [ -f soft/s32/judgeq.safetensors ] && stage 40 nccl-world-1; then
  # The NCCL path with one process (torchrun's variables set by hand).
  JUDGEQ_DIST=1 RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=29517 \
    box 40 $B/judgeq-eval run --model $TB --bench ruler --tasks niah_single_1 --lengths 2048 --limit 2 --data-dir .dev/data \
    --methods full,snapkv --budgets 64 --device cuda --dtype fp32 --out res/nccl_world1 2>&1 | tail -3 || echo "nccl world-1 run failed"
fi
for S in 8 16 64; do
  if [ -f soft/train.h5 ] && stage 45 fit S=$S; then fit $S 200; fi
done
tar czf "$OUT/soft.tar.gz" soft --exclude='*.h5' --exclude='*.parts' 2>/dev/null
[ -d res ] && tar czf "$OUT/results.tar.gz" res
echo "total: $(( $(date +%s) - T0 )) s"

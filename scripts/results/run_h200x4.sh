#!/usr/bin/env bash
# On 4 H200s (device kind nvidia-h200-x4): the testbed's Judge Q soft tokens and the results runs of
# docs/results.md, each sharded over GPUs with torchrun (sample i on rank i % N, rank 0 merges; the
# tables equal one process's), plus the training-step benchmark at the Llama-3.1-8B shape.
# STAGES picks the parts (default: soft eval); DEADLINE (default 560 s) ends the script with what
# finished. A run cut by its time box leaves predictions.parts/ that a later --resume takes up.
#   soft        prepare + fit S = 32 (and 8/16/64 for the ablation), one GPU each
#   eval        RULER 4K paper protocol (LIMIT samples per task, default 100), NIAH, question placement
#               (QLIMIT, default 25), LongBench multi_news, the ablation runs, kvpress ratio budgets
#   final       GPU 0: the training-step benchmark, then question-first (QLIMIT); the other GPUs: RULER paper (LIMIT)
# PPG (default 1) evaluation processes share each GPU (JUDGEQ_PROCS_PER_GPU): the testbed's runs are
# bound by the host, so several processes per GPU multiply the samples per second.
# ONLY (run names, e.g. "ruler4k_paper ruler4k_qpos_question-first") limits the eval/final stages to
# those runs, each with the whole time left instead of its usual time box; RESUME=1 passes --resume
# (a run folder carried back in res/ continues where its time box cut it).
# Without `soft`, the soft tokens are models/testbed/judgeq.safetensors.
# Carry .dev/root (PCRE2), .dev/data (ruler/, niah/, longbench/) and .dev/soft/{chats,val}.jsonl.
# $OUT: soft.tar.gz (soft-token runs, without the .h5 sets), results.tar.gz (run folders), build.log,
# judgeq_pipeline_train.json (final).
set -uo pipefail
OUT=${OUT:-out}; mkdir -p "$OUT"
DEADLINE=${DEADLINE:-560}; PPG=${PPG:-1}; STAGES=${STAGES:-soft eval}; LIMIT=${LIMIT:-100}; QLIMIT=${QLIMIT:-25}  # KLIMIT: kvpress-ratio samples (default 20)
has() { [[ " $STAGES " == *" $1 "* ]]; }
targets="judgeq-eval judgeq-train"; has final && targets="$targets judgeq_bench_pipeline"
source scripts/gpu_common.sh $targets || exit 1
TB=models/testbed; mkdir -p soft res
N=$(nvidia-smi -L | wc -l); echo "GPUs: $N"
ALL=full,streamingllm,h2o,snapkv,pyramidkv,laq,judgeq,oracle
export JUDGEQ_DATA=.dev/data
ev() {  # BOX_S NAME ARGS...: one judgeq-eval run over the GPUs in $GPUS (default all) into res/NAME
  local s=$1 name=$2 t=$(date +%s) n; shift 2
  if [ -n "${ONLY:-}" ]; then [[ " $ONLY " == *" $name "* ]] || return 0; s=100000; fi
  stage 30 "eval $name" || return
  n=$(( $(echo "${GPUS:-$(seq -s, 0 $((N - 1)))}" | tr ',' '\n' | wc -l) * PPG ))
  local launch="torchrun --no-python --nproc-per-node $n --master-port $(( 29540 + RANDOM % 400 ))"
  (( n == 1 )) && launch=""
  JUDGEQ_PROCS_PER_GPU=$PPG CUDA_VISIBLE_DEVICES=${GPUS:-$(seq -s, 0 $((N - 1)))} box $s $launch $B/judgeq-eval run --model $TB --device cuda \
    --dtype fp32 --max-batch 32 --out res/$name ${RESUME:+--resume} "$@" >> res/$name.log 2>&1
  echo "eval $name: exit $?, $(( $(date +%s) - t )) s"; grep -E "^(Error|error)|run: " res/$name.log | head -3
}
J=$TB/judgeq.safetensors
if has soft; then
  if stage 120 prepare; then
    box 90 $B/judgeq-train prepare --model $TB --data .dev/soft/chats.jsonl --out soft/train.h5 --max-new-tokens 48 \
      --max-prompt-tokens 3000 --batch 64 --device cuda --dtype fp32 --log-every 400 | tail -2
    box 30 $B/judgeq-train prepare --model $TB --data .dev/soft/val.jsonl --out soft/val.h5 --max-new-tokens 48 \
      --max-prompt-tokens 3000 --batch 64 --device cuda --dtype fp32 --quiet
  fi
  if [ -f soft/train.h5 ] && stage 100 fit; then
    i=0
    for S in 32 8 16 64; do
      CUDA_VISIBLE_DEVICES=$(( i % N )) box 120 $B/judgeq-train fit --model $TB --train soft/train.h5 --val soft/val.h5 \
        --soft-tokens $S --steps 200 --batch 4 --lr 0.01 --val-every 100 --val-samples 32 --checkpoint-every 100 \
        --log-every 25 --device cuda --dtype fp32 --out soft/s$S > soft/fit_s$S.txt 2>&1 &
      i=$(( i + 1 ))
    done
    wait; for S in 32 8 16 64; do tail -n 2 soft/fit_s$S.txt; done
  fi
  J=soft/s32/judgeq.safetensors
fi
if has final; then
  cfg=$(mktemp -d); cp bench/configs/llama-3.1-8b.json $cfg/config.json
  ( stage 60 train bench && CUDA_VISIBLE_DEVICES=0 box 110 $B/bench/judgeq_bench_pipeline --config $cfg/config.json \
      --mode train --lengths 8192,32768 --reps 4 --out "$OUT" > res/train_bench.log 2>&1
    echo "train bench: exit $?"; grep "^train" res/train_bench.log
    GPUS=0 ev 600 ruler4k_qpos_question-first --bench ruler --lengths 4096 --limit $QLIMIT --data-dir .dev/data \
      --methods $ALL --budgets 64,128,256,512 --soft-tokens $J --protocol question-first ) &
  GPUS=$(seq -s, 1 $((N - 1))) ev 600 ruler4k_paper --bench ruler --lengths 4096 --limit $LIMIT --data-dir .dev/data --methods $ALL \
    --budgets 64,128,256,512 --soft-tokens $J
  wait
fi
if has eval && [ -f $J ]; then
  ev 230 ruler4k_paper --bench ruler --lengths 4096 --limit $LIMIT --data-dir .dev/data --methods $ALL \
    --budgets 64,128,256,512 --soft-tokens $J
  ev 60 niah_paper --bench niah --lengths 1024,2048,3072,4096 --data-dir .dev/data --methods $ALL --budgets 64,128,256 \
    --soft-tokens $J
  for P in question-first kvpress; do
    ev 60 ruler4k_qpos_$P --bench ruler --lengths 4096 --limit $QLIMIT --data-dir .dev/data --methods $ALL \
      --budgets 64,128,256,512 --soft-tokens $J --protocol $P
  done
  ev 60 longbench_multi_news --bench longbench --tasks multi_news --limit 20 --data-dir .dev/data/longbench/data \
    --methods $ALL --budgets 128,256,512 --soft-tokens $J
  for S in 8 16 64; do
    [ -f soft/s$S/judgeq.safetensors ] || continue
    ev 40 ablation_s$S --bench ruler --lengths 4096 --limit 20 --data-dir .dev/data --methods judgeq \
      --budgets 64,128,256,512 --soft-tokens soft/s$S/judgeq.safetensors
    ev 30 niah_ablation_s$S --bench niah --lengths 1024,2048,3072,4096 --data-dir .dev/data --methods full,judgeq \
      --budgets 64,128,256 --soft-tokens soft/s$S/judgeq.safetensors
  done
  ev 60 ruler4k_kvpress_ratio --bench ruler --lengths 4096 --limit ${KLIMIT:-20} --data-dir .dev/data --methods $ALL \
    --budgets cr0.5,cr0.75,cr0.9 --soft-tokens $J --protocol kvpress
fi
has soft && tar czf "$OUT/soft.tar.gz" soft --exclude='*.h5' --exclude='*.parts' 2>/dev/null
tar czf "$OUT/results.tar.gz" res
echo "total: $(( $(date +%s) - T0 )) s"

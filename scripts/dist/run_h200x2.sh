#!/usr/bin/env bash
# On a machine with 2 H200s (device kind nvidia-h200-x2): data-parallel judgeq-train fit and sharded
# judgeq-eval under torchrun with NCCL, each next to the same job in one process.
#   1. testbed: prepare its chat training set, then fit S=32 soft tokens at 1 and 2 GPUs on the same
#      global batch: samples/s and the difference between the two runs' soft tokens;
#   2. Llama-3.1-8B shape (seeded random bf16 weights saved as a checkpoint folder, Llama-3
#      tokenizer): prepare 64 chats, fit at 1 and 2 GPUs: samples/s;
#   3. testbed RULER 4K evaluation at 1 and 2 GPUs: both metrics.json and results.md come back.
# STAGES (default "testbed l8b eval") picks the parts. Carry .dev/root, .dev/data (ruler/, tokenizers/llama3) and .dev/soft/chats.jsonl. Results: $OUT/
# (log lines, dist_scaling.json, eval_w{1,2}_{metrics.json,results.md}).
set -uo pipefail
OUT=${OUT:-out}; mkdir -p "$OUT"
DEADLINE=${DEADLINE:-570}
STAGES=${STAGES:-testbed l8b eval}
has() { [[ " $STAGES " == *" $1 "* ]]; }
source scripts/gpu_common.sh judgeq-eval judgeq-train judgeq_bench_real_shape || exit 1
export NCCL_NVLS_ENABLE=0
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader
TB=models/testbed; W=$(mktemp -d)
on() {  # N: the launcher prefix for N processes
  if [ "$1" = 1 ]; then echo ""; else echo "torchrun --no-python --nproc-per-node $1 --master-port 2953$1"; fi
}

if has testbed && stage 60 testbed prepare; then
  box 90 $B/judgeq-train prepare --model $TB --data .dev/soft/chats.jsonl --out $W/tb.h5 --max-new-tokens 48 \
    --max-prompt-tokens 3000 --batch 64 --device cuda --dtype fp32 --log-every 400
  echo "prepare exit code: $?"; ls $W
fi
fit_pair() {  # tag model h5 dtype steps batch
  local tag=$1 model=$2 h5=$3 dtype=$4 steps=$5 batch=$6
  for w in 1 2; do
    stage 40 "$tag fit, $w GPU(s)" || return
    box 150 $(on $w) $B/judgeq-train fit --model $model --train $h5 --soft-tokens 32 --steps $steps --batch $batch --lr 0.01 \
      --log-every 10 --checkpoint-every 1000 --device cuda --dtype $dtype --out $W/${tag}_w$w 2>&1 | tail -6
  done
}
[ -f $W/tb.h5 ] && fit_pair testbed $TB $W/tb.h5 fp32 60 8

if has l8b && stage 200 8B checkpoint; then
  M=$W/l8b; mkdir -p $M; cp bench/configs/llama-3.1-8b.json $W/l8b_config.json
  box 120 $B/bench/judgeq_bench_real_shape --config $W/l8b_config.json --mode save --out $M && \
    cp .dev/data/tokenizers/llama3/tokenizer.model $M/ && du -sh $M
  head -64 .dev/soft/chats.jsonl > $W/chats64.jsonl
  box 120 $B/judgeq-train prepare --model $M --data $W/chats64.jsonl --out $W/l8b.h5 --max-new-tokens 32 \
    --chat-template llama3 --batch 16 --device cuda --dtype bf16 --quiet
  echo "8B prepare exit code: $?"
  [ -f $W/l8b.h5 ] && fit_pair llama8b $M $W/l8b.h5 bf16 8 16
fi

evalrun() {  # world out
  box 150 $(on $1) $B/judgeq-eval run --model $TB --bench ruler --lengths 4096 --tasks niah_single_1,niah_multikey_1,niah_multivalue,vt \
    --limit 8 --data-dir .dev/data --methods full,streamingllm,snapkv,h2o,judgeq --budgets 64,256 \
    --soft-tokens $TB/judgeq.safetensors --device cuda --dtype fp32 --max-batch 16 --out $2 2>&1 | tail -3
}
for w in 1 2; do
  if has eval && stage 60 "eval, $w GPU(s)"; then evalrun $w $W/eval_w$w; cp $W/eval_w$w/metrics.json "$OUT/eval_w${w}_metrics.json"; cp $W/eval_w$w/results.md "$OUT/eval_w${w}_results.md"; fi
done

python3 - "$W" "$OUT/dist_scaling.json" <<'PY'
import json, sys, os
from safetensors.torch import load_file
W, out = sys.argv[1], sys.argv[2]
res = {}
for tag in ("testbed", "llama8b"):
    r = {}
    for w in (1, 2):
        p = f"{W}/{tag}_w{w}/log.jsonl"
        if not os.path.exists(p): continue
        recs = [json.loads(l) for l in open(p) if '"train"' in l]
        steady = recs[2:] or recs
        r[f"w{w}"] = {"steps": len(recs), "samples_per_s": sum(x["samples_per_s"] for x in steady) / len(steady),
                      "step_s": sum(x["step_s"] for x in steady) / len(steady), "final_loss": recs[-1]["loss"]}
    try:
        a, b = (load_file(f"{W}/{tag}_w{w}/judgeq.safetensors") for w in (1, 2))
        k = next(iter(a)); d = (a[k].float() - b[k].float()).abs()
        r["soft_tokens_max_abs_diff"] = d.max().item(); r["soft_tokens_max_abs"] = a[k].abs().max().item()
    except Exception as e:
        r["soft_tokens_compare"] = str(e)
    if "w1" in r and "w2" in r: r["speedup"] = r["w2"]["samples_per_s"] / r["w1"]["samples_per_s"]
    res[tag] = r
json.dump(res, open(out, "w"), indent=1); print(json.dumps(res, indent=1))
PY
echo "total: $(( $(date +%s) - T0 )) s"

#!/usr/bin/env bash
# One H200 call: a continuation run from the committed weights (recipe v4, see README.md "Runs") and,
# on the same machine, the C++ evaluator's check of the new weights (fp32 on the GPU; the model card's
# reference numbers are then re-measured on CPU). judgeq-eval builds on the CPU cores while the GPU trains.
# Carry: .testbed_carry/{filler_tok.npz,words.json,eval}, .dev/root (PCRE2), .dev/data (ruler/, niah/).
# $OUT gets the 7 files of run_on_h200.sh plus check.tar.gz (the judgeq-eval run folders).
set -uo pipefail
OUT=${OUT:-out/testbed}; mkdir -p "$OUT"
(mkdir -p /tmp/tb_build && cd "$(pwd)" && OUT=/tmp/tb_build nice -n 5 bash -c 'source scripts/gpu_common.sh judgeq-eval') \
  >/tmp/tb_build.txt 2>&1 &
bpid=$!
TESTBED_TOTAL=${TESTBED_TOTAL:-400} TESTBED_TIMEOUT=${TESTBED_TIMEOUT:-420} bash scripts/testbed/run_on_h200.sh \
  --init models/testbed --recipe v4 --phase-fracs 0,0.15 --lr 4e-4 --warmup 100 --min-lr-frac 0.25 --skip-smoke "$@"
wait $bpid; cat /tmp/tb_build.txt
M=/tmp/tb_new; mkdir -p $M
cp models/testbed/tokenizer.model "$OUT/config.json" "$OUT/generation_config.json" $M/
cat $(ls "$OUT"/model.safetensors.part* | sort -V) > $M/model.safetensors
E=build-gpu/judgeq-eval; echo '{"hit_rate": false}' > /tmp/nohit.json
common=(--model $M --device cuda --dtype fp32 --data-dir .dev/data)
$E run --config /tmp/nohit.json "${common[@]}" --bench ruler --tasks niah_single_2 --lengths 4096 --limit 100 --methods full \
  --out res/s2_100 && cat res/s2_100/results.md
$E run --config /tmp/nohit.json "${common[@]}" --bench ruler --lengths 4096 --limit 25 --methods full,snapkv --budgets 128 \
  --tasks niah_single_1,niah_single_2,niah_multikey_1,niah_multivalue,niah_multiquery,vt --out res/ruler25 && cat res/ruler25/results.md
$E run --config /tmp/nohit.json "${common[@]}" --bench niah --lengths 1000,2000,3000,4000 --depths 0,25,50,75,100 \
  --methods full --out res/niah && cat res/niah/results.md
tar czf "$OUT/check.tar.gz" res

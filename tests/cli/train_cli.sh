#!/usr/bin/env bash
# judgeq-train end to end on stories260K (prepare -> fit -> resume -> export), and on bad input:
# one line "error: ..." naming the problem, exit code 1, nothing half-written.
set -u
BUILD=$1
TRAIN=$BUILD/judgeq-train
MODEL=tests/fixtures/stories260K
TINY=tests/fixtures/hf/tiny-llama31
. "$(dirname "$0")/harness.inc"


cat >"$TMP/data.jsonl" <<'EOF'
{"prompt": "Once upon a time, there was a little girl named Lily. She loved to play outside."}
{"conversations": [{"from": "human", "value": "Tom had a big red ball. One day he went to the park."}, {"from": "gpt", "value": "ok"}]}
{"prompt": "The cat sat on the mat and
{"prompt": "Sam and Mia were friends. They liked to build towers with blocks."}
{"prompt": "One day, a little dog found a bone in the garden. He was very happy."}
EOF

# prepare: the malformed line 3 is a warning with its line number, the rest is written.
$TRAIN prepare --model $MODEL --data "$TMP/data.jsonl" --out "$TMP/train.h5" --max-new-tokens 16 --batch 2 \
  >"$TMP/out" 2>"$TMP/err" || fail "prepare exited $?: $(cat "$TMP/err")"
grep -q "warning: .*data.jsonl:3" "$TMP/err" || fail "no warning naming line 3: $(cat "$TMP/err")"
grep -q "4 samples from 5 lines; skipped 1 malformed" "$TMP/out" || fail "prepare summary: $(cat "$TMP/out")"
[ -f "$TMP/train.h5" ] && [ ! -e "$TMP/train.h5.parts" ] || fail "prepare output missing or parts left behind"

# --strict: an error naming the line, and no output.
expect_error "data.jsonl:3" $TRAIN prepare --model $MODEL --data "$TMP/data.jsonl" --out "$TMP/strict.h5" --strict
[ ! -e "$TMP/strict.h5" ] && [ ! -e "$TMP/strict.h5.parts" ] || fail "--strict left a file behind"
expect_error "max-prompt-tokens.*max_position_embeddings" \
  $TRAIN prepare --model $MODEL --data "$TMP/data.jsonl" --out "$TMP/long.h5" --max-prompt-tokens 5000
expect_error "cannot read the data file" $TRAIN prepare --model $MODEL --data "$TMP/none.jsonl" --out "$TMP/x.h5"
expect_error "unknown\|chat template" $TRAIN prepare --model $MODEL --data "$TMP/data.jsonl" --out "$TMP/x.h5" --chat-template chatml
[ ! -e "$TMP/long.h5" ] && [ ! -e "$TMP/x.h5" ] || fail "a failed prepare left a file behind"

# fit with a --config file under the flags; the resolved config is saved.
echo '{"soft_tokens": 4, "steps": 6, "lr": 0.5, "warmup_steps": 1, "checkpoint_every": 2}' >"$TMP/cfg.json"
$TRAIN fit --model $MODEL --train "$TMP/train.h5" --config "$TMP/cfg.json" --lr 0.01 --out "$TMP/run" \
  >"$TMP/out" 2>"$TMP/err" || fail "fit exited $?: $(cat "$TMP/err")"
grep -q "^step 6/6 | loss" "$TMP/out" || fail "no step lines: $(head -c 600 "$TMP/out")"
for f in config.json log.jsonl checkpoint.safetensors judgeq.safetensors; do
  [ -f "$TMP/run/$f" ] || fail "fit did not write $f"
done
grep -q '"lr": 0.01' "$TMP/run/config.json" || fail "flag did not override --config: $(grep lr "$TMP/run/config.json")"
grep -q '"soft_tokens": 4' "$TMP/run/config.json" || fail "--config not applied"
[ "$(wc -l <"$TMP/run/log.jsonl")" -eq 6 ] || fail "log.jsonl should hold 6 records"

# export writes the same file as the run's own export.
$TRAIN export --checkpoint "$TMP/run" --out "$TMP/e.safetensors" >/dev/null || fail "export failed"
cmp -s "$TMP/e.safetensors" "$TMP/run/judgeq.safetensors" || fail "export differs from the run's judgeq.safetensors"

# Runs and resumes that must be refused, leaving the run untouched.
cp "$TMP/run/checkpoint.safetensors" "$TMP/ckpt.bak"
expect_error "already holds a training run" $TRAIN fit --model $MODEL --train "$TMP/train.h5" --config "$TMP/cfg.json" --out "$TMP/run"
expect_error "another config" $TRAIN fit --model $MODEL --train "$TMP/train.h5" --config "$TMP/cfg.json" --out "$TMP/run" --resume --soft-tokens 8
expect_error "made with another model" $TRAIN fit --model $TINY --train "$TMP/train.h5" --out "$TMP/run" --resume
expect_error "unknown config key" $TRAIN fit --model $MODEL --train "$TMP/train.h5" --out "$TMP/run2" --config <(echo '{"learning_rate": 1}')
expect_error "training set not found" $TRAIN fit --model $MODEL --train "$TMP/none.h5" --out "$TMP/run3"
expect_error "no checkpoint" $TRAIN export --checkpoint "$TMP/run3" --out "$TMP/e3.safetensors"
cmp -s "$TMP/ckpt.bak" "$TMP/run/checkpoint.safetensors" || fail "a refused resume changed the checkpoint"
[ ! -e "$TMP/run2" ] && [ ! -e "$TMP/run3" ] && [ ! -e "$TMP/e3.safetensors" ] || fail "a failed command left files behind"

# The llama2.c converter is still there.
$TRAIN convert-llama2c --help >/dev/null || fail "convert-llama2c is gone"

# A crash (a bug, never bad input) names the signal and the faulting code, and the process still
# dies of that signal (exit 139): SIGSEGV sent to a long fit once it is training.
$TRAIN fit --model $MODEL --train "$TMP/train.h5" --soft-tokens 4 --steps 1000000 --checkpoint-every 1000000 \
  --out "$TMP/crash" >/dev/null 2>"$TMP/crash_err" &
pid=$!
for _ in $(seq 100); do [ -s "$TMP/crash/log.jsonl" ] && break; sleep 0.2; done
kill -SEGV $pid
wait $pid
rc=$?
[ $rc -eq 139 ] || fail "crashed fit exited $rc, wanted 139"
grep -q "^error: internal crash (segmentation fault); please report it" "$TMP/crash_err" || fail "no crash line: $(head -c 400 "$TMP/crash_err")"
grep -q "^code address " "$TMP/crash_err" || fail "no faulting code address: $(head -c 400 "$TMP/crash_err")"

if [ $fails -ne 0 ]; then echo "$fails failure(s)"; exit 1; fi
echo "all judgeq-train CLI checks passed"

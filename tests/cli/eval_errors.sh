#!/usr/bin/env bash
# judgeq-eval on bad input: one line "error: ..." naming the problem, exit code 1, no crash, and
# nothing half-written.
set -u
BUILD=$1
SHARED=$2
EVAL=$BUILD/judgeq-eval
MODEL=tests/fixtures/stories260K
. "$(dirname "$0")/harness.inc"


expect_error "does not exist" $EVAL generate --model "$TMP/nope" --prompt-ids '[1,2]'
expect_error "missing config.json" $EVAL generate --model "$TMP" --prompt-ids '[1,2]'
expect_error "not valid JSON" $EVAL generate --model $MODEL --prompt-ids '[1,2'
expect_error "out of range" $EVAL generate --model $MODEL --prompt-ids '[1,99999]'
expect_error "unknown method 'snapk'.*snapkv" $EVAL generate --model $MODEL --prompt-ids '[1,2,3]' --method snapk --budget 8
expect_error "smaller than\|fewer than" $EVAL generate --model $MODEL --prompt-ids "[$(seq -s, 1 80)]" --method snapkv --budget 16
expect_error "needs its soft tokens" $EVAL generate --model $MODEL --prompt-ids '[1,2,3]' --method judgeq --budget 64
expect_error "bad budget" $EVAL generate --model $MODEL --prompt-ids '[1,2,3]' --method snapkv --budget lots
expect_error "cannot read\|not found\|no tokenizer" $EVAL tokenize --tokenizer "$TMP/none.model" --text hi
expect_error "unknown bench" $EVAL run --model $MODEL --bench rulerr --out "$TMP/r1" --data-dir "$SHARED/data"
expect_error "beyond the model's maximum position" $EVAL run --model $MODEL --bench ruler --tasks niah_single_1 --lengths 100000 --limit 1 --out "$TMP/r2" --data-dir "$SHARED/data"
expect_error "bad context length" $EVAL run --model $MODEL --bench ruler --tasks niah_single_1 --lengths 0 --limit 1 --out "$TMP/r5" --data-dir "$SHARED/data"
expect_error "use --depths between 0 and 100" $EVAL run --model $MODEL --bench niah --depths 150 --lengths 256 --limit 1 --out "$TMP/r6" --data-dir "$SHARED/data"
expect_error "unknown RULER task" $EVAL run --model $MODEL --bench ruler --tasks niah_single_9 --lengths 256 --limit 1 --out "$TMP/r3" --data-dir "$SHARED/data"
expect_error "smaller than the 32" $EVAL run --model $MODEL --bench ruler --methods snapkv --budgets 16 --lengths 256 --out "$TMP/r4" --data-dir "$SHARED/data"
expect_error "predictions.jsonl" $EVAL report "$TMP/empty_run"
# Nothing half-written: failed runs leave no predictions.
for d in r1 r2 r3 r4 r5 r6; do
  if [ -s "$TMP/$d/predictions.jsonl" ]; then echo "FAIL: $d left predictions behind"; fails=$((fails + 1)); fi
done
# Usage errors are CLI11's (exit code != 0), never a crash.
$EVAL generate --max-new-tokens 3 >/dev/null 2>&1; rc=$?
if [ $rc -eq 0 ] || [ $rc -gt 128 ]; then echo "FAIL: missing --model gave rc $rc"; fails=$((fails + 1)); fi
[ $fails -eq 0 ] && echo "all CLI error cases passed"
exit $fails

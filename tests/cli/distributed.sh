#!/usr/bin/env bash
# Multi-process runs as torchrun starts them (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT
# per process), on CPU with Gloo:
#   - judgeq-train fit on 2 processes ends at the soft embeddings of 1 process on the same global
#     batch (within 1e-5 relative), and a run stopped on 2 processes resumes on 1 (and back);
#   - judgeq-eval run on 2 processes merges into the files 1 process writes, and parts left by an
#     interrupted sharded run are taken up by a --resume on any number of processes;
#   - a bad launch environment is one "error: ..." line.
# Exit code 77 (ctest: skipped) when the build has no process-group backend.
set -u
BUILD=$1
SHARED=$2
TRAIN=$BUILD/judgeq-train
EVAL=$BUILD/judgeq-eval
MODEL=tests/fixtures/stories260K
. "$(dirname "$0")/harness.inc"
unset RANK WORLD_SIZE LOCAL_RANK MASTER_ADDR MASTER_PORT JUDGEQ_DIST TORCHELASTIC_USE_AGENT_STORE


# The float32 values of a safetensors file's data section, one per line.
floats() {
  local n
  n=$(od -A n -t u8 -N 8 "$1" | tr -d ' ')
  od -A n -v -t f4 -j $((8 + n)) "$1" | tr -s ' ' '\n' | grep -v '^$'
}

# close A B: the same number of values, none further apart than 1e-5 of the largest magnitude
# (sums over ranks run in another order, and Adam magnifies that in its smallest entries).
close() {
  [ -f "$1" ] && [ -f "$2" ] || { fail "missing $1 or $2"; return; }
  paste <(floats "$1") <(floats "$2") | awk -v what="$1 vs $2" '
    NF != 2 { bad = 1 }
    { n++; d = $1 - $2; if (d < 0) d = -d; a = $1 < 0 ? -$1 : $1; if (a > top) top = a; if (d > worst) worst = d }
    END { if (bad || n < 4 || worst > 1e-5 * top) { printf "FAIL: %s: %d values, largest difference %g (largest value %g)\n", what, n, worst, top; exit 1 } }' ||
    fails=$((fails + 1))
}

# A port nothing listens on (the rendezvous store's), from the pid and bash's RANDOM.
pick_port() {
  local p
  for _ in $(seq 20); do
    p=$((20000 + (RANDOM * 32768 + RANDOM + $$) % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
  echo 29500
}

# run2 NAME cmd...: cmd as ranks 0 and 1 of a 2-process run, as torchrun starts them; logs in
# $TMP/NAME.r{0,1}.{out,err}. When one rank fails the other is stopped; a taken port is retried.
run2() {
  local name=$1; shift
  local attempt port r st
  for attempt in 1 2 3; do
    port=$(pick_port)
    local pids=()
    for r in 0 1; do
      RANK=$r LOCAL_RANK=$r WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port JUDGEQ_DIST_TIMEOUT_S=120 \
        timeout 300 "$@" >"$TMP/$name.r$r.out" 2>"$TMP/$name.r$r.err" &
      pids+=($!)
    done
    local rc=0
    for _ in 0 1; do
      wait -n
      st=$?
      if [ $st -ne 0 ] && [ $rc -eq 0 ]; then
        rc=$st
        kill "${pids[@]}" 2>/dev/null
      fi
    done
    [ $rc -eq 0 ] && return 0
    grep -qi "address already in use" "$TMP/$name".r*.err || break
  done
  fail "$name: the 2-process run failed (rc $rc): $(head -c 400 "$TMP/$name.r0.err") $(head -c 400 "$TMP/$name.r1.err")"
  return 1
}

cat >"$TMP/data.jsonl" <<'EOF'
{"prompt": "Once upon a time, there was a little girl named Lily. She loved to play outside."}
{"prompt": "Tom had a big red ball. One day he went to the park."}
{"prompt": "Sam and Mia were friends. They liked to build towers with blocks."}
{"prompt": "One day, a little dog found a bone in the garden. He was very happy."}
{"prompt": "The sun was hot. Ben wanted to swim in the lake with his dad and his sister."}
EOF
$TRAIN prepare --model $MODEL --data "$TMP/data.jsonl" --out "$TMP/train.h5" --max-new-tokens 16 --batch 2 \
  >"$TMP/out" 2>"$TMP/err" || { cat "$TMP/err"; exit 1; }
# 5 samples, global batch 3 (ranks take 2 and 1), 6 steps: the epoch (and its shuffle) changes
# inside batches.
FIT1=(fit --model $MODEL --train "$TMP/train.h5" --soft-tokens 4 --batch 3 --lr 0.05 --warmup-steps 1
      --checkpoint-every 2 --device cpu)
FIT=("${FIT1[@]}" --steps 6)
EVAL_ARGS=(run --model $MODEL --bench ruler --tasks niah_single_1,niah_single_2 --lengths 512 --limit 3
           --methods full,snapkv,streamingllm --budgets 64,128 --method-options '{"snapkv":{"window":16}}'
           --data-dir "$SHARED/data" --device cpu)

# ---- a bad launch environment: one line, before anything is written --------------------------
expect_error "MASTER_ADDR is not set" env RANK=1 WORLD_SIZE=2 $TRAIN "${FIT[@]}" --out "$TMP/bad1"
expect_error "MASTER_PORT is not set" env RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 $TRAIN "${FIT[@]}" --out "$TMP/bad2"
expect_error "RANK must be below WORLD_SIZE" env RANK=2 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29500 \
  $TRAIN "${FIT[@]}" --out "$TMP/bad3"
expect_error "bad WORLD_SIZE" env RANK=0 WORLD_SIZE=two $TRAIN "${FIT[@]}" --out "$TMP/bad4"
expect_error "RANK is not set" env WORLD_SIZE=2 $EVAL "${EVAL_ARGS[@]}" --out "$TMP/bad5"
expect_error "MASTER_ADDR is not set" env RANK=1 WORLD_SIZE=2 $EVAL "${EVAL_ARGS[@]}" --out "$TMP/bad6"
for d in bad1 bad2 bad3 bad4; do [ ! -e "$TMP/$d" ] || fail "a refused launch wrote $d"; done
[ ! -e "$TMP/bad5/predictions.jsonl" ] && [ ! -e "$TMP/bad6/predictions.jsonl" ] || fail "a refused eval wrote predictions"
# RANK/WORLD_SIZE of a 1-process torchrun need no rendezvous.
env RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 $TRAIN "${FIT1[@]}" --steps 1 --quiet --out "$TMP/one" >/dev/null 2>"$TMP/err" ||
  fail "a 1-process launch failed: $(cat "$TMP/err")"

if ! grep -q "^JUDGEQ_GLOO_INCLUDE_DIR:PATH=/" "$BUILD/CMakeCache.txt"; then
  echo "skipped: this build has no Gloo process groups (install libgloo-dev and reconfigure)"
  [ $fails -eq 0 ] && exit 77
  exit 1
fi

# ---- fit: 2 processes = 1 process ------------------------------------------------------------
$TRAIN "${FIT[@]}" --out "$TMP/single" >"$TMP/single.out" 2>&1 || fail "single fit: $(tail -3 "$TMP/single.out")"
if run2 fit2 $TRAIN "${FIT[@]}" --out "$TMP/dist"; then
  close "$TMP/single/judgeq.safetensors" "$TMP/dist/judgeq.safetensors"
  [ "$(wc -l <"$TMP/dist/log.jsonl")" -eq 6 ] || fail "the 2-process log.jsonl should hold 6 records"
  grep -q '"world_size": 2' "$TMP/dist/config.json" || fail "config.json does not record world_size 2"
  grep -q "^step 6/6" "$TMP/fit2.r0.out" || fail "rank 0 printed no step lines"
  [ ! -s "$TMP/fit2.r1.out" ] || fail "rank 1 printed: $(head -3 "$TMP/fit2.r1.out")"
  # The losses of every step agree too.
  paste -d' ' <(grep -o '"loss":[^,]*' "$TMP/single/log.jsonl" | cut -d: -f2) \
              <(grep -o '"loss":[^,]*' "$TMP/dist/log.jsonl" | cut -d: -f2) |
    awk '{ d = $1 - $2; if (d < 0) d = -d; if (d > 1e-5 * ($1 < 0 ? -$1 : $1) + 1e-9) bad++ } END { exit bad > 0 }' ||
    fail "per-step losses differ: $(paste "$TMP/single/log.jsonl" "$TMP/dist/log.jsonl" | head -c 600)"
fi
expect_error "batch must be at least the number of processes" env RANK=0 WORLD_SIZE=4 MASTER_ADDR=127.0.0.1 \
  MASTER_PORT=29500 $TRAIN "${FIT[@]}" --out "$TMP/bad7"

# ---- resume across world sizes ---------------------------------------------------------------
# 2 processes stop after 3 steps (checkpoint in global-batch units), 1 process finishes.
if run2 stop2 $TRAIN "${FIT[@]}" --out "$TMP/r21" --stop-after 3; then
  [ ! -e "$TMP/r21/judgeq.safetensors" ] || fail "a run stopped by --stop-after exported"
  $TRAIN "${FIT[@]}" --out "$TMP/r21" --resume >"$TMP/out" 2>&1 || fail "1-process resume: $(tail -3 "$TMP/out")"
  grep -q "resuming .* at step 3/6" "$TMP/out" || fail "1-process resume did not start at step 3: $(head -c 300 "$TMP/out")"
  close "$TMP/single/judgeq.safetensors" "$TMP/r21/judgeq.safetensors"
  [ "$(wc -l <"$TMP/r21/log.jsonl")" -eq 6 ] || fail "the resumed log.jsonl should hold 6 records"
fi
# 1 process stops after 2 steps, 2 processes finish.
$TRAIN "${FIT[@]}" --out "$TMP/r12" --stop-after 2 >"$TMP/out" 2>&1 || fail "1-process stop: $(tail -3 "$TMP/out")"
if run2 resume2 $TRAIN "${FIT[@]}" --out "$TMP/r12" --resume; then
  close "$TMP/single/judgeq.safetensors" "$TMP/r12/judgeq.safetensors"
fi

# ---- eval: 2 processes = 1 process -----------------------------------------------------------
$EVAL "${EVAL_ARGS[@]}" --out "$TMP/e1" >"$TMP/e1.out" 2>&1 || fail "single eval: $(tail -3 "$TMP/e1.out")"
n_pred=$(wc -l <"$TMP/e1/predictions.jsonl")
[ "$n_pred" -eq 30 ] || fail "single eval wrote $n_pred predictions (expected 6 samples x 5 variants)"
same_tables() {  # same_tables DIR: DIR's tables are the single-process run's
  local f
  for f in predictions.jsonl metrics.json results.md results.csv; do
    cmp -s "$TMP/e1/$f" "$1/$f" || fail "$1/$f differs from the 1-process run's"
  done
  [ ! -e "$1/predictions.parts" ] || fail "$1/predictions.parts left behind"
}
# scripts/results/summarise.py (docs/results.md's same-sample tables) agrees with metrics.json: per
# method and budget, the mean over tasks of the task scores and hit rates; --first 1 keeps sample 0
# of each task; predictions.jsonl.gz reads the same; --drop-empty with nothing empty changes nothing;
# a folder without predictions is one error line.
SUMMARISE="$(cd "$(dirname "$0")/../.." && pwd)/scripts/results/summarise.py"
python3 - "$SUMMARISE" "$TMP/e1" <<'PY' || fail "summarise.py disagrees with metrics.json"
import gzip, json, subprocess, sys, tempfile
script, run = sys.argv[1:]
def table(*extra, where=run):
    out = subprocess.run([sys.executable, script, where, *extra], capture_output=True, text=True, check=True).stdout
    head, rows = out.splitlines()[0], [l for l in out.splitlines() if l.startswith("| ") and not l.startswith("| method")]
    budgets = next(l for l in out.splitlines() if l.startswith("| method")).strip("| ").split(" | ")[1:]
    cells = {}
    for r in rows:
        f = [x.strip() for x in r.strip("|").split("|")]
        for b, c in zip(budgets, f[1:]):
            cells[(f[0], b)] = [float(x) for x in c.split(" / ")]
    return head, cells
head, cells = table()
groups = json.load(open(f"{run}/metrics.json"))["groups"]
assert head.endswith("6 samples; score / hit rate vs the oracle"), head
for (m, b), got in cells.items():
    g = [x for x in groups if x["method"] == m and x["budget"] == (b if m != "full" else "full")]
    assert len(g) == 2, (m, b, len(g))
    want = [sum(x["score"] for x in g) / 2] + ([sum(x["hit_rate"] for x in g) / 2] if m != "full" else [])
    assert all(abs(u - v) < 0.006 for u, v in zip(got, want)), (m, b, got, want)
assert len(cells) == 3 * 2, sorted(cells)
head1, _ = table("--first", "1")
assert head1.endswith("2 samples; score / hit rate vs the oracle"), head1
gz = tempfile.mkdtemp()
with open(f"{run}/predictions.jsonl", "rb") as f, gzip.open(f"{gz}/predictions.jsonl.gz", "wb") as g:
    g.write(f.read())
assert table(where=gz)[1] == cells, "predictions.jsonl.gz reads differently"
out = subprocess.run([sys.executable, script, run, "--drop-empty"], capture_output=True, text=True, check=True).stdout
assert "empty predictions left out: none" in out, out
assert table("--drop-empty")[1] == cells
# An empty prediction is left out and counted: the first full-KV line of a copy, emptied.
emptied = tempfile.mkdtemp()
lines = open(f"{run}/predictions.jsonl").read().splitlines()
i = next(n for n, l in enumerate(lines) if json.loads(l)["method"] == "full")
r = json.loads(lines[i]); r["prediction"] = ""; lines[i] = json.dumps(r)
open(f"{emptied}/predictions.jsonl", "w").write("\n".join(lines) + "\n")
out = subprocess.run([sys.executable, script, emptied, "--drop-empty"], capture_output=True, text=True, check=True).stdout
assert "empty predictions left out: full 1" in out, out
PY
python3 "$SUMMARISE" "$TMP/no_such_run" >"$TMP/out" 2>"$TMP/err"
[ $? -ne 0 ] && [ "$(wc -l <"$TMP/err")" -eq 1 ] && grep -q "^error: cannot summarise" "$TMP/err" \
  || fail "summarise.py on a missing folder: $(cat "$TMP/err")"
if run2 eval2 $EVAL "${EVAL_ARGS[@]}" --out "$TMP/e2"; then
  same_tables "$TMP/e2"
fi

# ---- eval: parts of an interrupted sharded run ----------------------------------------------
# Made by hand: ranks 0 and 3 of an earlier 4-process run finished some samples, one line is cut.
mkdir -p "$TMP/e3/predictions.parts"
sed -n '16,30p' "$TMP/e1/predictions.jsonl" >"$TMP/e3/predictions.parts/rank0.jsonl"
sed -n '1,7p' "$TMP/e1/predictions.jsonl" >"$TMP/e3/predictions.parts/rank3.jsonl"
sed -n '8p' "$TMP/e1/predictions.jsonl" | head -c 50 >>"$TMP/e3/predictions.parts/rank3.jsonl"
cp -r "$TMP/e3" "$TMP/e4"
expect_error "already holds results" $EVAL "${EVAL_ARGS[@]}" --out "$TMP/e3"
$EVAL "${EVAL_ARGS[@]}" --out "$TMP/e3" --resume >"$TMP/out" 2>&1 || fail "1-process eval resume: $(tail -3 "$TMP/out")"
same_tables "$TMP/e3"
if run2 eval_resume2 $EVAL "${EVAL_ARGS[@]}" --out "$TMP/e4" --resume; then
  same_tables "$TMP/e4"
fi
# A finished run's predictions.jsonl with its last lines lost: 2 processes redo them.
mkdir -p "$TMP/e5"
head -n 21 "$TMP/e1/predictions.jsonl" >"$TMP/e5/predictions.jsonl"
if run2 eval_resume3 $EVAL "${EVAL_ARGS[@]}" --out "$TMP/e5" --resume; then
  same_tables "$TMP/e5"
fi

if [ $fails -ne 0 ]; then echo "$fails failure(s)"; exit 1; fi
echo "all multi-process checks passed"

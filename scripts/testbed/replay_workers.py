#!/usr/bin/env python3
"""Replay the data stream of train.py's DataLoader workers on CPU, to find a batch that stalls a run.

Worker w draws from random.Random(seed * 100003 + w). The DataLoader takes batch s (1-indexed) from worker
(s - 1) % W, and worker w's batch j is requested when batch W*(j-4)+w+1 is consumed (prefetch 4), so it
uses the phase in force then. The phase switch steps are the "--> phase N ... at step S" lines of the
log. Every logged step's phase and length are compared with the replay. A batch that takes longer than
--alarm seconds is reported with its stack.

  python3 scripts/testbed/replay_workers.py scripts/testbed/runs/run3_recipe_v2/train_log.txt --workers 1 \\
      --upto-step 5350 [--gen-dir DIR_WITH_OLD_gen_data.py]
(run 3: worker 1 hangs in batch 381 = step 5336 with the gen_data.py of commit 114f458; 109/109 logged
lengths match)
"""
import argparse, json, os, random, re, signal, sys, time, traceback

ap = argparse.ArgumentParser()
ap.add_argument("log")
ap.add_argument("--workers", default="all", help="comma list or 'all'")
ap.add_argument("--n-workers", type=int, default=14)
ap.add_argument("--seed", type=int, default=20250917)
ap.add_argument("--recipe", default="v2")
ap.add_argument("--upto-step", type=int, default=0, help="replay batches up to this step (default: last logged)")
ap.add_argument("--alarm", type=int, default=40)
ap.add_argument("--gen-dir", default=os.path.dirname(os.path.abspath(__file__)))
ap.add_argument("--carry", default=".testbed_carry")
ap.add_argument("--tok", default="models/testbed/tokenizer.model")
a = ap.parse_args()
sys.path.insert(0, a.gen_dir)
import gen_data  # noqa: E402

gen_data.RECIPE = a.recipe
g = gen_data.load_gen(a.carry, a.tok)
W = a.n_workers
logged, switches = {}, []
for line in open(a.log, errors="replace"):
    m = re.search(r"--> phase (\d+) .* at step (\d+)", line)
    if m:
        switches.append((int(m.group(2)) + 1, int(m.group(1))))  # batches from step+1 on use the new phase
    m = re.search(r"\] (\{\"step\".*\})\s*$", line)
    if m:
        d = json.loads(m.group(1))
        logged[d["step"]] = (d["phase"], d["L"])
upto = a.upto_step or max(logged)


def phase_of_batch(w, j):
    b = 1 if j < 4 else W * (j - 4) + w + 1
    ph = 0
    for s, p in switches:
        if b >= s:
            ph = p
    return ph


class Hang(Exception):
    pass


def on_alarm(*_):
    raise Hang()


signal.signal(signal.SIGALRM, on_alarm)
workers = range(W) if a.workers == "all" else [int(x) for x in a.workers.split(",")]
for w in workers:
    r = random.Random(a.seed * 100003 + w)
    ok = bad = 0
    j = 0
    while W * j + w + 1 <= upto:
        step, ph = W * j + w + 1, phase_of_batch(w, j)
        signal.alarm(a.alarm)
        try:
            X, K = gen_data.make_batch(g, r, ph)
        except Hang:
            print(f"worker {w} batch {j} (step {step}, phase {ph}): no batch after {a.alarm} s", flush=True)
            traceback.print_exc()
            break
        finally:
            signal.alarm(0)
        if step in logged:
            if logged[step] == (ph, X.shape[1] - 1):
                ok += 1
            else:
                bad += 1
                print(f"worker {w} step {step}: logged {logged[step]}, replay {(ph, X.shape[1] - 1)}", flush=True)
        j += 1
    print(f"worker {w}: {j} batches replayed, logged lengths matched {ok}, mismatched {bad}", flush=True)

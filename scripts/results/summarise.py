#!/usr/bin/env python3
"""Per method and budget: the mean score (unweighted over tasks) and the mean critical-KV hit rate of a
judgeq-eval run folder, optionally over the first N samples of each RULER task only (to compare runs
of different sizes on the same samples). Reads predictions.jsonl, or predictions.jsonl.gz as the
large runs in docs/results/ keep it. --drop-empty leaves out predictions whose text is empty (a
decoding failure, not an answer) and says how many. Standard library only.
  python3 scripts/results/summarise.py RUN_DIR [--first N] [--drop-empty]"""
import argparse
import gzip
import json
import os
import sys
from collections import defaultdict


def open_predictions(run_dir):
    plain = f"{run_dir}/predictions.jsonl"
    if not os.path.exists(plain) and os.path.exists(plain + ".gz"):
        return gzip.open(plain + ".gz", "rt")
    return open(plain)


def summarise(run_dir, first=None, drop_empty=False):
    score, hit = defaultdict(lambda: defaultdict(list)), defaultdict(lambda: defaultdict(list))
    samples, dropped = set(), defaultdict(int)
    with open_predictions(run_dir) as f:
        for line in f:
            r = json.loads(line)
            if first is not None and r["bench"] == "ruler" and int(r["id"].rsplit("-", 1)[1]) >= first:
                continue
            if drop_empty and not r["prediction"].strip():
                dropped[r["method"]] += 1
                continue
            samples.add(r["id"])
            key = (r["method"], r["budget"])
            score[key][r["task"]].append(r["score"])
            if r.get("hit_rate") is not None:
                hit[key][r["task"]].append(r["hit_rate"])
    mean = lambda per_task: sum(sum(v) / len(v) for v in per_task.values()) / len(per_task)
    table = {k: (mean(score[k]), mean(hit[k]) if k in hit else None) for k in score}
    return (table, len(samples), dict(dropped)) if drop_empty else (table, len(samples))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--first", type=int, default=None, help="only the first N samples of each RULER task")
    ap.add_argument("--drop-empty", action="store_true", help="leave out predictions whose text is empty")
    a = ap.parse_args()
    try:
        table, n, *rest = summarise(a.run_dir, a.first, a.drop_empty)
    except (OSError, ValueError, KeyError) as e:
        sys.exit(f"error: cannot summarise {a.run_dir} ({e}); pass a judgeq-eval run folder (it holds predictions.jsonl)")
    if not table:
        sys.exit(f"error: {a.run_dir}/predictions.jsonl has no predictions")
    budgets = sorted({b for _, b in table if b != "full"}, key=lambda b: float(b.replace("cr", "")))
    print(f"{a.run_dir}: {n} samples; score / hit rate vs the oracle")
    if a.drop_empty:
        print("empty predictions left out: " + (", ".join(f"{m} {c}" for m, c in sorted(rest[0].items())) or "none"))
    print("| method | " + " | ".join(budgets) + " |")
    print("|---|" + "---:|" * len(budgets))
    for m in sorted({m for m, _ in table}):
        cells = []
        for b in budgets:
            s, h = table.get((m, b), table.get((m, "full"), (None, None)))
            cells.append("" if s is None else f"{s:.2f}" + ("" if h is None or m == "full" else f" / {h:.3f}"))
        print(f"| {m} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

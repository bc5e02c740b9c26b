"""Sums the CUDA kernel time of a Chrome trace (bench/profile_decode.cpp) per kernel name, and counts
the CPU operators (how many ATen calls the host issues per step).
python3 bench/profile_summary.py TRACE.json STEPS [TOP]"""
import json, sys
from collections import defaultdict

trace, steps = sys.argv[1], int(sys.argv[2])
top = int(sys.argv[3]) if len(sys.argv) > 3 else 25
ev = json.load(open(trace))
ev = ev["traceEvents"] if isinstance(ev, dict) else ev
tot, cnt = defaultdict(float), defaultdict(int)
ops = [e for e in ev if e.get("cat") == "cpu_op"]
top_ops = defaultdict(int)
for e in ops:
    top_ops[e["name"]] += 1
print(f"CPU operators per step: {len(ops) / steps:.0f} (most frequent: "
      + ", ".join(f"{n} {c / steps:.0f}" for n, c in sorted(top_ops.items(), key=lambda x: -x[1])[:8]) + ")")
for e in ev:
    if e.get("cat") == "kernel" and "dur" in e:
        tot[e["name"]] += e["dur"]
        cnt[e["name"]] += 1
all_us = sum(tot.values())
print(f"kernels per step: {sum(cnt.values()) / steps:.0f}, GPU kernel time per step: {all_us / steps / 1000:.2f} ms")
ks = sorted((e["ts"], e["ts"] + e["dur"]) for e in ev if e.get("cat") == "kernel" and "dur" in e)
if ks:
    # From the first kernel's start to the last one's end, and the idle gaps between kernels in it.
    busy_end, idle = ks[0][1], 0.0
    for a, b in ks[1:]:
        idle += max(0.0, a - busy_end)
        busy_end = max(busy_end, b)
    print(f"GPU span per step: {(busy_end - ks[0][0]) / steps / 1000:.2f} ms, idle between kernels: "
          f"{idle / steps / 1000:.2f} ms")
for name, us in sorted(tot.items(), key=lambda x: -x[1])[:top]:
    print(f"{us / steps / 1000:8.3f} ms/step {cnt[name] / steps:6.0f}x  {name[:150]}")

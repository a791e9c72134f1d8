#!/usr/bin/env python3
"""table.py RUN OUT N: the comparison table from OUT/<model>.json (trainer eval --env math,logic,code), with
the student's share of each specialist's accuracy and of its gain over the base, and the sampled tokens of
the specialists + distillation vs the mixed-RL run (from the runs' metrics.jsonl)."""
import json, os, sys

run, out, n = sys.argv[1], sys.argv[2], sys.argv[3]
fams = ["math", "logic", "code"]
rows = ["base", "rl_math", "rl_logic", "rl_code", "student_on_policy", "student_sft",
        "merge_average", "merge_task_arithmetic", "merge_ties", "rl_mixed"]
acc = {}
for r in rows:
    p = os.path.join(out, r + ".json")
    if os.path.exists(p):
        acc[r] = json.load(open(p))["accuracy"]

def sampled_tokens(metrics, stages):
    total = 0.0
    if not os.path.exists(metrics):
        return None
    for line in open(metrics):
        rec = json.loads(line)
        if rec.get("stage") in stages and "rollout/tokens_per_s" in rec and "timing_s/rollout" in rec:
            total += rec["rollout/tokens_per_s"] * rec["timing_s/rollout"]
    return total

print(f"Held-out greedy accuracy, {n} tasks per domain (trainer eval --env math,logic,code --k 0)\n")
print("| model | " + " | ".join(fams) + " |")
print("|---|" + "---|" * len(fams))
for r in rows:
    if r in acc:
        print(f"| {r} | " + " | ".join(f"{100*acc[r][f]:.1f} %" for f in fams) + " |")
if "student_on_policy" in acc and "base" in acc:
    print("\nStudent (on_policy) vs each specialist on its domain:\n")
    print("| domain | base | specialist | student | kept (≥ 95 %) | gain recovered (≥ 90 %) |")
    print("|---|---|---|---|---|---|")
    for f in fams:
        s = acc.get("rl_" + f, {}).get(f)
        if s is None:
            continue
        b, st = acc["base"][f], acc["student_on_policy"][f]
        kept = st / s if s else float("nan")
        gain = (st - b) / (s - b) if s != b else float("nan")
        print(f"| {f} | {100*b:.1f} % | {100*s:.1f} % | {100*st:.1f} % | {100*kept:.1f} % | {100*gain:.1f} % |")
spec = sampled_tokens(os.path.join(run, "metrics.jsonl"), {"rl_math", "rl_logic", "rl_code", "distill"})
mixed = sampled_tokens(os.path.join(run + "-baselines", "metrics.jsonl"), {"rl_mixed"})
if spec is not None:
    print(f"\nSampled completion tokens: specialists + on-policy distillation {spec:,.0f}" +
          (f"; mixed RL {mixed:,.0f}" if mixed else ""))

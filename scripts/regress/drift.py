# drift.py OLD NEW: for runs whose metrics are not bit for bit equal (compare.py), how far apart they are:
# per run and stage, the largest relative difference |new − old| / max(|old|, 1e-12) of each metric key over
# the records (and that record's absolute difference: keys near 0, such as a KL between equal policies, have
# large relative differences from rounding alone), the worst keys first, and the first record where each differs. For a change that alters the
# arithmetic order (a vectorised exp, a fused op) the drift grows from float rounding (~1e-7) over the steps of
# a run; a sampled token or a chosen expert that flips shows as a jump in the rollout keys.
import json, sys, os
a, b = sys.argv[1], sys.argv[2]
top = int(sys.argv[3]) if len(sys.argv) > 3 else 8
VOL = ('timing_s/', 'tokens_per_s', 'groups_per_s', 'bus/', 'time')
def load(p):
    return [json.loads(l) for l in open(p)]
for run in sorted(os.listdir(a)):
    pa, pb = os.path.join(a, run, 'metrics.jsonl'), os.path.join(b, run, 'metrics.jsonl')
    if not (os.path.exists(pa) and os.path.exists(pb)):
        continue
    ma, mb = load(pa), load(pb)
    if len(ma) != len(mb):
        print(run, 'record counts differ:', len(ma), len(mb))
    worst = {}  # (stage, key) -> (rel, step, old, new)
    for x, y in zip(ma, mb):
        for k, v in x.items():
            if any(k.startswith(p) or k.endswith(p) for p in VOL) or not isinstance(v, (int, float)) or isinstance(v, bool):
                continue
            w = y.get(k)
            if not isinstance(w, (int, float)):
                continue
            rel = abs(w - v) / max(abs(v), 1e-12)
            key = (x.get('stage'), k)
            if key not in worst or rel > worst[key][0]:
                worst[key] = (rel, x.get('step'), v, w)
    items = sorted(worst.items(), key=lambda kv: -kv[1][0])
    print(f'{run}: {len(ma)} records, {sum(1 for _, v in items if v[0] > 0)} of {len(items)} stage/key pairs differ')
    for (stage, k), (rel, step, v, w) in items[:top]:
        print(f'   {stage:12s} {k:32s} max rel {rel:.2e} (abs {abs(w - v):.1e}) at step {step}: {v!r} → {w!r}')

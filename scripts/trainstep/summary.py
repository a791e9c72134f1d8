# summary.py OUTDIR: one line per binary and round of scripts/trainstep/rounds.sh (tokens/s, median and fastest
# step, process CPU per step, optimizer part, allocated bytes per step, same-run sgemm on the step's shapes, load),
# and the model-shape sgemm rate of `bench gemm` at 2 threads and 1.
import json, sys, glob, os
out = sys.argv[1]
rounds = sorted({os.path.basename(p).split('.')[0] for p in glob.glob(out + '/r*.json')}, key=lambda r: int(r[1:]))
for r in rounds:
    print('==', r, open(f'{out}/{r}.uptime').read().strip().replace('\n', ' | '))
    for k in ['before', 'main', 'new', 'new-t1', 'main-default', 'new-default']:
        try:
            d = json.load(open(f'{out}/{r}.{k}.json'))
        except Exception as e:
            print('  %-13s missing (%s)' % (k, e))
            continue
        print('  %-13s %7.0f tokens/s  step %7.1f ms (fastest %7.1f)  CPU/step %7.1f ms  optimizer %5.1f ms  %.3f MB/step  sgemm %5.1f GFLOP/s  load %s' % (
            k, d['tokens_per_s'], d['step_ms'], d.get('step_ms_min', 0), d.get('cpu_ms_per_step', 0), d.get('optimizer_ms', 0),
            d.get('alloc_bytes_per_step', 0) / 1e6, d.get('sgemm_gflops', 0), d.get('load_avg')))
    for k in ['gemm', 'gemm-t1']:
        try:
            g = json.load(open(f'{out}/{r}.{k}.json'))
            print('  %-13s model shapes %.1f GFLOP/s, square %s' % (k, g['model_gflops'], ', '.join('%s %.1f' % (s['name'], s['gflops']) for s in g['square'])))
        except Exception as e:
            print('  %-13s missing (%s)' % (k, e))

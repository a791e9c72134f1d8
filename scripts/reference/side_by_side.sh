#!/usr/bin/env bash
set -u
# Sparrow against the PyTorch reference (torch_v32.py) in one run, alternating, on issue 19's configuration:
# the training step (4 rounds), decode at batch 8 (4 rounds; the reference with 2 threads and with 1, the
# faster of which is its figure) and at batch 1 (2 rounds). Run from anywhere after `make build-openblas` and
# `apt-get install python3-torch`; compare rates only within a round (this VM's speed swings within minutes).
cd "$(dirname "$0")/../.."
S=bin/trainer-openblas T=scripts/reference/run_torch_v32.sh
ts() { python3 -c 'import json,sys;d=json.load(sys.stdin);print(sys.argv[1], "sparrow tok/s", round(d["tokens_per_s"]), "load", d["load_avg"][0], "sgemm", round(d["sgemm_gflops"]), "alloc", round(d["alloc_bytes_per_step"]))' "$@"; }
dc() { python3 -c 'import json,sys;d=json.load(sys.stdin);print(sys.argv[1], "sparrow tok/s", round(d["tokens_per_s"]), "load", d["load_avg"][0])' "$@"; }
tt() { python3 -c 'import json,sys
for l in sys.stdin:
  l=l.strip()
  if l.startswith("{"):
    d=json.loads(l); print(sys.argv[1], "torch tok/s", round(d["tokens_per_s"]), {k:v for k,v in d.items() if "gflops" in k or k in ("threads","ms_per_step")})' "$@"; }
echo "start $(uptime)"
for _ in 1 2 3 4; do
  $S bench train-step --config v32-issue19 --reps 5 --json 2>/dev/null | ts train
  $T train --reps 5 2>/dev/null | tt train
done
for _ in 1 2 3 4; do
  $S bench decode --config v32-issue19 --batch 8 --reps 3 --json 2>/dev/null | dc decode-b8
  $T decode --batch 8 2>/dev/null | tt decode-b8-2thr
  OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 $T decode --batch 8 --threads 1 2>/dev/null | tt decode-b8-1thr
done
for _ in 1 2; do
  $S bench decode --config v32-issue19 --batch 1 --reps 3 --json 2>/dev/null | dc decode-b1
  OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 $T decode --batch 1 --threads 1 2>/dev/null | tt decode-b1-1thr
  $T decode --batch 1 2>/dev/null | tt decode-b1-2thr
done
echo "end $(uptime)"

#!/usr/bin/env bash
# Seeded reference runs for checking that a refactor keeps behaviour: run them with the binary before and
# after the change, then compare metrics.jsonl records (every key of the old run, timings aside) and the
# SHA-256 of every checkpoint's model and optimizer safetensors.
#
#   go build -o /tmp/old/trainer ./cmd/trainer     # at the commit before the change
#   go build -o /tmp/new/trainer ./cmd/trainer     # after it
#   scripts/regress/run.sh /tmp/old/trainer /tmp/regress/old
#   scripts/regress/run.sh /tmp/new/trainer /tmp/regress/new
#   python3 scripts/regress/compare.py /tmp/regress/old /tmp/regress/new
#
# Runs (about 15 s on 2 cores): the tiny pre-training recipe; a tiny model pre-trained on chat math then 6 GRPO
# steps over the embedded NATS bus (β 0.01, 2 mini-batches, dynamic sampling, top-p) and the same in-process;
# pretrain → dsa_warmup → dsa_sparse → rl with Keep Selection.
set -euo pipefail
bin=$1 out=$2
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$out" && mkdir -p "$out"
"$bin" run tiny --run-dir "$out/tiny" --set run.progress=off --set run.plots=false >"$out/tiny.log" 2>&1
"$bin" run "$here/rl.yaml" --run-dir "$out/rl" >"$out/rl.log" 2>&1
"$bin" run "$here/rl.yaml" --run-dir "$out/rlinproc" --set rl.bus.transport=inproc >"$out/rlinproc.log" 2>&1
"$bin" run "$here/dsa.yaml" --run-dir "$out/dsa" >"$out/dsa.log" 2>&1
echo "runs in $out"

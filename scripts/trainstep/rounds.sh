#!/usr/bin/env bash
# Interleaved rounds of issue 19's training-step benchmark (`trainer bench train-step`, OpenBLAS binaries):
# per round the before-issue-19 binary (run from a checkout that has internal/bench/recipes/v32-issue19.yaml,
# since that binary has no embedded recipe), main's binary and this binary on v32-issue19 (--reps 5), this
# binary at one kernel thread (its two shards one after another: the single-core cost), the same-run sgemm
# (`bench gemm`, 2 threads and 1), and main's and this binary on the default model. Then a summary.
#
#   scripts/trainstep/rounds.sh BEFORE MAIN NEW ROUNDS OUTDIR [CHECKOUT]
#   e.g. scripts/trainstep/rounds.sh /work/bench-bin/trainer-before-i19 /work/bench-bin/trainer-main-ed7a3a4 \
#          bin/trainer-openblas 3 /tmp/trainstep /work/main
set -u
BEFORE=$1 MAIN=$2 NEW=$(realpath "$3") R=$4 OUT=$5 CO=${6:-.}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT"
for r in $(seq 1 "$R"); do
  uptime > "$OUT/r$r.uptime"
  (cd "$CO" && "$BEFORE" bench train-step --config internal/bench/recipes/v32-issue19.yaml --reps 5 --json > "$OUT/r$r.before.json" 2>/dev/null)
  "$MAIN" bench train-step --config v32-issue19 --reps 5 --json > "$OUT/r$r.main.json" 2>/dev/null
  "$NEW" bench train-step --config v32-issue19 --reps 5 --json > "$OUT/r$r.new.json" 2>/dev/null
  "$NEW" bench train-step --config v32-issue19 --reps 3 --threads 1 --json > "$OUT/r$r.new-t1.json" 2>/dev/null
  "$NEW" bench gemm --config v32-issue19 --sizes 512,1024 --json > "$OUT/r$r.gemm.json" 2>/dev/null
  "$NEW" bench gemm --config v32-issue19 --sizes 512,1024 --threads 1 --json > "$OUT/r$r.gemm-t1.json" 2>/dev/null
  "$MAIN" bench train-step --reps 5 --json > "$OUT/r$r.main-default.json" 2>/dev/null
  "$NEW" bench train-step --reps 5 --json > "$OUT/r$r.new-default.json" 2>/dev/null
  uptime >> "$OUT/r$r.uptime"
done
python3 "$here/summary.py" "$OUT"

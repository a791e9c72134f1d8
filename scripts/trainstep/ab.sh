#!/usr/bin/env bash
# Interleaved rounds of issue 19's speed goals over two or more trainer binaries, one line per run: the training
# step on v32-issue19 and on the default model (tokens/s, process CPU per step, loss and gradient norm, which
# must agree to the bit between binaries that change no arithmetic), and decode at batch 8 (every round) and
# at 1, 32 and 64 (two rounds) on v32-issue19 (tokens/s, tokens per CPU second, and a hash of the sampled text,
# which must agree likewise). Load averages are printed per run; compare rates only within a round.
#
#   ROUNDS=5 scripts/trainstep/ab.sh BEFORE AFTER [MORE...]
#   e.g. scripts/trainstep/ab.sh /work/bench-bin/trainer-before-616e678 bin/trainer-openblas
# A binary may be a wrapper script, e.g. one that runs the after binary with OPENBLAS_CORETYPE=Haswell.
set -u
R=${ROUNDS:-5}
ts() { python3 -c 'import json,sys;d=json.load(sys.stdin);print(sys.argv[1], sys.argv[2], "tok/s", round(d["tokens_per_s"]), "cpu_ms", round(d["cpu_ms_per_step"]), "load", d["load_avg"][0], "loss", d["loss"], "gnorm", d["grad_norm"], "alloc", round(d["alloc_bytes_per_step"]), "sgemm", round(d["sgemm_gflops"]))' "$@"; }
dc() { python3 -c 'import json,sys,hashlib;d=json.load(sys.stdin);print(sys.argv[1], sys.argv[2], "tok/s", round(d["tokens_per_s"]), "tok/cpu_s", round(d["tokens_per_cpu_s"]), "load", d["load_avg"][0], "sample", hashlib.sha256(d["sample"].encode()).hexdigest()[:12])' "$@"; }
echo "start $(uptime)"
for _ in $(seq "$R"); do for b in "$@"; do "$b" bench train-step --config v32-issue19 --reps 5 --json 2>/dev/null | ts train-v32 "$b"; done; done
for _ in 1 2; do for b in "$@"; do "$b" bench train-step --reps 5 --json 2>/dev/null | ts train-default "$b"; done; done
for _ in $(seq "$R"); do for b in "$@"; do "$b" bench decode --config v32-issue19 --batch 8 --reps 3 --json 2>/dev/null | dc decode-b8 "$b"; done; done
for n in 1 32 64; do for _ in 1 2; do for b in "$@"; do "$b" bench decode --config v32-issue19 --batch "$n" --reps 3 --json 2>/dev/null | dc "decode-b$n" "$b"; done; done; done
echo "end $(uptime)"

#!/usr/bin/env bash
# distill_kl.sh: the specialists recipe's distill stage alone, from the checkpoints of a finished
# `trainer run specialists --run-dir RUN`, once per distill.kl mode (sampled, exact, both by default), each
# then evaluated like table.sh's rows (trainer eval --env math,logic,code --n N --k 0). The recipe is RUN's
# resolved config.yaml with only its distill stage, init_from the base's final checkpoint and the three
# teachers the specialists' (OUT/distill.yaml). Writes OUT/<mode>/ (the run), OUT/<mode>.eval.json, and
# prints each mode's accuracy.
#
#   scripts/specialists/distill_kl.sh runs/specialists runs/kl [N] [modes...]
#
# TRAINER (default bin/trainer-openblas) is the binary.
set -euo pipefail
RUN=${1:?usage: distill_kl.sh RUN_DIR OUT_DIR [N] [modes...]}
OUT=${2:?usage: distill_kl.sh RUN_DIR OUT_DIR [N] [modes...]}
N=${3:-500}
shift $(( $# < 3 ? $# : 3 ))
if [ $# -eq 0 ]; then set -- sampled exact both; fi
T=${TRAINER:-bin/trainer-openblas}
CK=$(cd "$RUN/checkpoints" && pwd)
newest() { ls -d "$1"-* | awk -F- '{print $NF " " $0}' | sort -n | tail -1 | cut -d' ' -f2-; } # highest step of DIR/<stage>
final() { newest "$CK/$1"; }
mkdir -p "$OUT"
python3 - "$RUN/config.yaml" "$OUT/distill.yaml" "$(final pretrain)" "$(final rl_math)" "$(final rl_logic)" "$(final rl_code)" <<'PY'
import sys
src, dst, base, m, l, c = sys.argv[1:]
lines = open(src).read().split('\n')
stages = next(i for i, s in enumerate(lines) if s == 'stages:')
dist = next(i for i, s in enumerate(lines) if s == '  - name: distill')
out = '\n'.join(lines[:stages + 1] + lines[dist:])
for a, b in [('init_from: stage:pretrain', 'init_from: ' + base), ('stage:rl_math', m), ('stage:rl_logic', l), ('stage:rl_code', c)]:
    assert a in out, a
    out = out.replace(a, b)
open(dst, 'w').write(out)
PY
for mode in "$@"; do
  "$T" run "$OUT/distill.yaml" --run-dir "$OUT/$mode" --set run.accuracy_table=0 --set run.progress=off --set stages.distill.distill.kl="$mode"
  "$T" eval --checkpoint "$(newest "$OUT/$mode/checkpoints/distill")" --config "$RUN/config.yaml" --stage distill \
    --env math,logic,code --n "$N" --k 0 > "$OUT/$mode.eval.json"
  echo "$mode: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["accuracy"])' "$OUT/$mode.eval.json")"
done

#!/usr/bin/env bash
# table.sh: the full comparison of issue 17 after `trainer run specialists --run-dir RUN`:
# held-out greedy accuracy on N tasks per domain (default 500) of the base, each specialist, the on-policy
# student, the SFT-distilled student, the three weight-space merges and one mixed-RL GRPO run from the same
# base, on math, logic and code. Writes RUN/table/<model>.json (trainer eval --env math,logic,code), the
# baselines' run in RUN-baselines, and RUN/table/table.md, and prints the table.
#
#   scripts/specialists/table.sh runs/specialists [N]
#
# TRAINER (default bin/trainer-openblas) is the binary; SKIP_BASELINES=1 skips the sft and mixed-RL runs
# (their rows are then missing).
set -euo pipefail
RUN=${1:?usage: table.sh RUN_DIR [N]}
N=${2:-500}
T=${TRAINER:-bin/trainer-openblas}
HERE=$(cd "$(dirname "$0")" && pwd)
CK=$RUN/checkpoints
OUT=$RUN/table
mkdir -p "$OUT"

final() { # the final checkpoint of stage $2 under checkpoints dir $1 (highest step)
  ls -d "$1/$2"-[0-9]* 2>/dev/null | sed 's/.*-\([0-9]*\)$/\1 &/' | sort -n | tail -1 | cut -d' ' -f2
}
BASE=$(final "$CK" pretrain); MATH=$(final "$CK" rl_math); LOGIC=$(final "$CK" rl_logic)
CODE=$(final "$CK" rl_code); STUDENT=$(final "$CK" distill)
for v in BASE MATH LOGIC CODE STUDENT; do
  [ -n "${!v}" ] || { echo "table.sh: no final checkpoint for $v under $CK (has trainer run specialists finished?)" >&2; exit 1; }
done

# the three merges of the specialists over the base
for m in average task_arithmetic ties; do
  "$T" merge --method "$m" --base "$BASE" --out "$RUN-merges" "$MATH" "$LOGIC" "$CODE" >/dev/null
done

# the SFT-distilled student and the mixed-RL run, from the same checkpoints
if [ "${SKIP_BASELINES:-0}" != 1 ]; then
  CFG=$OUT/baselines.yaml
  sed -e "s|init_from: BASE|init_from: \"$BASE\"|" -e "s|math: MATH|math: \"$MATH\"|" -e "s|logic: LOGIC|logic: \"$LOGIC\"|" \
      -e "s|code: CODE|code: \"$CODE\"|" "$HERE/baselines.yaml" > "$CFG"
  if [ -d "$RUN-baselines/checkpoints" ]; then RESUME=(--resume); else RESUME=(); fi
  "$T" run "$CFG" --run-dir "$RUN-baselines" "${RESUME[@]}" --set run.progress=off
fi

eval_model() { # name checkpoint
  [ -n "$2" ] && [ -d "$2" ] || { echo "skipping $1 (no checkpoint)" >&2; return 0; }
  "$T" eval --checkpoint "$2" --config "$RUN/config.yaml" --stage distill --env math,logic,code --n "$N" --k 0 > "$OUT/$1.json"
}
eval_model base "$BASE"
eval_model rl_math "$MATH"
eval_model rl_logic "$LOGIC"
eval_model rl_code "$CODE"
eval_model student_on_policy "$STUDENT"
eval_model student_sft "$(final "$RUN-baselines/checkpoints" distill_sft)"
for m in average task_arithmetic ties; do eval_model "merge_$m" "$RUN-merges/checkpoints/merge_$m-0"; done
eval_model rl_mixed "$(final "$RUN-baselines/checkpoints" rl_mixed)"

python3 "$HERE/table.py" "$RUN" "$OUT" "$N" | tee "$OUT/table.md"

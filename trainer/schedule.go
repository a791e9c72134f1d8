// Learning-rate schedules: linear warm-up followed by cosine, linear or constant
// decay. Steps count from 0 (the first optimiser step is step 0) and a run of
// `total` steps ends at step total−1:
//
//	step < warmup:            lr = base·(step+1)/warmup   (reaches base at step warmup−1)
//	warmup ≤ step ≤ total−1:  progress = (step−warmup)/(total−1−warmup) ∈ [0, 1]
//	  "cosine":   lr = base·(minRatio + (1−minRatio)·(1+cos(π·progress))/2)
//	  "linear":   lr = base·(1 − (1−minRatio)·progress)
//	  "constant": lr = base
//	step ≥ total:             the value at progress 1 (base·minRatio, or base for "constant")
//
// So the decay starts at base on step `warmup` and ends at exactly base·minRatio
// on the last step. When no step lies after the warm-up (total−1 ≤ warmup) the
// decay phase holds base. A negative step is treated as 0 and warmup ≤ 0 means
// no warm-up.

package trainer

import (
	"fmt"
	"math"
)

// ScheduleKinds lists the schedule names LR accepts.
var ScheduleKinds = []string{"cosine", "linear", "constant"}

// CheckSchedule returns an error naming kind unless LR accepts it.
func CheckSchedule(kind string) error {
	for _, k := range ScheduleKinds {
		if k == kind {
			return nil
		}
	}
	return fmt.Errorf("unknown learning-rate schedule %q (want one of %v)", kind, ScheduleKinds)
}

// LR returns the learning rate of step (counted from 0) for a schedule of kind
// "cosine", "linear" or "constant" (see the file comment for the formulas). It
// panics on an unknown kind: validate configs with CheckSchedule first.
func LR(kind string, base float64, step, warmup, total int, minRatio float64) float64 {
	if err := CheckSchedule(kind); err != nil {
		panic("trainer: " + err.Error())
	}
	if step < 0 {
		step = 0
	}
	if warmup > 0 && step < warmup {
		return base * float64(step+1) / float64(warmup)
	}
	if kind == "constant" {
		return base
	}
	warmup = max(warmup, 0)
	span := total - 1 - warmup
	if span <= 0 {
		return base
	}
	progress := min(float64(step-warmup)/float64(span), 1)
	switch kind {
	case "cosine":
		return base * (minRatio + (1-minRatio)*0.5*(1+math.Cos(math.Pi*progress)))
	default: // "linear"
		return base * (1 - (1-minRatio)*progress)
	}
}

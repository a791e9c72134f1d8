// Golden tables for the learning-rate schedules, worked out by hand from the
// formulas in schedule.go.
package trainer

import (
	"math"
	"strings"
	"testing"
)

func TestLRGolden(t *testing.T) {
	// base 1, warmup 4, total 13: warm-up on steps 0..3, decay over steps 4..12
	// (span 8), so progress = (step−4)/8.
	cases := []struct {
		kind     string
		step     int
		warmup   int
		total    int
		minRatio float64
		want     float64
	}{
		{"cosine", 0, 4, 13, 0.1, 0.25},
		{"cosine", 1, 4, 13, 0.1, 0.5},
		{"cosine", 3, 4, 13, 0.1, 1},
		{"cosine", 4, 4, 13, 0.1, 1},                                     // progress 0
		{"cosine", 6, 4, 13, 0.1, 0.1 + 0.9*0.5*(1+math.Sqrt2/2)},        // progress 1/4: cos(π/4)=√2/2 → 0.868198
		{"cosine", 8, 4, 13, 0.1, 0.55},                                  // progress 1/2: cos = 0
		{"cosine", 10, 4, 13, 0.1, 0.1 + 0.9*0.5*(1-math.Sqrt2/2)},       // progress 3/4 → 0.231802
		{"cosine", 12, 4, 13, 0.1, 0.1},                                  // last step
		{"cosine", 20, 4, 13, 0.1, 0.1},                                  // past the end
		{"cosine", 0, 0, 3, 0, 1},                                        // no warm-up
		{"cosine", 1, 0, 3, 0, 0.5},                                      // span 2, progress 1/2
		{"cosine", 2, 0, 3, 0, 0},                                        // min ratio 0
		{"cosine", 5, 5, 5, 0.1, 1},                                      // nothing after the warm-up
		{"cosine", -3, 4, 13, 0.1, 0.25},                                 // negative step treated as 0
		{"linear", 2, 4, 13, 0.1, 0.75},                                  // warm-up
		{"linear", 4, 4, 13, 0.1, 1},                                     // progress 0
		{"linear", 6, 4, 13, 0.1, 1 - 0.9*0.25},                          // 0.775
		{"linear", 8, 4, 13, 0.1, 0.55},                                  // progress 1/2
		{"linear", 12, 4, 13, 0.1, 0.1},                                  // last step
		{"linear", 30, 4, 13, 0.1, 0.1},                                  // past the end
		{"constant", 0, 4, 13, 0.1, 0.25},                                // warm-up
		{"constant", 3, 4, 13, 0.1, 1},                                   //
		{"constant", 12, 4, 13, 0.1, 1},                                  // no decay
		{"constant", 0, 0, 13, 0.1, 1},                                   //
		{"cosine", 1, 2, 1002, 0.0, 1},                                   // end of warm-up
		{"cosine", 501, 2, 1001, 0.0, 0.5 * (1 + math.Cos(math.Pi*0.5))}, // progress 499/998 = 1/2
	}
	for _, c := range cases {
		got := LR(c.kind, 1, c.step, c.warmup, c.total, c.minRatio)
		if math.Abs(got-c.want) > 1e-12 {
			t.Errorf("LR(%q, step %d, warmup %d, total %d, min %v) = %.12f, want %.12f", c.kind, c.step, c.warmup, c.total, c.minRatio, got, c.want)
		}
		// LR is linear in base.
		if got3 := LR(c.kind, 3e-4, c.step, c.warmup, c.total, c.minRatio); math.Abs(got3-3e-4*c.want) > 1e-15 {
			t.Errorf("LR(%q, base 3e-4, step %d) = %g, want %g", c.kind, c.step, got3, 3e-4*c.want)
		}
	}
}

func TestCheckSchedule(t *testing.T) {
	for _, k := range ScheduleKinds {
		if err := CheckSchedule(k); err != nil {
			t.Errorf("CheckSchedule(%q): %v", k, err)
		}
	}
	err := CheckSchedule("cosin")
	if err == nil || !strings.Contains(err.Error(), `"cosin"`) {
		t.Errorf("CheckSchedule(cosin) = %v, want an error naming it", err)
	}
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "cosin") {
			t.Errorf("LR with an unknown kind: recover() = %v", r)
		}
	}()
	LR("cosin", 1, 0, 0, 10, 0)
}

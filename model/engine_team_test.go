package model

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// TestTeamRunsEveryTaskOnce: over steps of many regions of 0…40 tasks, with pauses between regions longer
// than teamSpin (so helpers sleep and are woken) and without, and with some tasks longer than doneSpin (so the
// caller sleeps until a helper's last task wakes it) and without, every task of every region runs exactly
// once, each region ends only when all of its tasks are done, and stop returns with the helpers gone.
func TestTeamRunsEveryTaskOnce(t *testing.T) {
	for _, nl := range []int{1, 2, 3} {
		for _, pause := range []time.Duration{0, 3 * teamSpin} {
			slow := pause > 0
			t.Run(fmt.Sprintf("lanes=%d/pause=%v/slow=%v", nl, pause, slow), func(t *testing.T) {
				tm := newTeam(make([]lane, nl))
				for step := range 3 {
					tm.start()
					for r := range 25 {
						n := (r*7 + step) % 41
						counts := make([]atomic.Int32, n)
						lanesSeen := make([]atomic.Int32, nl)
						tm.run(n, func(ln *lane, i int) {
							if slow && i%7 == 3 {
								time.Sleep(2 * doneSpin)
							}
							counts[i].Add(1)
							for l := range tm.lanes {
								if &tm.lanes[l] == ln {
									lanesSeen[l].Add(1)
								}
							}
						})
						total := int32(0)
						for i := range counts {
							if c := counts[i].Load(); c != 1 {
								t.Fatalf("step %d region %d: task %d ran %d times, want 1", step, r, i, c)
							}
						}
						for l := range lanesSeen {
							total += lanesSeen[l].Load()
						}
						if int(total) != n {
							t.Fatalf("step %d region %d: %d tasks ran on the team's lanes, want %d", step, r, total, n)
						}
						if pause > 0 && r%5 == 0 {
							time.Sleep(pause)
						}
					}
					tm.stop()
					if tm.active {
						t.Fatalf("step %d: team still active after stop", step)
					}
				}
			})
		}
	}
}

// TestSpinSpan: a wait's spin budget halves when a wait runs out of it (down to minSpin) and grows by a quarter
// when one ends while spinning (up to its most): 20 → 10 → 5 → 2.5 µs, then 3.125 → 3.90625 µs, and from 1 µs at
// the floor back to the most, 20 µs, after enough successful waits.
func TestSpinSpan(t *testing.T) {
	s := spinSpan{budget: 20 * time.Microsecond, most: 20 * time.Microsecond}
	for _, step := range []struct {
		out  bool
		want time.Duration
	}{
		{true, 10 * time.Microsecond}, {true, 5 * time.Microsecond}, {true, 2500 * time.Nanosecond},
		{false, 3125 * time.Nanosecond}, {false, 3906 * time.Nanosecond},
	} {
		s.spun(step.out)
		if s.budget != step.want {
			t.Fatalf("after spun(%v): budget %v, want %v", step.out, s.budget, step.want)
		}
	}
	for range 10 {
		s.spun(true)
	}
	if s.budget != minSpin {
		t.Fatalf("after 10 waits out of budget: %v, want the floor %v", s.budget, minSpin)
	}
	for range 40 {
		s.spun(false)
	}
	if s.budget != s.most {
		t.Fatalf("after 40 waits within budget: %v, want the most %v", s.budget, s.most)
	}
}

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

// TestSpinSpan: a wait's spin budget (most 20 µs) grows by a quarter after a wait that ended while spinning,
// to twice the wait after one that slept no longer than the most (15 µs → 30 µs, capped at 20 µs), and halves
// after one that slept longer (down to minSpin); from the floor, waits ended while spinning bring it back.
func TestSpinSpan(t *testing.T) {
	us := time.Microsecond
	s := spinSpan{budget: 20 * us, most: 20 * us}
	for _, step := range []struct {
		w     time.Duration
		slept bool
		want  time.Duration
	}{
		{5 * time.Millisecond, true, 10 * us}, {3 * time.Millisecond, true, 5 * us},
		{4 * us, false, 6250 * time.Nanosecond}, {9 * us, true, 18 * us}, {15 * us, true, 20 * us},
		{21 * us, true, 10 * us}, {2 * us, true, 10 * us},
	} {
		s.waited(step.w, step.slept)
		if s.budget != step.want {
			t.Fatalf("after waited(%v, %v): budget %v, want %v", step.w, step.slept, s.budget, step.want)
		}
	}
	for range 10 {
		s.waited(time.Millisecond, true)
	}
	if s.budget != minSpin {
		t.Fatalf("after 10 waits of 1 ms: %v, want the floor %v", s.budget, minSpin)
	}
	for range 40 {
		s.waited(s.budget/2, false)
	}
	if s.budget != s.most {
		t.Fatalf("after 40 waits ended spinning: %v, want the most %v", s.budget, s.most)
	}
}

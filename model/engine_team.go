// engine_team.go: the lanes of one batched decode step (Batch.Step) as a team: the caller is lane 0, and
// helper goroutines started when the step begins run the step's parallel regions with it until the step ends.
// A step has about six regions per layer (the split products, the sequences' attention, the experts), each a few
// microseconds of work on 2 cores, so the cost of handing a region over matters: a goroutine started per
// region and woken through the scheduler costs microseconds each time, while a helper that spins on one
// atomic word between regions picks the next one up within a fraction of a microsecond. A helper spins for at
// most teamSpin before sleeping on its channel (the step's serial parts are short; a long wait means the
// caller was descheduled), the caller waits for the helpers' last tasks of a region so for at most doneSpin,
// both yield their core to other goroutines every few hundred spins, and each kind of wait adapts its budget
// to the waits seen (spinSpan): on a loaded machine, where a lane is often descheduled for milliseconds, the
// waits sleep almost at once.
//
// The region word packs the region's generation, its task count and the next unclaimed task; a lane claims a
// task with a compare-and-swap, so a helper that sees a region late claims nothing from the next one by
// mistake, and the caller ends a region once every claimed task is done. Each task writes only its own
// outputs, so the result does not depend on which lane runs which task.

package model

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// teamSpin is how long a helper waits for the next region by spinning before it sleeps, and doneSpin how long
// the caller waits so for the helpers' last tasks of a region (a task takes up to tens of microseconds; only
// a helper descheduled in the middle of one takes longer).
// Both are the most a wait spins: each kind of wait's budget adapts between minSpin and them (spinSpan) to the
// waits seen, so on a machine whose other processes keep the lanes from running together (waits of
// milliseconds) the waits sleep almost at once, as blocking would, and on a quiet one they spin through.
const (
	teamSpin = 20 * time.Microsecond
	doneSpin = 100 * time.Microsecond
	minSpin  = time.Microsecond
)

// spinSpan is the adaptive budget of one kind of wait.
type spinSpan struct {
	budget, most time.Duration
}

// waited records a wait of w that spun (took longer than its first time check): ended while spinning, the
// budget grows by a quarter; ended asleep after no more than the most, it grows to twice the wait (spinning
// would have ended it); ended asleep after longer (the other lane was not running), it halves.
func (s *spinSpan) waited(w time.Duration, slept bool) {
	switch {
	case !slept:
		s.budget = min(s.budget+s.budget/4, s.most)
	case w <= s.most:
		s.budget = min(max(2*w, s.budget), s.most)
	default:
		s.budget = max(s.budget/2, minSpin)
	}
}

// teamMaxTasks is the most tasks one region may have (the width of the task fields of the region word).
const teamMaxTasks = 1<<15 - 1

// teamQuit is the region word's bit of a step's last generation: the helpers return.
const teamQuit = 1 << 31

// team runs the parallel regions of one decode step over lanes.
type team struct {
	lanes []lane
	// word: generation << 32 | teamQuit | tasks << 16 | next task.
	word atomic.Uint64
	done atomic.Int64          // tasks of the current region finished
	task func(ln *lane, i int) // read by a lane only once it holds a claimed task of the region
	// per helper (lane 1…): asleep says it waits on wake (buffered, one token).
	asleep []atomic.Bool
	wake   []chan struct{}
	// the caller, at the end of a region: waiting says it waits on finished (buffered, one token) for the
	// helpers' last tasks.
	waiting  atomic.Bool
	finished chan struct{}
	// the spin budgets of the caller's waits for the last tasks and of each helper's waits for a region (each
	// used by its own goroutine only; kept across steps)
	doneSpan spinSpan
	idleSpan []spinSpan
	wg       sync.WaitGroup
	active   bool // helpers are running (between start and stop)
}

func newTeam(lanes []lane) *team {
	t := &team{lanes: lanes, asleep: make([]atomic.Bool, len(lanes)), wake: make([]chan struct{}, len(lanes)), finished: make(chan struct{}, 1)}
	for i := range t.wake {
		t.wake[i] = make(chan struct{}, 1)
	}
	t.doneSpan = spinSpan{budget: doneSpin, most: doneSpin}
	t.idleSpan = make([]spinSpan, len(lanes))
	for i := range t.idleSpan {
		t.idleSpan[i] = spinSpan{budget: teamSpin, most: teamSpin}
	}
	return t
}

// start launches the helpers of a step (none for a single lane).
func (t *team) start() {
	if len(t.lanes) <= 1 {
		return
	}
	t.active = true
	gen := t.word.Load() >> 32
	for h := 1; h < len(t.lanes); h++ {
		t.wg.Add(1)
		go t.helper(h, gen)
	}
}

// stop ends the step's helpers and waits for them to return.
func (t *team) stop() {
	if !t.active {
		return
	}
	t.post(teamQuit)
	t.wg.Wait()
	t.active = false
}

// post publishes the next region, n tasks (t.task set before) or teamQuit, and wakes sleeping helpers.
func (t *team) post(n int) {
	t.done.Store(0)
	gen := t.word.Load()>>32 + 1
	if n == teamQuit {
		t.word.Store(gen<<32 | teamQuit)
	} else {
		t.word.Store(gen<<32 | uint64(n)<<16)
	}
	for h := 1; h < len(t.lanes); h++ {
		if t.asleep[h].CompareAndSwap(true, false) {
			t.wake[h] <- struct{}{}
		}
	}
}

// claim takes the next task of region gen: its index, or −1 when none is left (or the region is over).
func (t *team) claim(gen uint64) int {
	for {
		v := t.word.Load()
		next, n := int(v&0xffff), int(v>>16&0x7fff)
		if v>>32 != gen || next >= n {
			return -1
		}
		if t.word.CompareAndSwap(v, v+1) {
			return next
		}
	}
}

// run runs task(ln, i) for i in [0, n) over the team's lanes and returns when all are done.
func (t *team) run(n int, task func(ln *lane, i int)) {
	if !t.active || n == 1 || n > teamMaxTasks {
		for i := range n {
			task(&t.lanes[0], i)
		}
		return
	}
	t.task = task
	t.post(n)
	gen := t.word.Load() >> 32
	for i := t.claim(gen); i >= 0; i = t.claim(gen) {
		task(&t.lanes[0], i)
		t.done.Add(1)
	}
	t.awaitDone(int64(n))
	t.task = nil
}

// awaitDone returns once n tasks of the current region are done: spinning for up to its budget, then sleeping
// until the helper finishing the last one wakes the caller (a helper descheduled in the middle of a task gets
// the core back sooner than from a caller spinning on it).
func (t *team) awaitDone(n int64) {
	var t0 time.Time
	for spins := 0; t.done.Load() < n; spins++ {
		if spins&255 != 255 {
			continue
		}
		runtime.Gosched()
		if t0.IsZero() {
			t0 = time.Now()
		} else if time.Since(t0) > t.doneSpan.budget {
			t.waiting.Store(true)
			if t.done.Load() >= n {
				if !t.waiting.CompareAndSwap(true, false) {
					<-t.finished // a helper took the flag and sent the token: consume it
				}
			} else {
				<-t.finished
			}
			t.doneSpan.waited(time.Since(t0), true)
			return
		}
	}
	if !t0.IsZero() {
		t.doneSpan.waited(time.Since(t0), false)
	}
}

// finish counts a task of the current region done and wakes the caller when it was the last one it waits for.
func (t *team) finish(n int64) {
	if t.done.Add(1) >= n && t.waiting.CompareAndSwap(true, false) {
		t.finished <- struct{}{}
	}
}

// helper is lane h's loop: wait for a region newer than seen, take its tasks, until the step's end.
func (t *team) helper(h int, seen uint64) {
	defer t.wg.Done()
	ln := &t.lanes[h]
	for {
		v := t.await(h, seen)
		gen := v >> 32
		seen = gen
		if v&teamQuit != 0 {
			return
		}
		n := int64(v >> 16 & 0x7fff)
		for i := t.claim(gen); i >= 0; i = t.claim(gen) {
			t.task(ln, i)
			t.finish(n)
		}
	}
}

// await returns the region word of the first region newer than generation seen: spinning (and yielding) for
// up to its budget, then sleeping until post wakes helper h.
func (t *team) await(h int, seen uint64) uint64 {
	var t0 time.Time
	span := &t.idleSpan[h]
	for spins := 0; ; spins++ {
		if v := t.word.Load(); v>>32 != seen {
			if !t0.IsZero() {
				span.waited(time.Since(t0), false)
			}
			return v
		}
		if spins&255 != 255 {
			continue
		}
		runtime.Gosched()
		if t0.IsZero() {
			t0 = time.Now()
		} else if time.Since(t0) > span.budget {
			break
		}
	}
	v := t.sleep(h, seen)
	span.waited(time.Since(t0), true)
	return v
}

// sleep returns the region word of the first region newer than generation seen, sleeping until post wakes
// helper h.
func (t *team) sleep(h int, seen uint64) uint64 {
	for {
		t.asleep[h].Store(true)
		if v := t.word.Load(); v>>32 != seen {
			if !t.asleep[h].CompareAndSwap(true, false) {
				<-t.wake[h] // post took the flag and sent the token: consume it
			}
			return v
		}
		<-t.wake[h]
		if v := t.word.Load(); v>>32 != seen {
			return v
		}
	}
}

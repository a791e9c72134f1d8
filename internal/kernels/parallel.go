// parallel.go: a deterministic parallel-for. Work items are split into contiguous chunks, one per worker; each
// item writes only its own outputs, so results do not depend on scheduling. HoldSerial turns the workers off
// for callers that put independent work on every core themselves (the data-parallel shards of the training
// graph, model/shards.go).

package kernels

import (
	"runtime"
	"sync"
	"sync/atomic"
)

var threads = runtime.GOMAXPROCS(0)

// serialHolds counts the HoldSerial calls not yet released.
var serialHolds atomic.Int32

// HoldSerial makes For run every item on the calling goroutine and Gemm run unsplit, process-wide, until the
// returned release is called (holds nest). It is for a caller that runs one independent stream of kernels per
// core itself; the kernels compute what they compute with SetThreads(1).
func HoldSerial() (release func()) {
	serialHolds.Add(1)
	var once sync.Once
	return func() { once.Do(func() { serialHolds.Add(-1) }) }
}

// workers is the number of workers For and Gemm use now: Threads, or 1 under HoldSerial.
func workers() int {
	if serialHolds.Load() > 0 {
		return 1
	}
	return threads
}

// SetThreads sets the number of workers used by For (≤ 0 means GOMAXPROCS).
func SetThreads(n int) {
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	threads = n
}

// Threads returns the number of workers For uses.
func Threads() int { return threads }

// For runs body(i) for i in [0, n), in parallel when n and the work per item (cost, in rough flops) justify it.
func For(n int, cost int, body func(i int)) {
	w := workers()
	if w > n {
		w = n
	}
	if w <= 1 || n*cost < 1<<15 {
		for i := 0; i < n; i++ {
			body(i)
		}
		return
	}
	var wg sync.WaitGroup
	chunk := (n + w - 1) / w
	for start := 0; start < n; start += chunk {
		end := min(start+chunk, n)
		wg.Add(1)
		go func(s, e int) {
			defer wg.Done()
			for i := s; i < e; i++ {
				body(i)
			}
		}(start, end)
	}
	wg.Wait()
}

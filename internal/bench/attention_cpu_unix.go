//go:build unix

// attention_cpu_unix.go: the process CPU time (user + system, all threads) the attention benchmark reports next
// to wall time, from getrusage; unlike wall time it does not count time the process waits for a core.

package bench

import (
	"syscall"
	"time"
)

func cpuNow() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

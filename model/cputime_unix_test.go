//go:build unix

// cputime_unix_test.go: the process's CPU time, for benchmarks that report CPU time per operation (robust to
// other work sharing the machine, unlike wall time).

package model

import (
	"syscall"
	"time"
)

// processCPU is the user + system CPU time of this process so far (0 when unavailable).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

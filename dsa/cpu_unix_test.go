//go:build unix

// cpu_unix_test.go: process CPU time for the benchmarks (bench_test.go), which report it next to wall time
// because the machine's cores are shared.
package dsa

import "syscall"

func cpuNanos() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

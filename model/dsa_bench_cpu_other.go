//go:build !unix

// dsa_bench_cpu_other.go: without getrusage the attention benchmark reports no CPU time (0).
package model

import "time"

func cpuNow() time.Duration { return 0 }

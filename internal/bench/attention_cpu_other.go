//go:build !unix

// attention_cpu_other.go: without getrusage the attention benchmark reports no CPU time (0).

package bench

import "time"

func cpuNow() time.Duration { return 0 }

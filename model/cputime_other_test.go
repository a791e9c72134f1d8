//go:build !unix

// cputime_other_test.go: no process CPU time outside unix (benchmarks report 0).

package model

import "time"

func processCPU() time.Duration { return 0 }

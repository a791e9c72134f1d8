//go:build !unix

// cpu_other_test.go: no process CPU time outside unix; the benchmarks report 0.
package dsa

func cpuNanos() int64 { return 0 }

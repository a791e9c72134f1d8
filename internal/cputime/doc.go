// Package cputime reads the process's CPU time (user + system, all threads, from getrusage) for benchmarks
// that report CPU time per operation next to wall time: unlike wall time it does not count the time the
// process waits for a core, so it stays comparable on a machine shared with other work.
package cputime

//go:build !unix

package cputime

import "time"

// Process is 0 where getrusage is unavailable.
func Process() time.Duration { return 0 }

// runlock_other.go: without flock(2) the run directory lock is not enforced (the NATS learner lease still
// is).

//go:build !unix || solaris || aix

package trainer

import (
	"errors"
	"os"
)

var errWouldBlock = errors.New("would block")

func flockExclusive(*os.File) error { return nil }

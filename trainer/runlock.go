// runlock.go: one trainer per run directory. Execute holds an exclusive flock(2) on <run>/run.lock for the
// whole run and writes its holder (host, pid, since) into the file; a second trainer on the same directory
// — a `trainer run --resume` or `trainer learn` next to a live or paused one — is refused with the holder's
// name. The kernel drops the lock when its process dies, so a stale lock file never blocks anyone. (A NATS
// learner also holds a lease per stage on the server, rl_bus.go, which fences learners on other machines.)

package trainer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// RunLockFile is the lock file of a run directory.
const RunLockFile = "run.lock"

// ErrRunLocked marks a run directory that another trainer holds.
var ErrRunLocked = errors.New("trainer: the run directory is in use by another trainer")

// runLockHolder is the content of the lock file.
type runLockHolder struct {
	Host  string    `json:"host"`
	PID   int       `json:"pid"`
	Since time.Time `json:"since"`
	Args  string    `json:"args,omitempty"`
}

// lockRunDir takes the run directory's lock, or says who holds it; unlock releases it.
func lockRunDir(dir string) (unlock func(), err error) {
	path := filepath.Join(dir, RunLockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("trainer: run directory lock: %w", err)
	}
	if err := flockExclusive(f); err != nil {
		f.Close()
		if errors.Is(err, errWouldBlock) {
			b, _ := os.ReadFile(path)
			var h runLockHolder
			who := "another process (unreadable lock file)"
			if json.Unmarshal(b, &h) == nil && h.PID != 0 {
				who = fmt.Sprintf("pid %d on host %s since %s (%s)", h.PID, h.Host, h.Since.Format(time.RFC3339), h.Args)
			}
			return nil, fmt.Errorf("%w: %s is held by %s; stop that trainer first, or use another --run-dir", ErrRunLocked, path, who)
		}
		return nil, fmt.Errorf("trainer: run directory lock %s: %w", path, err)
	}
	host, _ := os.Hostname()
	b, _ := json.Marshal(runLockHolder{Host: host, PID: os.Getpid(), Since: time.Now(), Args: strings.Join(os.Args, " ")})
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt(append(b, '\n'), 0)
	}
	return func() {
		_ = f.Truncate(0)
		f.Close() // closing the descriptor drops the lock
	}, nil
}

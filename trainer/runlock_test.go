// runlock_test.go: one trainer per run directory (a second one is refused, naming the holder; the lock goes
// with the first), and a resume that would move checkpoints/latest back is refused before it trains.

package trainer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sparrow-rl/sparrow/checkpoints"
)

func TestRunDirLock(t *testing.T) {
	dir := t.TempDir()
	unlock, err := lockRunDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := tinyConfig(t, "train.steps=2")
	err = Execute(context.Background(), cfg, Options{Dir: dir, Log: quietLog()})
	if !errors.Is(err, ErrRunLocked) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("a second trainer on a locked run directory: %v, want ErrRunLocked naming pid %d", err, os.Getpid())
	}
	unlock()
	if err := Execute(context.Background(), cfg, Options{Dir: dir, Log: quietLog()}); err != nil {
		t.Fatalf("after the lock was released: %v", err)
	}
}

func TestResumeNeverMovesLatestBack(t *testing.T) {
	dir := t.TempDir()
	cfg := tinyConfig(t, "train.steps=4", "checkpoint.every=2", "checkpoint.keep_last=0")
	if err := Execute(context.Background(), cfg, Options{Dir: dir, Log: quietLog()}); err != nil {
		t.Fatal(err)
	}
	older := filepath.Join(dir, "checkpoints", "pretrain-2")
	err := Execute(context.Background(), cfg, Options{Dir: dir, Resume: older, Log: quietLog()})
	if !errors.Is(err, checkpoints.ErrBehindLatest) {
		t.Fatalf("resuming pretrain-2 under latest pretrain-4: %v, want ErrBehindLatest", err)
	}
	if l, _ := checkpoints.Latest(filepath.Join(dir, "checkpoints")); filepath.Base(l) != "pretrain-4" {
		t.Errorf("latest = %s, want pretrain-4", l)
	}
	// into another run directory it is fine
	if err := Execute(context.Background(), cfg, Options{Dir: t.TempDir(), Resume: older, Log: quietLog()}); err != nil {
		t.Fatal(err)
	}
}

// latest_test.go: latest only moves forward — a lower step of its stage, or an earlier stage of the
// pipeline, is refused before anything is written; the same checkpoint may be saved again.

package checkpoints

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestLatestNeverMovesBack(t *testing.T) {
	root := t.TempDir()
	ck := makeCheckpoint(t, 1)
	stages := []string{"sft", "rl_math"}
	save := func(name string) error {
		_, err := SaveWith(root, name, ck, SaveOptions{Stages: stages})
		return err
	}
	for _, name := range []string{"sft-50", "rl_math-105", "rl_math-160", "rl_math-160"} {
		if err := save(name); err != nil {
			t.Fatalf("save %s: %v", name, err)
		}
	}
	for _, name := range []string{"rl_math-105", "rl_math-159", "sft-500"} {
		err := save(name)
		if !errors.Is(err, ErrBehindLatest) {
			t.Errorf("save %s over latest rl_math-160: %v, want ErrBehindLatest", name, err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(root, LatestFile)); string(b) != "rl_math-160\n" {
		t.Errorf("latest = %q after refused saves, want rl_math-160", b)
	}
	if _, err := os.Stat(filepath.Join(root, "rl_math-159")); !os.IsNotExist(err) {
		t.Errorf("a refused checkpoint was written: %v", err)
	}
	if err := save("rl_math-161"); err != nil {
		t.Fatal(err)
	}
	// the fence runs before the checkpoint takes its name: its error leaves nothing behind
	fenced := errors.New("lease lost")
	_, err := SaveWith(root, "rl_math-162", ck, SaveOptions{Stages: stages, Fence: func() error { return fenced }})
	if !errors.Is(err, fenced) {
		t.Fatalf("fenced save: %v", err)
	}
	if l, _ := Latest(root); filepath.Base(l) != "rl_math-161" {
		t.Errorf("latest = %s after a fenced save, want rl_math-161", l)
	}
	if _, err := os.Stat(filepath.Join(root, "rl_math-162")); !os.IsNotExist(err) {
		t.Errorf("a fenced checkpoint was written: %v", err)
	}
	if err := CheckForward(root, "rl_math-105", nil); !errors.Is(err, ErrBehindLatest) {
		t.Errorf("CheckForward without a stage order: %v", err)
	}
	if err := CheckForward(root, "sft-1", nil); err != nil {
		t.Errorf("another stage without a stage order: %v, want no objection", err)
	}
}

// Test of `trainer merge`: the merged checkpoint is written where it says, loads, and holds the average of
// the specialists (the merge arithmetic itself is tested by hand in package merge); a bad method is refused.

package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sparrow-rl/sparrow/checkpoints"
)

func TestMergeCmd(t *testing.T) {
	dir := t.TempDir()
	base := saveTinyCheckpoint(t, filepath.Join(dir, "base"), 1)
	a := saveTinyCheckpoint(t, filepath.Join(dir, "a"), 2)
	b := saveTinyCheckpoint(t, filepath.Join(dir, "b"), 3)
	root := newRootCmd()
	var out, errw bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errw)
	root.SetArgs([]string{"merge", "--method", "average", "--base", base, "--out", filepath.Join(dir, "merged"), a, b})
	if err := root.Execute(); err != nil {
		t.Fatalf("merge: %v\n%s", err, errw.String())
	}
	got := strings.TrimSpace(out.String())
	if got != filepath.Join(dir, "merged", "checkpoints", "merge_average-0") {
		t.Fatalf("printed %q", got)
	}
	m, _, err := checkpoints.LoadParams(got)
	if err != nil {
		t.Fatal(err)
	}
	pa, _, _ := checkpoints.LoadParams(a)
	pb, _, _ := checkpoints.LoadParams(b)
	for k := range m.Data {
		for j, v := range m.Data[k] {
			if want := float32((float64(pa.Data[k][j]) + float64(pb.Data[k][j])) / 2); v != want {
				t.Fatalf("%s[%d] = %v, want the average %v", m.Specs[k].Name, j, v, want)
			}
		}
	}
	root = newRootCmd()
	root.SetOut(&out)
	root.SetErr(&errw)
	root.SetArgs([]string{"merge", "--method", "soup", "--base", base, "--out", dir, a})
	if err := root.Execute(); err == nil || !strings.Contains(err.Error(), `--method "soup"`) {
		t.Fatalf("bad method: %v", err)
	}
}

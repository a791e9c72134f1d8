// Tests of `trainer run --resume` from the command line (the forms of --resume, the config from the run
// directory with --set on top and its differences named, each step once in metrics.jsonl and TensorBoard, a
// damaged newest checkpoint), `trainer eval --checkpoint RUN_DIR` and `trainer version`.
package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"

	"github.com/sparrow-rl/sparrow/checkpoints"
	"github.com/sparrow-rl/sparrow/trainer"
)

// cli runs the trainer's root command in-process and returns stdout and stderr.
func cli(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	root := newRootCmd()
	var out, errw bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errw)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), errw.String(), err
}

func latestOf(t *testing.T, run string) string {
	t.Helper()
	d, err := checkpoints.Latest(filepath.Join(run, "checkpoints"))
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Base(d)
}

// checkEachStepOnce fails when metrics.jsonl or an event file of run holds a (stage, step, metric) twice.
func checkEachStepOnce(t *testing.T, run string, wantLast int) {
	t.Helper()
	recs, err := trainer.ReadMetrics(filepath.Join(run, trainer.MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	last := 0
	for _, r := range recs {
		for k := range r.Values {
			key := fmt.Sprintf("%s/%d/%s", r.Stage, r.Step, k)
			if seen[key] {
				t.Errorf("metrics.jsonl: %s twice", key)
			}
			seen[key] = true
		}
		last = max(last, r.Step)
	}
	if last != wantLast {
		t.Errorf("metrics.jsonl: last step %d, want %d", last, wantLast)
	}
	files, _ := filepath.Glob(filepath.Join(run, "events.out.tfevents.*"))
	if len(files) == 0 {
		t.Fatal("no TensorBoard event file")
	}
	tb := map[string]bool{}
	for _, f := range files {
		evs, err := trainer.ReadTFEvents(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			for _, s := range ev.Scalars {
				key := fmt.Sprintf("%s@%d", s.Tag, ev.Step)
				if tb[key] {
					t.Errorf("tensorboard: %s twice", key)
				}
				tb[key] = true
			}
		}
	}
}

// corruptCheckpoint flips a byte in the middle of the largest file of a checkpoint (same size: only the
// digest shows it).
func corruptCheckpoint(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var big string
	var size int64
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && !e.IsDir() && fi.Size() > size && e.Name() != checkpoints.ManifestFile {
			big, size = e.Name(), fi.Size()
		}
	}
	path := filepath.Join(dir, big)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRunResumeCLI: a tiny run, continued with each form of --resume, with and without CONFIG; a damaged
// newest checkpoint is named with the newest intact one, and resuming that one as told works. metrics.jsonl
// and TensorBoard hold each step once throughout; eval --checkpoint RUN_DIR takes the latest checkpoint.
func TestRunResumeCLI(t *testing.T) {
	run := filepath.Join(t.TempDir(), "run")
	common := []string{"--set", "run.progress=off", "--set", "run.plots=false"}
	first := append([]string{"run", "tiny", "--run-dir", run, "--set", "train.steps=4", "--set", "checkpoint.every=2",
		"--set", "checkpoint.keep_last=0", "--set", "train.log_every=1", "--set", "train.eval_every=2",
		"--set", "run.tensorboard=true"}, common...)
	if _, errs, err := cli(t, first...); err != nil {
		t.Fatalf("first run: %v\n%s", err, errs)
	}

	// eval --checkpoint RUN_DIR is eval of its latest checkpoint
	a, errs, err := cli(t, "eval", "--checkpoint", run, "--batches", "1")
	if err != nil {
		t.Fatalf("eval RUN_DIR: %v\n%s", err, errs)
	}
	b, errs, err := cli(t, "eval", "--checkpoint", filepath.Join(run, "checkpoints", "pretrain-4"), "--batches", "1")
	if err != nil {
		t.Fatalf("eval checkpoint: %v\n%s", err, errs)
	}
	if a != b || !strings.Contains(a, "loss") {
		t.Errorf("eval --checkpoint RUN_DIR printed\n%s\nthe latest checkpoint gives\n%s", a, b)
	}

	steps := []struct {
		name  string
		args  []string
		steps int
	}{
		{"--resume RUN_DIR with a space, no CONFIG", []string{"run", "--resume", run}, 6},
		{"bare --resume with --run-dir, no CONFIG", []string{"run", "--resume", "--run-dir", run}, 8},
		{"--resume=CHECKPOINT, no CONFIG", []string{"run", "--resume=" + filepath.Join(run, "checkpoints", "pretrain-8")}, 10},
		{"CONFIG and --resume CHECKPOINT with a space", []string{"run", "tiny", "--resume", filepath.Join(run, "checkpoints", "pretrain-10"), "--run-dir", run,
			"--set", "checkpoint.every=2", "--set", "checkpoint.keep_last=0", "--set", "train.log_every=1", "--set", "train.eval_every=2", "--set", "run.tensorboard=true"}, 12},
	}
	prev := 4
	for _, st := range steps {
		args := append(append(slices.Clone(st.args), "--set", fmt.Sprintf("train.steps=%d", st.steps)), common...)
		_, errs, err := cli(t, args...)
		if err != nil {
			t.Fatalf("%s: %v\n%s", st.name, err, errs)
		}
		if got, want := latestOf(t, run), fmt.Sprintf("pretrain-%d", st.steps); got != want {
			t.Fatalf("%s: latest %s, want %s", st.name, got, want)
		}
		// the one key changed, named with both values
		want := fmt.Sprintf("key=train.steps checkpoint=%d now=%d", prev, st.steps)
		if !strings.Contains(errs, want) || !strings.Contains(errs, fmt.Sprintf("key=stages.pretrain.train.steps checkpoint=%d now=%d", prev, st.steps)) {
			t.Errorf("%s: the log does not name the changed keys (%q):\n%s", st.name, want, errs)
		}
		if n := strings.Count(errs, "config key differs"); n != 2 {
			t.Errorf("%s: %d keys named as changed, want 2 (train.steps, stages.pretrain.train.steps):\n%s", st.name, n, errs)
		}
		checkEachStepOnce(t, run, st.steps)
		prev = st.steps
	}

	// a crash after step 12 whose last checkpoint is pretrain-10: the records of steps 11 and 12 go
	if err := os.RemoveAll(filepath.Join(run, "checkpoints", "pretrain-12")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(run, "checkpoints", "latest"), []byte("pretrain-10\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errs, err := cli(t, append([]string{"run", "--resume", run, "--set", "train.steps=12"}, common...)...); err != nil {
		t.Fatalf("resume after a crash: %v\n%s", err, errs)
	}
	checkEachStepOnce(t, run, 12)

	// the newest checkpoint damaged: the message names the newest intact one and how to resume from it
	corruptCheckpoint(t, filepath.Join(run, "checkpoints", "pretrain-12"))
	_, errs, err = cli(t, append([]string{"run", "--resume", run, "--set", "train.steps=14"}, common...)...)
	intact := filepath.Join(run, "checkpoints", "pretrain-10")
	if err == nil || !strings.Contains(err.Error(), "checkpoint pretrain-12 is damaged") ||
		!strings.Contains(err.Error(), "the newest intact one is pretrain-10: resume from it with --resume "+intact) {
		t.Fatalf("resume of a damaged checkpoint: %v\n%s", err, errs)
	}
	if _, errs, err := cli(t, append([]string{"run", "--resume", intact, "--set", "train.steps=14"}, common...)...); err != nil {
		t.Fatalf("resume from the newest intact checkpoint, as told: %v\n%s", err, errs)
	}
	if got := latestOf(t, run); got != "pretrain-14" {
		t.Errorf("latest %s, want pretrain-14", got)
	}
	if _, err := os.Stat(filepath.Join(run, "checkpoints", ".damaged-pretrain-12")); err != nil {
		t.Errorf("the damaged checkpoint was not set aside: %v", err)
	}
	checkEachStepOnce(t, run, 14)
}

// TestRunTarget: the arguments of `trainer run` with and without --resume.
func TestRunTarget(t *testing.T) {
	tmp := t.TempDir()
	run := filepath.Join(tmp, "run")
	ck := saveTinyCheckpoint(t, filepath.Join(run, "checkpoints"), 4)
	if err := os.WriteFile(filepath.Join(run, "config.yaml"), []byte("name: tiny\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(tmp, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name          string
		args          []string
		resume, dir   string
		config, res   string
		wantDir, werr string
	}{
		{name: "fresh", args: []string{"tiny"}, config: "tiny"},
		{name: "no config", werr: "CONFIG is required"},
		{name: "bare resume, run dir as an argument", args: []string{run}, resume: "auto", config: filepath.Join(run, "config.yaml"), res: "auto", wantDir: run},
		{name: "resume=RUN_DIR", resume: run, config: filepath.Join(run, "config.yaml"), res: "auto", wantDir: run},
		{name: "bare resume and --run-dir", resume: "auto", dir: run, config: filepath.Join(run, "config.yaml"), res: "auto", wantDir: run},
		{name: "config and bare resume", args: []string{"tiny"}, resume: "auto", dir: run, config: "tiny", res: "auto", wantDir: run},
		{name: "config, resume CHECKPOINT with a space", args: []string{"tiny", ck}, resume: "auto", config: "tiny", res: ck},
		{name: "resume CHECKPOINT with a space, no config", args: []string{ck}, resume: "auto", config: filepath.Join(run, "config.yaml"), res: ck, wantDir: run},
		{name: "s3 URL with a space", args: []string{"tiny", "s3://b/run/pretrain-4"}, resume: "auto", config: "tiny", res: "s3://b/run/pretrain-4"},
		{name: "bare resume, no run dir", resume: "auto", werr: "--run-dir DIR or --resume RUN_DIR"},
		{name: "a directory without resume", args: []string{run}, werr: "is a directory, not a config"},
		{name: "two configs", args: []string{"tiny", "math"}, werr: "unexpected argument"},
		{name: "not a run", resume: empty, werr: "not a checkpoint"},
		{name: "run dir and another --run-dir", resume: run, dir: empty, werr: "--run-dir names another"},
		{name: "run dir without config.yaml", resume: "auto", dir: empty, werr: "has no resolved config"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			config, res, dir, err := runTarget("run", c.args, c.resume, c.dir)
			if c.werr != "" {
				if err == nil || !strings.Contains(err.Error(), c.werr) {
					t.Fatalf("err %v, want %q", err, c.werr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if config != c.config || res != c.res || dir != c.wantDir {
				t.Errorf("got config %q resume %q dir %q, want %q %q %q", config, res, dir, c.config, c.res, c.wantDir)
			}
		})
	}
}

func TestVersionText(t *testing.T) {
	bi := &debug.BuildInfo{Main: debug.Module{Path: "github.com/sparrow-rl/sparrow", Version: "(devel)"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef"}, {Key: "vcs.time", Value: "2026-12-01T10:00:00Z"}, {Key: "vcs.modified", Value: "true"}}}
	cases := []struct {
		name string
		ld   string
		bi   *debug.BuildInfo
		ok   bool
		want []string
	}{
		{"devel build from a checkout", "dev", bi, true, []string{"sparrow trainer dev\n", "module   github.com/sparrow-rl/sparrow (devel)", "revision 0123456789abcdef (committed 2026-12-01T10:00:00Z), modified"}},
		{"released module", "dev", &debug.BuildInfo{Main: debug.Module{Path: "github.com/sparrow-rl/sparrow", Version: "v1.2.3"}}, true,
			[]string{"sparrow trainer v1.2.3\n", "module   github.com/sparrow-rl/sparrow v1.2.3\n", "revision unknown"}},
		{"ldflags version wins", "v9.9.9", bi, true, []string{"sparrow trainer v9.9.9\n", "0123456789abcdef"}},
		{"no build info", "dev", nil, false, []string{"sparrow trainer dev\n", "unknown (no build information)", "revision unknown"}},
	}
	for _, c := range cases {
		got := versionText(c.ld, c.bi, c.ok)
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: version output lacks %q:\n%s", c.name, w, got)
			}
		}
	}
	out, _, err := cli(t, "version")
	if err != nil || !strings.Contains(out, "module   ") || !strings.Contains(out, "revision ") {
		t.Errorf("trainer version: %v\n%s", err, out)
	}
}

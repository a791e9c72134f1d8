// Tests of `trainer compare`, `trainer plot` and `trainer ablate` (compare.go): the table's rows and the
// JSON, a PNG for two runs (one interrupted mid-line), an ablation grid of two tiny arms given by --arm
// and one given by an ablation file, and bad arguments.

package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/sparrow-rl/sparrow/trainer"
)

// compareCLIRuns writes two small run directories: "base" and "k3" (whose metrics.jsonl ends in a torn line).
func compareCLIRuns(t *testing.T) []string {
	root := t.TempDir()
	const ts = `{"time":"2026-01-01T00:00:00Z","stage":"rl_math",`
	runs := []struct{ name, metrics, config string }{
		{"base", ts + `"step":0,"eval/math/accuracy":0.48,"reward/mean":0.3}` + "\n" +
			ts + `"step":10,"eval/math/accuracy":0.945,"reward/mean":0.8}` + "\n",
			"name: m\nrl: {kl: unbiased, beta: 0.01}\n"},
		{"k3", ts + `"step":0,"eval/math/accuracy":0.48,"reward/mean":0.3}` + "\n" +
			ts + `"step":10,"eval/math/accuracy":0.96,"reward/mean":0.7}` + "\n" + ts + `"step":20,"rew`,
			"name: m\nrl: {kl: k3, beta: 0.01}\n"},
	}
	var dirs []string
	for _, r := range runs {
		d := filepath.Join(root, r.name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, trainer.MetricsFile), []byte(r.metrics), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "config.yaml"), []byte(r.config), 0o644); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, d)
	}
	return dirs
}

// hasFieldsRow reports whether the text has a line whose fields are want.
func hasFieldsRow(text string, want ...string) bool {
	for _, l := range strings.Split(text, "\n") {
		if reflect.DeepEqual(strings.Fields(l), want) {
			return true
		}
	}
	return false
}

func TestCompareCmd(t *testing.T) {
	dirs := compareCLIRuns(t)
	for _, tc := range []struct {
		name string
		args []string
		rows [][]string
	}{
		{"defaults", nil, [][]string{
			{"rl_math", "eval/math/accuracy", "max", "base", "0.945", "10", "0.945", "10", "0.7125", "2"},
			{"rl_math", "eval/math/accuracy", "max", "k3", "0.96", "10", "0.96", "10", "0.72", "2"},
			{"rl_math", "reward/mean", "max", "k3", "0.7", "10", "0.7", "10", "0.5", "2"},
			{"rl.kl", "unbiased", "k3"},
		}},
		{"one metric, last 1", []string{"--metrics", "reward/mean", "--last", "1"}, [][]string{
			{"stage", "metric", "goal", "run", "final", "@step", "best", "@step", "last-1", "mean", "points"},
			{"rl_math", "reward/mean", "max", "base", "0.8", "10", "0.8", "10", "0.8", "2"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := cli(t, append(append([]string{"compare"}, dirs...), tc.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range tc.rows {
				if !hasFieldsRow(out, r...) {
					t.Errorf("no row %q in\n%s", r, out)
				}
			}
		})
	}
	out, _, err := cli(t, append([]string{"compare", "--json"}, dirs...)...)
	if err != nil {
		t.Fatal(err)
	}
	var cmp trainer.Comparison
	if err := json.Unmarshal([]byte(out), &cmp); err != nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	if len(cmp.Metrics) != 2 || len(cmp.Config) != 1 || cmp.Config[0].Key != "rl.kl" {
		t.Errorf("--json: %+v", cmp)
	}
	if _, _, err := cli(t, "compare", filepath.Join(t.TempDir(), "nope")); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("missing run: %v", err)
	}
}

func TestPlotCmd(t *testing.T) {
	dirs := compareCLIRuns(t)
	png := filepath.Join(t.TempDir(), "cmp.png")
	out, _, err := cli(t, append([]string{"plot", "--metrics", "eval/math/accuracy,reward/mean", "--out", png}, dirs...)...)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "rl_math: reward/mean") {
		t.Errorf("output %q", out)
	}
	if st, err := os.Stat(png); err != nil || st.Size() < 1000 {
		t.Errorf("png: %v", err)
	}
	// One run without --out: into its plots/ folder.
	if _, _, err := cli(t, "plot", dirs[1]); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dirs[1], trainer.PlotsDir, "runs.png")); err != nil {
		t.Error(err)
	}
}

func TestAblateCmd(t *testing.T) {
	if testing.Short() {
		t.Skip("trains tiny runs")
	}
	quiet := []string{"--log-level", "error", "--set", "train.steps=2", "--set", "train.log_every=1", "--set", "checkpoint.every=2"}
	out := filepath.Join(t.TempDir(), "grid")
	stdout, _, err := cli(t, append([]string{"ablate", "tiny", "--out", out,
		"--arm", "low=optimizer.lr=1e-4", "--arm", "high=optimizer.lr=3e-3,seed=7"}, quiet...)...)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"low/metrics.jsonl", "high/config.yaml", "compare.txt", "compare.json", "ablation.json"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
	if !hasFieldsRow(stdout, "optimizer.lr", "0.0001", "0.003") || !hasFieldsRow(stdout, "stages.pretrain.optimizer.lr", "0.0001", "0.003") {
		t.Errorf("no optimizer.lr rows:\n%s", stdout)
	}
	seedRow := false
	for _, l := range strings.Split(stdout, "\n") {
		f := strings.Fields(l)
		seedRow = seedRow || len(f) == 3 && f[0] == "seed" && f[2] == "7"
	}
	if !seedRow || !strings.Contains(stdout, "pretrain") {
		t.Errorf("no seed row:\n%s", stdout)
	}

	// The same grid from an ablation file.
	dir := t.TempDir()
	file := filepath.Join(dir, "tiny_lr.yaml")
	text := "base: tiny\nset: [train.steps=2, train.log_every=1]\narms:\n  - name: a\n  - name: b\n    set: [optimizer.lr=1e-2]\n"
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out2 := filepath.Join(dir, "out")
	if _, _, err := cli(t, "ablate", file, "--out", out2, "--parallel", "2", "--log-level", "error"); err != nil {
		t.Fatal(err)
	}
	txt, err := os.ReadFile(filepath.Join(out2, trainer.CompareText))
	if err != nil || !hasFieldsRow(string(txt), "optimizer.lr", "0.003", "0.01") {
		t.Errorf("compare.txt: %v\n%s", err, txt)
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no arms", []string{"ablate", "tiny"}, "no --arm"},
		{"bad arm", []string{"ablate", "tiny", "--arm", "x=lr"}, "not key=value"},
		{"bad key", []string{"ablate", "tiny", "--arm", "x=optimizer.nope=1", "--out", filepath.Join(dir, "bad")}, "arm x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := cli(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// Tests of CompareRuns, MetricGoal and the comparison's text table on two
// hand-written run directories whose expected values are computed by hand.

package trainer

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// writeCompareRun writes a run directory with the given metrics.jsonl lines and, when
// config is not empty, config.yaml.
func writeCompareRun(t *testing.T, dir string, lines []string, config string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, MetricsFile), []byte(strings.Join(lines, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	if config != "" {
		if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(config), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// metricsLine is one metrics.jsonl line with a fixed time.
func metricsLine(stage string, step int, kv string) string {
	s := `{"time":"2026-01-01T00:00:00Z","stage":"` + stage + `","step":` + strconv.Itoa(step)
	if kv != "" {
		s += "," + kv
	}
	return s + "}\n"
}

// twoCompareRuns writes runs "a" and "b" under root and returns their directories.
func twoCompareRuns(t *testing.T, root string) []string {
	a, b := filepath.Join(root, "a"), filepath.Join(root, "b")
	writeCompareRun(t, a, []string{
		metricsLine("pretrain", 0, `"grad_norm":1,"loss":3`),
		metricsLine("pretrain", 10, `"eval/loss":2.5,"loss":2`),
		metricsLine("pretrain", 20, `"loss":1.5`),
		metricsLine("pretrain", 30, `"eval/loss":2,"loss":1.8`),
		metricsLine("rl", 0, `"actor/kl":0,"eval/math/accuracy":0.5,"reward/mean":0.2`),
		metricsLine("rl", 1, `"actor/kl":0.01,"reward/mean":0.6`),
		metricsLine("rl", 2, `"actor/kl":0.03,"eval/math/accuracy":0.7,"reward/mean":0.4`),
		metricsLine("rl", 2, `"reward/mean":0.5`), // a resumed run logs step 2 again: the later line wins
	}, `# resolved
name: a
seed: 1
optimizer: {lr: 0.001, betas: [0.9, 0.95]}
stages:
  - name: pretrain
    kind: pretrain
    train: {steps: 30}
  - name: rl
    kind: rl
    rl: {kl: unbiased}
`)
	writeCompareRun(t, b, []string{
		metricsLine("pretrain", 0, `"loss":3.2`),
		metricsLine("pretrain", 10, `"loss":null`), // non-finite: left out
		metricsLine("pretrain", 20, `"loss":1`),
		metricsLine("rl", 0, `"reward/mean":0.1`),
	}, `name: b
seed: 1
optimizer: {lr: 0.002, betas: [0.9, 0.95]}
stages:
  - name: pretrain
    kind: pretrain
    train: {steps: 20}
  - name: rl
    kind: rl
    rl: {kl: k3, beta: 0.01}
`)
	return []string{a, b}
}

func TestMetricGoal(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"loss", "min"}, {"eval/loss", "min"}, {"actor/kl", "min"}, {"dsa/indexer_loss", "min"},
		{"eval/math/accuracy", "max"}, {"reward/mean", "max"}, {"grad_norm", "max"},
	} {
		if got := MetricGoal(tc.name); got != tc.want {
			t.Errorf("MetricGoal(%q) = %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestCompareRuns(t *testing.T) {
	dirs := twoCompareRuns(t, t.TempDir())
	cmp, err := CompareRuns(dirs, nil, 2)
	if err != nil {
		t.Fatal(err)
	}
	st := func(final float64, fs int, best float64, bs int, mean float64, n int, lo, hi float64) *RunStat {
		return &RunStat{Final: final, FinalStep: fs, Best: best, BestStep: bs, LastMean: mean, Points: n, Min: lo, Max: hi}
	}
	want := []struct {
		stage, metric, goal string
		a, b                *RunStat
	}{
		{"pretrain", "loss", "min", st(1.8, 30, 1.5, 20, 1.65, 4, 1.5, 3), st(1, 20, 1, 20, 2.1, 2, 1, 3.2)},
		{"pretrain", "eval/loss", "min", st(2, 30, 2, 30, 2.25, 2, 2, 2.5), nil},
		{"rl", "eval/math/accuracy", "max", st(0.7, 2, 0.7, 2, 0.6, 2, 0.5, 0.7), nil},
		{"rl", "reward/mean", "max", st(0.5, 2, 0.6, 1, 0.55, 3, 0.2, 0.6), st(0.1, 0, 0.1, 0, 0.1, 1, 0.1, 0.1)},
		{"rl", "actor/kl", "min", st(0.03, 2, 0, 0, 0.02, 3, 0, 0.03), nil},
	}
	if len(cmp.Metrics) != len(want) {
		var got []string
		for _, m := range cmp.Metrics {
			got = append(got, m.Stage+":"+m.Metric)
		}
		t.Fatalf("rows %v, want %d", got, len(want))
	}
	for i, w := range want {
		m := cmp.Metrics[i]
		if m.Stage != w.stage || m.Metric != w.metric || m.Goal != w.goal {
			t.Errorf("row %d: %s %s %s, want %s %s %s", i, m.Stage, m.Metric, m.Goal, w.stage, w.metric, w.goal)
			continue
		}
		for r, ws := range []*RunStat{w.a, w.b} {
			gs := m.Runs[r]
			if (gs == nil) != (ws == nil) {
				t.Errorf("%s %s run %d: %+v, want %+v", w.stage, w.metric, r, gs, ws)
				continue
			}
			if gs == nil {
				continue
			}
			near := func(x, y float64) bool { return math.Abs(x-y) < 1e-12 }
			if !near(gs.Final, ws.Final) || !near(gs.Best, ws.Best) || !near(gs.LastMean, ws.LastMean) ||
				gs.FinalStep != ws.FinalStep || gs.BestStep != ws.BestStep || gs.Points != ws.Points ||
				!near(gs.Min, ws.Min) || !near(gs.Max, ws.Max) {
				t.Errorf("%s %s run %d: %+v, want %+v", w.stage, w.metric, r, *gs, *ws)
			}
		}
	}
	wantCfg := []ConfigDiff{
		{"name", []string{"a", "b"}},
		{"optimizer.lr", []string{"0.001", "0.002"}},
		{"stages.pretrain.train.steps", []string{"30", "20"}},
		{"stages.rl.rl.beta", []string{absentValue, "0.01"}},
		{"stages.rl.rl.kl", []string{"unbiased", "k3"}},
	}
	if !reflect.DeepEqual(cmp.Config, wantCfg) {
		t.Errorf("config diff\n%+v\nwant\n%+v", cmp.Config, wantCfg)
	}
	if cmp.Runs[0].Name != "a" || cmp.Runs[1].Name != "b" || cmp.Runs[0].Records != 8 || !cmp.Runs[1].Config {
		t.Errorf("runs %+v", cmp.Runs)
	}
}

func TestCompareRunsSelection(t *testing.T) {
	dirs := twoCompareRuns(t, t.TempDir())
	for _, tc := range []struct {
		name    string
		metrics []string
		want    []string
	}{
		{"pattern", []string{"eval/*"}, []string{"pretrain:eval/loss"}},
		{"pattern of three parts", []string{"eval/*/accuracy"}, []string{"rl:eval/math/accuracy"}},
		{"order of the list", []string{"reward/mean", "grad_norm"}, []string{"pretrain:grad_norm", "rl:reward/mean"}},
		{"absent", []string{"nope"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmp, err := CompareRuns(dirs, tc.metrics, 0)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range cmp.Metrics {
				got = append(got, m.Stage+":"+m.Metric)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("rows %v, want %v", got, tc.want)
			}
			if cmp.Last != DefaultCompareLast {
				t.Errorf("last %d", cmp.Last)
			}
		})
	}
	if _, err := CompareRuns([]string{filepath.Join(t.TempDir(), "missing")}, nil, 0); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing run: %v", err)
	}
}

func TestComparisonWriteText(t *testing.T) {
	cmp, err := CompareRuns(twoCompareRuns(t, t.TempDir()), nil, 2)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := cmp.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	var rows [][]string
	for _, l := range strings.Split(buf.String(), "\n") {
		rows = append(rows, strings.Fields(l))
	}
	for _, want := range [][]string{
		{"stage", "metric", "goal", "run", "final", "@step", "best", "@step", "last-2", "mean", "points"},
		{"pretrain", "loss", "min", "a", "1.8", "30", "1.5", "20", "1.65", "4"},
		{"rl", "reward/mean", "max", "b", "0.1", "0", "0.1", "0", "0.1", "1"},
		{"rl", "actor/kl", "min", "b", "-", "-", "-", "0"},
		{"config", "key", "a", "b"},
		{"stages.rl.rl.kl", "unbiased", "k3"},
	} {
		found := false
		for _, r := range rows {
			found = found || reflect.DeepEqual(r, want)
		}
		if !found {
			t.Errorf("table lacks the row %q:\n%s", want, buf.String())
		}
	}
	for _, l := range strings.Split(buf.String(), "\n") {
		if strings.TrimRight(l, " ") != l {
			t.Errorf("trailing spaces: %q", l)
		}
	}
}

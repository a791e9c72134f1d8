// Tests of PlotRuns: overlaid runs, a single-point series, an interrupted run
// whose metrics.jsonl ends in a torn line; and of the round step ticks.

package trainer

import (
	"image/png"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestPlotRuns(t *testing.T) {
	root := t.TempDir()
	dirs := twoCompareRuns(t, root) // b's rl reward/mean is a single point
	torn := filepath.Join(root, "interrupted-run-with-a-rather-long-directory-name")
	writeCompareRun(t, torn, []string{
		metricsLine("pretrain", 0, `"loss":3.1`),
		metricsLine("pretrain", 10, `"loss":2.2`),
		`{"time":"2026-01-01T00:00:00Z","stage":"pretrain","step":20,"lo`, // cut short by a crash
	}, "")
	dirs = append(dirs, torn)
	for _, tc := range []struct {
		name    string
		metrics []string
		want    []string
	}{
		{"defaults", nil, []string{"pretrain: loss", "pretrain: eval/loss", "rl: eval/math/accuracy", "rl: reward/mean", "rl: actor/kl"}},
		{"chosen", []string{"reward/mean", "loss"}, []string{"pretrain: loss", "rl: reward/mean"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "sub", "runs.png")
			titles, err := PlotRuns(dirs, tc.metrics, out)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(titles, tc.want) {
				t.Errorf("panels %v, want %v", titles, tc.want)
			}
			f, err := os.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			img, err := png.Decode(f)
			if err != nil {
				t.Fatalf("%s: %v", out, err)
			}
			if b := img.Bounds(); b.Dx() < 400 || b.Dy() < 300*len(tc.want) {
				t.Errorf("%v pixels for %d panels", b, len(tc.want))
			}
			if n := distinctColors(img); n < 4 {
				t.Errorf("%d colours: blank?", n)
			}
		})
	}
	if _, err := PlotRuns(dirs, []string{"nope"}, filepath.Join(t.TempDir(), "x.png")); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("no metric: %v", err)
	}
}

func TestRoundStepTicks(t *testing.T) {
	labels := func(lo, hi float64) []string {
		var out []string
		for _, tk := range (roundStepTicks{}).Ticks(lo, hi) {
			if tk.Label != "" {
				out = append(out, tk.Label)
			}
		}
		return out
	}
	for _, tc := range []struct {
		lo, hi float64
		want   []string
	}{
		{0, 3, []string{"0", "1", "2", "3"}},
		{0, 37, []string{"0", "5", "10", "15", "20", "25", "30", "35"}},
		{0, 1800, []string{"0", "500", "1000", "1500"}},
		{-1, 1, []string{"-1", "0", "1"}},
		{12, 12, []string{"12"}},
		{3, 160, []string{"20", "40", "60", "80", "100", "120", "140", "160"}},
	} {
		if got := labels(tc.lo, tc.hi); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ticks [%v, %v] = %v, want %v", tc.lo, tc.hi, got, tc.want)
		}
	}
}

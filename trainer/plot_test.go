// Tests of PlotRun: which PNGs a run's metrics produce, that they decode, and
// that they are not blank.
package trainer

import (
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func TestPlotRun(t *testing.T) {
	dir := t.TempDir()
	m, err := OpenMetrics(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	m.Now = func() time.Time { return time.Unix(0, 0) }
	log := func(stage string, step int, v map[string]float64) {
		t.Helper()
		if err := m.Log(stage, step, v); err != nil {
			t.Fatal(err)
		}
	}
	for s := 0; s < 20; s++ {
		v := map[string]float64{
			"loss": 5 * math.Exp(-float64(s)/8), "lr": LR("cosine", 1e-3, s, 3, 20, 0.1),
			"grad_norm": 1 / float64(s+1), "tokens_per_s": 1000 + 10*float64(s), "moe/load_cv": 0.5,
			"timing_s/forward": 0.1, "timing_s/backward": 0.2,
		}
		if s == 7 {
			v["grad_norm"] = math.NaN() // skipped step: left out of the curve
		}
		if s%5 == 4 {
			v["eval/loss"] = 5.5 * math.Exp(-float64(s)/9)
		}
		log("pretrain", s, v)
	}
	log("pretrain", 19, map[string]float64{"once": 1}) // a single point: no plot
	// A second stage: loss with one point (no loss plot), reward with three.
	log("rl_math", 0, map[string]float64{"loss": 1, "reward/mean": 0.1})
	log("rl_math", 1, map[string]float64{"reward/mean": 0.3})
	log("rl_math", 2, map[string]float64{"reward/mean": 0.2})
	log("rl_math", 1, map[string]float64{"reward/mean": 0.35}) // resumed: the later line wins
	m.Close()

	paths, err := PlotRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range paths {
		names = append(names, filepath.Base(p))
		if filepath.Dir(p) != filepath.Join(dir, "plots") {
			t.Errorf("%s not in plots/", p)
		}
	}
	want := []string{"pretrain_loss.png", "pretrain_lr.png", "pretrain_grad_norm.png", "pretrain_moe_load_cv.png",
		"pretrain_timing_s.png", "pretrain_tokens_per_s.png", "rl_math_reward_mean.png"}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("plots %v, want %v", names, want)
	}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if b := img.Bounds(); b.Dx() < 400 || b.Dy() < 200 {
			t.Errorf("%s: %v pixels", p, b)
		}
		if n := distinctColors(img); n < 3 {
			t.Errorf("%s: %d distinct colours, looks blank", p, n)
		}
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "plots"))
	if len(entries) != len(want) {
		t.Errorf("plots/ holds %d files (temporary files left?), want %d", len(entries), len(want))
	}

	// Drawing again gives the same bytes (deterministic rendering).
	first, _ := os.ReadFile(paths[0])
	if _, err := PlotRun(dir); err != nil {
		t.Fatal(err)
	}
	again, _ := os.ReadFile(paths[0])
	if string(first) != string(again) {
		t.Error("re-plotting gave different PNG bytes")
	}
}

func distinctColors(img image.Image) int {
	seen := map[[4]uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 3 {
		for x := b.Min.X; x < b.Max.X; x += 3 {
			r, g, bl, a := img.At(x, y).RGBA()
			seen[[4]uint32{r, g, bl, a}] = true
		}
	}
	return len(seen)
}

func TestPlotRunMissingAndEmpty(t *testing.T) {
	if _, err := PlotRun(t.TempDir()); err == nil {
		t.Error("PlotRun without metrics.jsonl succeeded")
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, MetricsFile), nil, 0o644)
	paths, err := PlotRun(dir)
	if err != nil || len(paths) != 0 {
		t.Errorf("empty metrics: %v, %v", paths, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "plots")); !os.IsNotExist(err) {
		t.Error("plots/ created without any plot")
	}
}

func TestStageFamilies(t *testing.T) {
	ss := map[string]*series{}
	for _, m := range []string{"reward/std", "eval/loss", "timing_s/b", "lr", "loss", "timing_s/a", "actor/kl"} {
		ss[m] = &series{name: m}
	}
	got := stageFamilies(ss)
	want := []family{
		{"loss", []string{"loss", "eval/loss"}},
		{"lr", []string{"lr"}},
		{"actor/kl", []string{"actor/kl"}},
		{"reward/std", []string{"reward/std"}},
		{"timing_s", []string{"timing_s/a", "timing_s/b"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("families %v, want %v", got, want)
	}
	s := &series{pts: map[int]float64{5: 1, 2: 3, 9: 0}}
	if xy := s.xys(); len(xy) != 3 || xy[0].X != 2 || xy[0].Y != 3 || xy[2].X != 9 {
		t.Errorf("xys %v, want sorted by step", xy)
	}
}

// Training curves as PNG files, drawn with gonum.org/v1/plot from a run's
// metrics.jsonl (the contract's plots/*.png). For each stage, in order of first
// appearance in the file:
//
//	plots/<stage>_loss.png      loss and eval/loss against step
//	plots/<stage>_lr.png        lr
//	plots/<stage>_timing_s.png  every timing_s/<phase> metric together
//	plots/<stage>_<metric>.png  each other metric on its own ("/" → "_"),
//	                            e.g. grad_norm, tokens_per_s, moe_load_cv, reward_mean
//
// A series keeps its finite values only; when a step was logged twice (a run
// resumed from a checkpoint older than its last log line) the later line wins.
// Series with fewer than 2 points are left out, and a plot with no series left
// is not written. Each PNG is written to a temporary file and renamed.

package trainer

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// PlotsDir is the run-directory folder holding the PNG curves.
const PlotsDir = "plots"

// series is one metric's curve within a stage.
type series struct {
	name string
	pts  map[int]float64 // step → last finite value logged
}

func (s *series) xys() plotter.XYs {
	steps := make([]int, 0, len(s.pts))
	for st := range s.pts {
		steps = append(steps, st)
	}
	sort.Ints(steps)
	xy := make(plotter.XYs, len(steps))
	for i, st := range steps {
		xy[i].X, xy[i].Y = float64(st), s.pts[st]
	}
	return xy
}

// family is one PNG: a file stem and the metrics drawn in it.
type family struct {
	stem    string
	metrics []string
}

// metricFamily returns the family stem of a metric.
func metricFamily(name string) string {
	switch {
	case name == "loss" || name == "eval/loss":
		return "loss"
	case strings.HasPrefix(name, "timing_s/"):
		return "timing_s"
	}
	return name
}

// safeFileName maps anything but letters, digits, '.', '_' and '-' to '_'.
func safeFileName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '.' || r == '_' || r == '-' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') {
			return r
		}
		return '_'
	}, s)
}

// PlotRun draws the curves of runDir/metrics.jsonl into runDir/plots and returns
// the paths written, in a deterministic order (stages by first appearance; per
// stage loss, lr, then the other families by name).
func PlotRun(runDir string) ([]string, error) {
	recs, err := ReadMetrics(filepath.Join(runDir, MetricsFile))
	if err != nil {
		return nil, fmt.Errorf("plot: %w", err)
	}
	var stages []string
	byStage := map[string]map[string]*series{}
	for _, r := range recs {
		ss := byStage[r.Stage]
		if ss == nil {
			ss = map[string]*series{}
			byStage[r.Stage] = ss
			stages = append(stages, r.Stage)
		}
		for k, v := range r.Values {
			s := ss[k]
			if s == nil {
				s = &series{name: k, pts: map[int]float64{}}
				ss[k] = s
			}
			if math.IsNaN(v) || math.IsInf(v, 0) {
				delete(s.pts, r.Step) // a later non-finite value replaces an earlier one
				continue
			}
			s.pts[r.Step] = v
		}
	}
	dir := filepath.Join(runDir, PlotsDir)
	var written []string
	used := map[string]bool{}
	for _, stage := range stages {
		for _, fam := range stageFamilies(byStage[stage]) {
			var lines []*series
			for _, m := range fam.metrics {
				if s := byStage[stage][m]; len(s.pts) >= 2 {
					lines = append(lines, s)
				}
			}
			if len(lines) == 0 {
				continue
			}
			name := safeFileName(stage + "_" + fam.stem)
			for i := 2; used[name]; i++ {
				name = safeFileName(fmt.Sprintf("%s_%s_%d", stage, fam.stem, i))
			}
			used[name] = true
			if len(written) == 0 {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					return nil, fmt.Errorf("plot: create %s: %w", dir, err)
				}
			}
			path := filepath.Join(dir, name+".png")
			if err := drawPNG(path, stage+": "+fam.stem, fam.stem, lines); err != nil {
				return written, err
			}
			written = append(written, path)
		}
	}
	return written, nil
}

// stageFamilies groups a stage's metrics into plots: loss, lr, then the rest by
// stem; metrics within a family sorted by name (loss before eval/loss).
func stageFamilies(ss map[string]*series) []family {
	byStem := map[string][]string{}
	for m := range ss {
		f := metricFamily(m)
		byStem[f] = append(byStem[f], m)
	}
	stems := make([]string, 0, len(byStem))
	for f := range byStem {
		stems = append(stems, f)
	}
	rank := func(f string) int {
		switch f {
		case "loss":
			return 0
		case "lr":
			return 1
		}
		return 2
	}
	sort.Slice(stems, func(i, j int) bool {
		if ri, rj := rank(stems[i]), rank(stems[j]); ri != rj {
			return ri < rj
		}
		return stems[i] < stems[j]
	})
	out := make([]family, len(stems))
	for i, f := range stems {
		ms := byStem[f]
		sort.Slice(ms, func(a, b int) bool {
			if (ms[a] == "loss") != (ms[b] == "loss") {
				return ms[a] == "loss"
			}
			return ms[a] < ms[b]
		})
		out[i] = family{stem: f, metrics: ms}
	}
	return out
}

// drawPNG renders the series as lines against step into path (via a temporary
// file renamed into place).
func drawPNG(path, title, ylabel string, lines []*series) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "step"
	p.Y.Label.Text = ylabel
	p.Add(plotter.NewGrid())
	for i, s := range lines {
		l, err := plotter.NewLine(s.xys())
		if err != nil {
			return fmt.Errorf("plot: %s: series %s: %w", path, s.name, err)
		}
		l.Color = plotutil.Color(i)
		l.Width = vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(s.name, l)
	}
	p.Legend.Top = true
	p.X.Tick.Marker = roundStepTicks{} // plotruns.go
	if p.Y.Min == p.Y.Max {
		// A flat curve (a constant learning rate): centre it in ±10 %.
		d := math.Abs(p.Y.Min) * 0.1
		if d == 0 {
			d = 1
		}
		p.Y.Min, p.Y.Max = p.Y.Min-d, p.Y.Max+d
	}
	wt, err := p.WriterTo(8*vg.Inch, 4.5*vg.Inch, "png")
	if err != nil {
		return fmt.Errorf("plot: %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".plot-*.png")
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	if _, err := wt.WriteTo(tmp); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("plot: write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("plot: write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("plot: %w", err)
	}
	return nil
}

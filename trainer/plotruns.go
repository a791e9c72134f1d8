// Overlaid curves of several runs in one PNG: PlotRuns draws one panel per
// stage and metric, one line per run (its legend entry the run directory's base
// name), with ticks at round steps. It reads metrics.jsonl as ReadMetrics does,
// so an interrupted run (a torn last line) plots what it has; a series of a
// single point is drawn as a marker. Without metrics it draws the metrics of
// DefaultCompareMetrics present in any run.

package trainer

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// maxLegendName is the longest legend label; longer run names keep their tail.
const maxLegendName = 28

// roundStepTicks labels a step axis at round integer steps (1, 2 or 5 × 10ⁿ
// apart, at most about 8 labels) with minor ticks in between.
type roundStepTicks struct{}

// Ticks implements plot.Ticker.
func (roundStepTicks) Ticks(lo, hi float64) []plot.Tick {
	if !(hi > lo) {
		return []plot.Tick{{Value: lo, Label: strconv.FormatFloat(math.Round(lo), 'f', -1, 64)}}
	}
	span := hi - lo
	step := 1.0
	for mag := 1.0; ; mag *= 10 {
		if n := span / mag; n <= 8 {
			step = mag
			break
		} else if n/2 <= 8 {
			step = 2 * mag
			break
		} else if n/5 <= 8 {
			step = 5 * mag
			break
		}
	}
	minor := step / 5
	if step == 2 {
		minor = 1
	} else if minor < 1 {
		minor = 0
	}
	var ts []plot.Tick
	for v := math.Ceil(lo/step) * step; v <= hi+1e-9; v += step {
		ts = append(ts, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'f', -1, 64)})
	}
	if minor > 0 {
		for v := math.Ceil(lo/minor) * minor; v <= hi+1e-9; v += minor {
			if math.Mod(v, step) != 0 {
				ts = append(ts, plot.Tick{Value: v})
			}
		}
	}
	return ts
}

// legendName shortens a run name to maxLegendName runes, keeping its end.
func legendName(s string) string {
	r := []rune(s)
	if len(r) <= maxLegendName {
		return s
	}
	return "…" + string(r[len(r)-maxLegendName+1:])
}

// PlotRuns draws the metrics (names or path.Match patterns) of the runs in
// dirs into the PNG file out, one panel per stage and metric present in any
// run, and returns the panels' titles ("stage: metric") in order.
func PlotRuns(dirs []string, metrics []string, out string) ([]string, error) {
	if len(dirs) == 0 {
		return nil, errors.New("plot: no run directories")
	}
	if len(metrics) == 0 {
		metrics = DefaultCompareMetrics
	}
	names := runNames(dirs)
	runs, err := readRuns(dirs)
	if err != nil {
		return nil, fmt.Errorf("plot: %w", err)
	}
	var panels []*plot.Plot
	var titles []string
	for _, sm := range stageMetrics(runs, metrics) {
		p, err := runsPanel(sm[0], sm[1], names, runs)
		if err != nil {
			return nil, fmt.Errorf("plot: %s: %w", out, err)
		}
		panels = append(panels, p)
		titles = append(titles, sm[0]+": "+sm[1])
	}
	if len(panels) == 0 {
		return nil, fmt.Errorf("plot: none of the metrics %v in runs %v", metrics, dirs)
	}
	// Each panel is 4 inches high plus room for a longer legend.
	panelH := 4*vg.Inch + vg.Length(max(0, len(dirs)-4))*0.2*vg.Inch
	w, h := 9*vg.Inch, panelH*vg.Length(len(panels))
	img := vgimg.New(w, h)
	dc := draw.New(img)
	grid := make([][]*plot.Plot, len(panels))
	for i, p := range panels {
		grid[i] = []*plot.Plot{p}
	}
	tiles := draw.Tiles{Rows: len(panels), Cols: 1, PadTop: vg.Points(6), PadBottom: vg.Points(6),
		PadLeft: vg.Points(6), PadRight: vg.Points(6), PadY: vg.Points(14)}
	canvases := plot.Align(grid, tiles, dc)
	for i, p := range panels {
		p.Draw(canvases[i][0])
	}
	if dir := filepath.Dir(out); dir != "." {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("plot: create %s: %w", dir, err)
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), ".plot-*.png")
	if err != nil {
		return nil, fmt.Errorf("plot: %w", err)
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(tmp); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return nil, fmt.Errorf("plot: write %s: %w", out, err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return nil, fmt.Errorf("plot: write %s: %w", out, err)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		os.Remove(tmp.Name())
		return nil, fmt.Errorf("plot: %w", err)
	}
	return titles, nil
}

// runsPanel draws one metric of one stage for every run that has it.
func runsPanel(stage, metric string, names []string, runs []*runSeries) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = stage + ": " + metric
	p.X.Label.Text = "step"
	p.Y.Label.Text = metric
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	if len(runs) > 6 {
		p.Legend.TextStyle.Font.Size = vg.Points(8)
	}
	for i, rs := range runs {
		s := rs.byStage[stage][metric]
		if s == nil || len(s.pts) == 0 {
			continue
		}
		xy := s.xys()
		c := plotutil.Color(i)
		sc, err := plotter.NewScatter(xy)
		if err != nil {
			return nil, fmt.Errorf("%s %s run %s: %w", stage, metric, names[i], err)
		}
		sc.Color = c
		sc.Shape = plotutil.Shape(i)
		sc.Radius = vg.Points(2.5)
		if len(xy) == 1 {
			sc.Radius = vg.Points(4)
			p.Add(sc)
			p.Legend.Add(legendName(names[i]), sc)
			continue
		}
		if len(xy) > 60 {
			sc.Radius = 0 // dense curves: the line alone
		}
		l, err := plotter.NewLine(xy)
		if err != nil {
			return nil, fmt.Errorf("%s %s run %s: %w", stage, metric, names[i], err)
		}
		l.Color = c
		l.Width = vg.Points(1.5)
		l.Dashes = plotutil.Dashes(i / len(plotutil.DefaultColors))
		p.Add(l)
		if sc.Radius > 0 {
			p.Add(sc)
			p.Legend.Add(legendName(names[i]), l, sc)
		} else {
			p.Legend.Add(legendName(names[i]), l)
		}
	}
	p.X.Tick.Marker = roundStepTicks{}
	if p.X.Min == p.X.Max {
		p.X.Min, p.X.Max = p.X.Min-1, p.X.Max+1
	}
	if p.Y.Min == p.Y.Max {
		d := math.Abs(p.Y.Min) * 0.1
		if d == 0 {
			d = 1
		}
		p.Y.Min, p.Y.Max = p.Y.Min-d, p.Y.Max+d
	}
	// Headroom above the data for the legend in the top right corner.
	p.Y.Max += (p.Y.Max - p.Y.Min) * 0.08 * float64(min(len(runs), 8))
	return p, nil
}

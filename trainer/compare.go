// Comparing finished or interrupted runs: CompareRuns reads the metrics.jsonl
// and config.yaml of several run directories and returns, for each key metric
// of each stage, every run's final value, best value (the minimum for a
// loss-like or KL-like metric, the maximum otherwise) and the mean of its last
// k records, together with the config keys whose values differ between the
// runs (the resolved YAML flattened into dotted keys, stages addressed by name
// as in --set: stages.rl_math.rl.kl). WriteText prints the comparison as
// aligned tables; the struct marshals to JSON as is.

package trainer

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/goccy/go-yaml"
	"gonum.org/v1/plot/plotter"
)

// DefaultCompareMetrics are the metrics CompareRuns reports when none are
// given; a name may be a path.Match pattern.
var DefaultCompareMetrics = []string{"eval/*/accuracy", "reward/mean", "actor/kl", "loss", "eval/loss"}

// DefaultCompareLast is the default k of the last-k mean.
const DefaultCompareLast = 3

// Comparison is the result of CompareRuns.
type Comparison struct {
	Runs    []CompareRun `json:"runs"`
	Last    int          `json:"last"`    // k of the last-k means
	Metrics []MetricRow  `json:"metrics"` // by stage (first appearance), then metric (order of the patterns, then name)
	Config  []ConfigDiff `json:"config"`  // the differing config keys, sorted
}

// CompareRun names one compared run.
type CompareRun struct {
	Name string `json:"name"` // the directory's base name (the whole path when two base names clash)
	Dir  string `json:"dir"`
	// Records is the number of metrics.jsonl lines read; Config reports whether config.yaml was found.
	Records int  `json:"records"`
	Config  bool `json:"config"`
}

// MetricRow is one metric of one stage across the runs.
type MetricRow struct {
	Stage  string     `json:"stage"`
	Metric string     `json:"metric"`
	Goal   string     `json:"goal"` // "min" or "max": which value is best
	Runs   []*RunStat `json:"runs"` // one per run, in the order of Comparison.Runs; nil where the run has no such series
}

// RunStat summarizes one run's series of a metric (finite values only; a step
// logged twice counts once, with its later value).
type RunStat struct {
	Final     float64 `json:"final"`
	FinalStep int     `json:"final_step"`
	Best      float64 `json:"best"`
	BestStep  int     `json:"best_step"`
	LastMean  float64 `json:"last_mean"` // mean of the last min(k, Points) values
	Min       float64 `json:"min"`       // the extremes whatever the goal (the README's "max actor/kl")
	Max       float64 `json:"max"`
	Points    int     `json:"points"`
}

// ConfigDiff is one config key whose value differs between runs.
type ConfigDiff struct {
	Key    string   `json:"key"`
	Values []string `json:"values"` // one per run; "(absent)" where the run lacks the key, "" where it has no config.yaml
}

// absentValue marks a config key a run's config.yaml does not have.
const absentValue = "(absent)"

// MetricGoal returns "min" for a loss-like or KL-like metric (a name with
// "loss" in it or a "/"-separated part starting or ending with "kl") and "max"
// for every other.
func MetricGoal(name string) string {
	n := strings.ToLower(name)
	if strings.Contains(n, "loss") {
		return "min"
	}
	for _, part := range strings.Split(n, "/") {
		if strings.HasPrefix(part, "kl") || strings.HasSuffix(part, "kl") {
			return "min"
		}
	}
	return "max"
}

// runSeries are the series of one run's metrics.jsonl by stage and metric.
type runSeries struct {
	stages  []string // by first appearance
	byStage map[string]map[string]*series
	records int
}

// readRunSeries reads runDir/metrics.jsonl (a torn last line is skipped) into
// series holding finite values only, the later of two lines of a step winning.
func readRunSeries(runDir string) (*runSeries, error) {
	recs, err := ReadMetrics(filepath.Join(runDir, MetricsFile))
	if err != nil {
		return nil, err
	}
	rs := &runSeries{byStage: map[string]map[string]*series{}, records: len(recs)}
	for _, r := range recs {
		ss := rs.byStage[r.Stage]
		if ss == nil {
			ss = map[string]*series{}
			rs.byStage[r.Stage] = ss
			rs.stages = append(rs.stages, r.Stage)
		}
		for k, v := range r.Values {
			s := ss[k]
			if s == nil {
				s = &series{name: k, pts: map[int]float64{}}
				ss[k] = s
			}
			if math.IsNaN(v) || math.IsInf(v, 0) {
				delete(s.pts, r.Step)
				continue
			}
			s.pts[r.Step] = v
		}
	}
	return rs, nil
}

// matchMetrics returns the metric names of names selected by the patterns, in
// pattern order and by name within a pattern, each once.
func matchMetrics(patterns []string, names map[string]bool) []string {
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	seen := map[string]bool{}
	var out []string
	for _, p := range patterns {
		for _, n := range sorted {
			if ok, _ := path.Match(p, n); (ok || p == n) && !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	return out
}

// runNames labels runs by directory base name, or by the cleaned path when
// two base names are equal.
func runNames(dirs []string) []string {
	count := map[string]int{}
	for _, d := range dirs {
		count[filepath.Base(filepath.Clean(d))]++
	}
	out := make([]string, len(dirs))
	for i, d := range dirs {
		out[i] = filepath.Base(filepath.Clean(d))
		if count[out[i]] > 1 {
			out[i] = filepath.Clean(d)
		}
	}
	return out
}

// RunNames labels run directories as compare does: by base name, or by the cleaned path when two base
// names are equal.
func RunNames(dirs []string) []string { return runNames(dirs) }

// DiffRunConfigs returns the config.yaml keys (flattened as compare flattens them) whose values differ
// between the run directories; a run without a config.yaml is left out of the comparison.
func DiffRunConfigs(dirs []string) ([]ConfigDiff, error) {
	flat, err := readFlatConfigs(dirs)
	if err != nil {
		return nil, err
	}
	return diffConfigs(flat), nil
}

// readFlatConfigs reads each run's config.yaml flattened (nil for a run without one).
func readFlatConfigs(dirs []string) ([]map[string]string, error) {
	flat := make([]map[string]string, len(dirs))
	for i, d := range dirs {
		f, err := readFlatConfig(filepath.Join(d, "config.yaml"))
		if err != nil {
			return nil, fmt.Errorf("config of run %s: %w", d, err)
		}
		flat[i] = f
	}
	return flat, nil
}

// CompareRuns compares the runs in dirs on the metrics (names or path.Match
// patterns, whose "*" does not cross a "/"; DefaultCompareMetrics when empty) with last-k means over k
// records (DefaultCompareLast when k <= 0). Every directory needs a readable
// metrics.jsonl; config.yaml is optional.
func CompareRuns(dirs []string, metrics []string, k int) (*Comparison, error) {
	if len(dirs) == 0 {
		return nil, errors.New("compare: no run directories")
	}
	if len(metrics) == 0 {
		metrics = DefaultCompareMetrics
	}
	if k <= 0 {
		k = DefaultCompareLast
	}
	names := runNames(dirs)
	cmp := &Comparison{Last: k}
	runs, err := readRuns(dirs)
	if err != nil {
		return nil, fmt.Errorf("compare: %w", err)
	}
	for i, rs := range runs {
		cmp.Runs = append(cmp.Runs, CompareRun{Name: names[i], Dir: dirs[i], Records: rs.records})
	}
	for _, sm := range stageMetrics(runs, metrics) {
		stage, m := sm[0], sm[1]
		row := MetricRow{Stage: stage, Metric: m, Goal: MetricGoal(m), Runs: make([]*RunStat, len(runs))}
		for i, rs := range runs {
			if s := rs.byStage[stage][m]; s != nil && len(s.pts) > 0 {
				row.Runs[i] = summarize(s.xys(), row.Goal, k)
			}
		}
		cmp.Metrics = append(cmp.Metrics, row)
	}
	flat, err := readFlatConfigs(dirs)
	if err != nil {
		return nil, fmt.Errorf("compare: %w", err)
	}
	for i, f := range flat {
		cmp.Runs[i].Config = f != nil
	}
	cmp.Config = diffConfigs(flat)
	return cmp, nil
}

// readRuns reads the metrics of each run directory.
func readRuns(dirs []string) ([]*runSeries, error) {
	runs := make([]*runSeries, len(dirs))
	for i, d := range dirs {
		rs, err := readRunSeries(d)
		if err != nil {
			return nil, fmt.Errorf("run %s: %w", d, err)
		}
		runs[i] = rs
	}
	return runs, nil
}

// stageMetrics lists the (stage, metric) pairs to show: stages in the order the runs first have them, and
// in each the metrics matching patterns that at least one run has points of.
func stageMetrics(runs []*runSeries, patterns []string) [][2]string {
	var stages []string
	seen := map[string]bool{}
	for _, rs := range runs {
		for _, s := range rs.stages {
			if !seen[s] {
				seen[s] = true
				stages = append(stages, s)
			}
		}
	}
	var out [][2]string
	for _, stage := range stages {
		present := map[string]bool{}
		for _, rs := range runs {
			for m, s := range rs.byStage[stage] {
				if len(s.pts) > 0 {
					present[m] = true
				}
			}
		}
		for _, m := range matchMetrics(patterns, present) {
			out = append(out, [2]string{stage, m})
		}
	}
	return out
}

// summarize computes a series' final, best and last-k mean (xy sorted by step, non-empty).
func summarize(xy plotter.XYs, goal string, k int) *RunStat {
	last := xy[len(xy)-1]
	st := &RunStat{Final: last.Y, FinalStep: int(last.X), Best: xy[0].Y, BestStep: int(xy[0].X), Points: len(xy),
		Min: xy[0].Y, Max: xy[0].Y}
	for _, p := range xy[1:] {
		st.Min, st.Max = min(st.Min, p.Y), max(st.Max, p.Y)
		if (goal == "min" && p.Y < st.Best) || (goal != "min" && p.Y > st.Best) {
			st.Best, st.BestStep = p.Y, int(p.X)
		}
	}
	n := min(k, len(xy))
	sum := 0.0
	for _, p := range xy[len(xy)-n:] {
		sum += p.Y
	}
	st.LastMean = sum / float64(n)
	return st
}

// readFlatConfig reads a config.yaml flattened into dotted keys; nil (no
// error) when the file does not exist.
func readFlatConfig(file string) (map[string]string, error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	out := map[string]string{}
	flatten("", doc, out)
	return out, nil
}

// flatten writes v's scalars into out under dotted keys. A list whose items
// are all maps with a distinct string "name" is keyed by name (stages.rl_math.…),
// another list of maps by index; a list of scalars is one value ([a, b]).
func flatten(prefix string, v any, out map[string]string) {
	join := func(k string) string {
		if prefix == "" {
			return k
		}
		return prefix + "." + k
	}
	switch t := v.(type) {
	case map[string]any:
		if len(t) == 0 {
			out[prefix] = "{}"
		}
		for k, x := range t {
			flatten(join(k), x, out)
		}
	case []any:
		if len(t) == 0 {
			out[prefix] = "[]"
			return
		}
		if keys, ok := listNames(t); ok {
			for i, x := range t {
				flatten(join(keys[i]), x, out)
			}
			return
		}
		scalars := true
		for _, x := range t {
			switch x.(type) {
			case map[string]any, []any:
				scalars = false
			}
		}
		if scalars {
			parts := make([]string, len(t))
			for i, x := range t {
				parts[i] = scalarString(x)
			}
			out[prefix] = "[" + strings.Join(parts, ", ") + "]"
			return
		}
		for i, x := range t {
			flatten(join(strconv.Itoa(i)), x, out)
		}
	default:
		out[prefix] = scalarString(t)
	}
}

// listNames returns the "name" of every item when all are maps with distinct string names.
func listNames(items []any) ([]string, bool) {
	keys := make([]string, len(items))
	seen := map[string]bool{}
	for i, x := range items {
		m, ok := x.(map[string]any)
		if !ok {
			return nil, false
		}
		n, ok := m["name"].(string)
		if !ok || n == "" || seen[n] {
			return nil, false
		}
		seen[n] = true
		keys[i] = n
	}
	return keys, true
}

func scalarString(v any) string {
	switch t := v.(type) {
	case nil:
		return "null"
	case string:
		return t
	case float64:
		return strconv.FormatFloat(t, 'g', -1, 64)
	}
	return fmt.Sprint(v)
}

// diffConfigs lists the keys whose values are not the same in every run with
// a config (runs without one, nil maps, are left out of the comparison).
func diffConfigs(flat []map[string]string) []ConfigDiff {
	keys := map[string]bool{}
	for _, f := range flat {
		for k := range f {
			keys[k] = true
		}
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	var out []ConfigDiff
	for _, k := range sorted {
		vals := make([]string, len(flat))
		first, differs, have := "", false, false
		for i, f := range flat {
			if f == nil {
				continue
			}
			v, ok := f[k]
			if !ok {
				v = absentValue
			}
			vals[i] = v
			if !have {
				first, have = v, true
			} else if v != first {
				differs = true
			}
		}
		if differs {
			out = append(out, ConfigDiff{Key: k, Values: vals})
		}
	}
	return out
}

// formatValue prints a metric value in at most 5 significant digits.
func formatValue(v float64) string { return strconv.FormatFloat(v, 'g', 5, 64) }

// WriteText prints the comparison as aligned tables: the runs, one line per
// stage, metric and run (final, best, last-k mean, each with its step), and
// the differing config keys with one column per run.
func (c *Comparison) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "run\tdir\trecords")
	for _, r := range c.Runs {
		fmt.Fprintf(tw, "%s\t%s\t%d\n", r.Name, r.Dir, r.Records)
	}
	fmt.Fprintln(tw)
	if len(c.Metrics) == 0 {
		fmt.Fprintln(tw, "(no matching metrics)")
	} else {
		fmt.Fprintf(tw, "stage\tmetric\tgoal\trun\tfinal\t@step\tbest\t@step\tlast-%d mean\tpoints\n", c.Last)
		for _, m := range c.Metrics {
			for i, s := range m.Runs {
				if s == nil {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t-\t\t-\t\t-\t0\n", m.Stage, m.Metric, m.Goal, c.Runs[i].Name)
					continue
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%d\t%s\t%d\n", m.Stage, m.Metric, m.Goal, c.Runs[i].Name,
					formatValue(s.Final), s.FinalStep, formatValue(s.Best), s.BestStep, formatValue(s.LastMean), s.Points)
			}
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(c.Config) == 0 {
		fmt.Fprintln(tw, "config: no differing keys")
		return tw.Flush()
	}
	fmt.Fprint(tw, "config key")
	for _, r := range c.Runs {
		fmt.Fprintf(tw, "\t%s", r.Name)
	}
	fmt.Fprintln(tw)
	for _, d := range c.Config {
		fmt.Fprint(tw, d.Key)
		for _, v := range d.Values {
			if v == "" {
				v = "-"
			}
			fmt.Fprintf(tw, "\t%s", v)
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

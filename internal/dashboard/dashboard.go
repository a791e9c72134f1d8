// dashboard.go: the handler of the page and its JSON APIs over run directories, and the address rule.

package dashboard

import (
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/sparrow-rl/sparrow/internal/telemetry"
	"github.com/sparrow-rl/sparrow/trainer"
)

//go:embed static
var static embed.FS

// ErrNotLoopback is the error of a dashboard address whose host is not a loopback address, without
// --allow-remote.
var ErrNotLoopback = errors.New("dashboard: the address is not a loopback address")

// ListenAddr returns the address to bind for addr with internal/telemetry's rule: a bare port or ":PORT"
// binds 127.0.0.1, a loopback host is kept, any other host is ErrNotLoopback unless allowRemote.
func ListenAddr(addr string, allowRemote bool) (string, error) {
	bind, err := telemetry.ListenAddr(addr, allowRemote)
	if errors.Is(err, telemetry.ErrNotLoopback) {
		return "", fmt.Errorf("%w: %q may be reached from other machines, and the dashboard has no authentication: "+
			"allow it explicitly (--allow-remote), or use a loopback host (127.0.0.1)", ErrNotLoopback, addr)
	}
	if err != nil {
		return "", fmt.Errorf("dashboard: %w", err)
	}
	return bind, nil
}

// Handler serves the dashboard of the run directories dirs.
type Handler struct {
	dirs  []string
	names []string
	mux   *http.ServeMux
}

// New returns the handler of the dashboard over dirs (each must be a directory; its files may not exist
// yet: a run that is starting).
func New(dirs []string) (*Handler, error) {
	if len(dirs) == 0 {
		return nil, errors.New("dashboard: no run directories")
	}
	for _, d := range dirs {
		st, err := os.Stat(d)
		if err != nil {
			return nil, fmt.Errorf("dashboard: run directory: %w", err)
		}
		if !st.IsDir() {
			return nil, fmt.Errorf("dashboard: run directory %s: not a directory", d)
		}
	}
	h := &Handler{dirs: dirs, names: trainer.RunNames(dirs), mux: http.NewServeMux()}
	sub, err := fs.Sub(static, "static")
	if err != nil {
		return nil, fmt.Errorf("dashboard: static assets: %w", err)
	}
	h.mux.Handle("/", http.FileServer(http.FS(sub)))
	h.mux.HandleFunc("/api/runs", h.runs)
	h.mux.HandleFunc("/api/metrics", h.metrics)
	h.mux.HandleFunc("/api/rollouts", h.rollouts)
	return h, nil
}

// ServeHTTP serves the page and the APIs.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	h.mux.ServeHTTP(w, r)
}

// Stage is one stage of a run's timeline: its steps and the times of its first and last records.
type Stage struct {
	Name      string    `json:"name"`
	FirstStep int       `json:"first_step"`
	LastStep  int       `json:"last_step"`
	Start     time.Time `json:"start"`
	End       time.Time `json:"end"`
	Records   int       `json:"records"`
}

// Run is one run of /api/runs.
type Run struct {
	Name     string  `json:"name"`
	Dir      string  `json:"dir"`
	Records  int     `json:"records"`
	Stages   []Stage `json:"stages"`
	Rollouts bool    `json:"rollouts"` // the run has a rollouts.jsonl
}

// Runs is the answer of /api/runs.
type Runs struct {
	Runs   []Run                `json:"runs"`
	Config []trainer.ConfigDiff `json:"config"`
}

// Record is one metrics.jsonl record; a non-finite value is null.
type Record struct {
	Time   time.Time           `json:"time"`
	Stage  string              `json:"stage"`
	Step   int                 `json:"step"`
	Values map[string]*float64 `json:"values"`
}

// Metrics is the answer of /api/metrics: the records from Since on and Next, the since of the next poll.
// Reset says the file now holds fewer records than since asked for (a resumed run trimmed it): Records
// are then all of them, from 0.
type Metrics struct {
	Since   int      `json:"since"`
	Next    int      `json:"next"`
	Reset   bool     `json:"reset"`
	Records []Record `json:"records"`
}

// RolloutStep is one (kind, stage, step) that rollouts.jsonl has lines of, with their number.
type RolloutStep struct {
	Kind  string `json:"kind"`
	Stage string `json:"stage"`
	Step  int    `json:"step"`
	Lines int    `json:"lines"`
}

// Rollouts is the answer of /api/rollouts: every step there is, and the lines of the one asked for.
type Rollouts struct {
	Steps []RolloutStep     `json:"steps"`
	Kind  string            `json:"kind"`
	Stage string            `json:"stage"`
	Step  int               `json:"step"`
	Lines []json.RawMessage `json:"lines"`
}

// readRecords reads a run's metrics.jsonl; a run without one yet has no records.
func readRecords(dir string) ([]trainer.Record, error) {
	recs, err := trainer.ReadMetrics(filepath.Join(dir, "metrics.jsonl"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return recs, err
}

// stagesOf returns the stages of recs in order of first appearance.
func stagesOf(recs []trainer.Record) []Stage {
	var out []Stage
	idx := map[string]int{}
	for _, r := range recs {
		i, ok := idx[r.Stage]
		if !ok {
			i = len(out)
			idx[r.Stage] = i
			out = append(out, Stage{Name: r.Stage, FirstStep: r.Step, LastStep: r.Step, Start: r.Time, End: r.Time})
		}
		s := &out[i]
		s.Records++
		s.FirstStep, s.LastStep = min(s.FirstStep, r.Step), max(s.LastStep, r.Step)
		if r.Time.Before(s.Start) {
			s.Start = r.Time
		}
		if r.Time.After(s.End) {
			s.End = r.Time
		}
	}
	return out
}

func (h *Handler) runs(w http.ResponseWriter, r *http.Request) {
	out := Runs{Runs: make([]Run, len(h.dirs))}
	for i, d := range h.dirs {
		recs, err := readRecords(d)
		if err != nil {
			httpError(w, http.StatusInternalServerError, err)
			return
		}
		_, rerr := os.Stat(filepath.Join(d, trainer.RolloutsFile))
		out.Runs[i] = Run{Name: h.names[i], Dir: d, Records: len(recs), Stages: stagesOf(recs), Rollouts: rerr == nil}
	}
	diff, err := trainer.DiffRunConfigs(h.dirs)
	if err != nil {
		httpError(w, http.StatusInternalServerError, fmt.Errorf("dashboard: %w", err))
		return
	}
	out.Config = diff
	writeJSON(w, out)
}

// runIndex reads the query's run parameter.
func (h *Handler) runIndex(r *http.Request) (int, error) {
	s := r.URL.Query().Get("run")
	if s == "" {
		return 0, nil
	}
	i, err := strconv.Atoi(s)
	if err != nil || i < 0 || i >= len(h.dirs) {
		return 0, fmt.Errorf("dashboard: run %q: want 0..%d", s, len(h.dirs)-1)
	}
	return i, nil
}

func (h *Handler) metrics(w http.ResponseWriter, r *http.Request) {
	i, err := h.runIndex(r)
	if err != nil {
		httpError(w, http.StatusBadRequest, err)
		return
	}
	since := 0
	if s := r.URL.Query().Get("since"); s != "" {
		if since, err = strconv.Atoi(s); err != nil || since < 0 {
			httpError(w, http.StatusBadRequest, fmt.Errorf("dashboard: since %q: want a record count >= 0", s))
			return
		}
	}
	recs, err := readRecords(h.dirs[i])
	if err != nil {
		httpError(w, http.StatusInternalServerError, err)
		return
	}
	out := Metrics{Since: since, Next: len(recs), Records: []Record{}}
	if since > len(recs) {
		out.Since, out.Reset = 0, true
	}
	for _, rec := range recs[out.Since:] {
		vals := make(map[string]*float64, len(rec.Values))
		for k, v := range rec.Values {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				vals[k] = nil
				continue
			}
			vals[k] = &v
		}
		out.Records = append(out.Records, Record{Time: rec.Time, Stage: rec.Stage, Step: rec.Step, Values: vals})
	}
	writeJSON(w, out)
}

// rolloutHead is the part of a rollouts.jsonl line the index needs.
type rolloutHead struct {
	Kind    string `json:"kind"`
	Stage   string `json:"stage"`
	Step    int    `json:"step"`
	GroupID string `json:"group_id"`
	ID      string `json:"id"`
}

type rolloutLine struct {
	head rolloutHead
	raw  json.RawMessage
}

// readRollouts reads a run's rollouts.jsonl (none yet: no lines). A line that does not parse is an error,
// except an unterminated last one (a write in progress).
func readRollouts(dir string) ([]rolloutLine, error) {
	path := filepath.Join(dir, trainer.RolloutsFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	var out []rolloutLine
	err = trainer.EachJSONLine(data, func(lineNo int, line []byte, terminated bool) error {
		var h rolloutHead
		if err := json.Unmarshal(line, &h); err != nil {
			if !terminated {
				return nil // a line being written
			}
			return fmt.Errorf("dashboard: %s:%d: %w", path, lineNo, err)
		}
		out = append(out, rolloutLine{head: h, raw: json.RawMessage(line)})
		return nil
	})
	return out, err
}

func (h *Handler) rollouts(w http.ResponseWriter, r *http.Request) {
	i, err := h.runIndex(r)
	if err != nil {
		httpError(w, http.StatusBadRequest, err)
		return
	}
	q := r.URL.Query()
	kind := q.Get("kind")
	if kind == "" {
		kind = trainer.RolloutKindTrain
	}
	if kind != trainer.RolloutKindTrain && kind != trainer.RolloutKindEval {
		httpError(w, http.StatusBadRequest, fmt.Errorf("dashboard: kind %q: want train or eval", kind))
		return
	}
	step := -1
	if s := q.Get("step"); s != "" {
		if step, err = strconv.Atoi(s); err != nil {
			httpError(w, http.StatusBadRequest, fmt.Errorf("dashboard: step %q: %w", s, err))
			return
		}
	}
	stage := q.Get("stage")
	lines, err := readRollouts(h.dirs[i])
	if err != nil {
		httpError(w, http.StatusInternalServerError, err)
		return
	}
	out := Rollouts{Steps: []RolloutStep{}, Kind: kind, Lines: []json.RawMessage{}}
	pos := map[RolloutStep]int{}
	for _, l := range lines {
		k := RolloutStep{Kind: l.head.Kind, Stage: l.head.Stage, Step: l.head.Step}
		if j, ok := pos[k]; ok {
			out.Steps[j].Lines++
			continue
		}
		pos[k] = len(out.Steps)
		k.Lines = 1
		out.Steps = append(out.Steps, k)
	}
	if step < 0 { // the newest step of the kind (of the stage, when given)
		for _, s := range out.Steps {
			if s.Kind == kind && (stage == "" || s.Stage == stage) {
				out.Stage, out.Step = s.Stage, s.Step
			}
		}
		stage = out.Stage
		step = out.Step
	}
	out.Stage, out.Step = stage, step
	// A resumed run appends the steps it redoes again: the later line of a group (or eval task) wins.
	seen := map[string]int{}
	for _, l := range lines {
		if l.head.Kind != kind || l.head.Step != step || (stage != "" && l.head.Stage != stage) {
			continue
		}
		if out.Stage == "" {
			out.Stage = l.head.Stage
		}
		id := l.head.GroupID + "\x00" + l.head.ID
		if j, ok := seen[id]; ok && id != "\x00" {
			out.Lines[j] = l.raw
			continue
		}
		seen[id] = len(out.Lines)
		out.Lines = append(out.Lines, l.raw)
	}
	writeJSON(w, out)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// the client went away mid-answer; nothing more to send
		return
	}
}

func httpError(w http.ResponseWriter, code int, err error) {
	http.Error(w, err.Error(), code)
}

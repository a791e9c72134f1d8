// Tests of the dashboard's APIs and page over the run directories of two real tiny rl runs (3 steps,
// rl.log_samples 2, an evaluation every 2 steps, rl.beta differing), and of its address rule.

package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/trainer"
)

var (
	runsOnce sync.Once
	runDirs  []string
	runsErr  error
	runsRoot string
)

// TestMain removes the runs' directory the tests share.
func TestMain(m *testing.M) {
	code := m.Run()
	if runsRoot != "" {
		os.RemoveAll(runsRoot)
	}
	os.Exit(code)
}

// tinyRuns runs (once per test binary) two 3-step tiny rl runs that log rollouts and differ in rl.beta.
func tinyRuns(t *testing.T) []string {
	t.Helper()
	runsOnce.Do(func() {
		runsRoot, runsErr = os.MkdirTemp("", "sparrow-dashboard-")
		if runsErr != nil {
			return
		}
		for _, beta := range []string{"0", "0.01"} {
			cfg, err := configs.Load("tiny", []string{"run.progress=off", "run.plots=false", "run.tensorboard=false",
				"train.steps=3", "schedule.warmup_steps=1", "rl.env=math", "rl.env_params={digits: \"1\"}", "rl.group_size=3",
				"rl.prompts_per_step=2", "rl.max_new_tokens=16", "rl.max_prompt_tokens=32", "rl.eval_tasks=2", "rl.eval_every=2",
				"rl.log_samples=2", "rl.beta=" + beta, "stages.pretrain.kind=rl", "stages.pretrain.name=rl_math"})
			if err != nil {
				runsErr = err
				return
			}
			dir := filepath.Join(runsRoot, "beta-"+beta)
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			if err := trainer.Execute(context.Background(), cfg, trainer.Options{Dir: dir, Log: log}); err != nil {
				runsErr = err
				return
			}
			runDirs = append(runDirs, dir)
		}
	})
	if runsErr != nil {
		t.Fatal(runsErr)
	}
	return runDirs
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v: %s", url, err, body)
	}
}

func TestListenAddr(t *testing.T) {
	for in, want := range map[string]string{":8060": "127.0.0.1:8060", "8060": "127.0.0.1:8060", "localhost:0": "localhost:0", "[::1]:80": "[::1]:80"} {
		if got, err := ListenAddr(in, false); err != nil || got != want {
			t.Errorf("ListenAddr(%q, false) = %q, %v; want %q", in, got, err, want)
		}
	}
	_, err := ListenAddr("0.0.0.0:8060", false)
	if !errors.Is(err, ErrNotLoopback) || !strings.Contains(err.Error(), "--allow-remote") {
		t.Errorf("ListenAddr(0.0.0.0:8060, false) = %v; want ErrNotLoopback naming --allow-remote", err)
	}
	if got, err := ListenAddr("0.0.0.0:8060", true); err != nil || got != "0.0.0.0:8060" {
		t.Errorf("ListenAddr(0.0.0.0:8060, true) = %q, %v", got, err)
	}
	if _, err := ListenAddr("host:port:x", false); err == nil {
		t.Error("ListenAddr of a malformed address: no error")
	}
}

func TestNewRefusesMissingDir(t *testing.T) {
	if _, err := New(nil); err == nil {
		t.Error("New(nil): no error")
	}
	if _, err := New([]string{filepath.Join(t.TempDir(), "nope")}); err == nil {
		t.Error("New of a missing directory: no error")
	}
}

// TestAPIs: /api/runs names the runs, their stage and the differing config key; /api/metrics returns every
// record, then none after next, and all again (reset) when since passes the end; /api/rollouts lists the
// logged steps and returns the newest train step's groups and an evaluation's lines; the page and its
// vendored chart library are served.
func TestAPIs(t *testing.T) {
	dirs := tinyRuns(t)
	h, err := New(dirs)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	var runs Runs
	getJSON(t, srv.URL+"/api/runs", &runs)
	if len(runs.Runs) != 2 || runs.Runs[0].Name != "beta-0" || runs.Runs[1].Name != "beta-0.01" {
		t.Fatalf("runs = %+v", runs.Runs)
	}
	for _, r := range runs.Runs {
		if len(r.Stages) != 1 || r.Stages[0].Name != "rl_math" || r.Stages[0].LastStep != 3 || !r.Rollouts || r.Stages[0].End.Before(r.Stages[0].Start) {
			t.Errorf("run %s: stages %+v, rollouts %v", r.Name, r.Stages, r.Rollouts)
		}
	}
	found := false
	for _, d := range runs.Config {
		if strings.HasSuffix(d.Key, "rl.beta") && len(d.Values) == 2 && d.Values[0] != d.Values[1] {
			found = true
		}
	}
	if !found {
		t.Errorf("config differences lack rl.beta: %+v", runs.Config)
	}

	recs, err := trainer.ReadMetrics(filepath.Join(dirs[0], "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var m Metrics
	getJSON(t, srv.URL+"/api/metrics?run=0", &m)
	if m.Next != len(recs) || len(m.Records) != len(recs) || m.Reset {
		t.Fatalf("metrics: next %d, %d records, reset %v; want %d", m.Next, len(m.Records), m.Reset, len(recs))
	}
	rewards := 0
	for _, r := range m.Records {
		if v, ok := r.Values["reward/mean"]; ok && v != nil {
			rewards++
		}
	}
	if rewards != 3 {
		t.Errorf("%d records with reward/mean; want 3 (one per step)", rewards)
	}
	var again Metrics
	getJSON(t, srv.URL+"/api/metrics?run=0&since="+itoa(m.Next), &again)
	if len(again.Records) != 0 || again.Next != m.Next {
		t.Errorf("metrics since next: %d records, next %d", len(again.Records), again.Next)
	}
	getJSON(t, srv.URL+"/api/metrics?run=0&since=100000", &again)
	if !again.Reset || len(again.Records) != len(recs) {
		t.Errorf("metrics since past the end: reset %v, %d records", again.Reset, len(again.Records))
	}

	var ro Rollouts
	getJSON(t, srv.URL+"/api/rollouts?run=1&kind=train", &ro)
	if ro.Step != 3 || ro.Stage != "rl_math" || len(ro.Lines) != 2 {
		t.Fatalf("rollouts: stage %q step %d, %d lines; want rl_math 3, 2", ro.Stage, ro.Step, len(ro.Lines))
	}
	var g trainer.RolloutGroup
	if err := json.Unmarshal(ro.Lines[0], &g); err != nil {
		t.Fatal(err)
	}
	if g.Kind != "train" || len(g.Completions) != 3 || len(g.Completions[0].Tokens) == 0 || g.Completions[0].Advantage == nil {
		t.Errorf("train line: %+v", g)
	}
	trainSteps, evalSteps := 0, 0
	for _, s := range ro.Steps {
		switch s.Kind {
		case "train":
			trainSteps++
		case "eval":
			evalSteps++
		}
	}
	if trainSteps != 3 || evalSteps < 2 {
		t.Errorf("steps %+v: want 3 train steps and at least 2 evaluations", ro.Steps)
	}
	getJSON(t, srv.URL+"/api/rollouts?run=1&kind=eval&stage=rl_math&step=0", &ro)
	var ev trainer.RolloutEval
	if len(ro.Lines) != 2 || json.Unmarshal(ro.Lines[0], &ev) != nil || ev.Kind != "eval" || ev.Prompt == "" {
		t.Errorf("eval lines at step 0: %d (%+v)", len(ro.Lines), ev)
	}

	for _, bad := range []string{"/api/metrics?run=2", "/api/metrics?run=x", "/api/metrics?since=-1", "/api/rollouts?kind=sample", "/api/rollouts?step=x"} {
		resp, err := http.Get(srv.URL + bad)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("GET %s: %s; want 400", bad, resp.Status)
		}
	}
	for path, want := range map[string]string{"/": "vendor/uPlot.iife.min.js", "/app.js": "api/rollouts", "/vendor/uPlot.iife.min.js": "uPlot", "/style.css": ".tok"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %s, body lacks %q", path, resp.Status, want)
		}
	}
}

// TestRunStarting: a run directory without files yet (a run that is starting) has no records and no rollouts.
func TestRunStarting(t *testing.T) {
	h, err := New([]string{t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	var runs Runs
	getJSON(t, srv.URL+"/api/runs", &runs)
	if len(runs.Runs) != 1 || len(runs.Runs[0].Stages) != 0 || runs.Runs[0].Rollouts {
		t.Errorf("runs = %+v", runs)
	}
	var m Metrics
	getJSON(t, srv.URL+"/api/metrics?run=0", &m)
	var ro Rollouts
	getJSON(t, srv.URL+"/api/rollouts?run=0", &ro)
	if len(m.Records) != 0 || len(ro.Lines) != 0 || len(ro.Steps) != 0 {
		t.Errorf("metrics %+v, rollouts %+v", m, ro)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestLiveMetrics: records a run appends after a poll come back from since=next, and a torn last line (a
// write in progress) is left for the next poll.
func TestLiveMetrics(t *testing.T) {
	dir := t.TempDir()
	m, err := trainer.OpenMetrics(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	h, err := New([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	var got Metrics
	for step := 1; step <= 2; step++ {
		if err := m.Log("rl_math", step, map[string]float64{"reward/mean": float64(step) / 4}); err != nil {
			t.Fatal(err)
		}
	}
	getJSON(t, srv.URL+"/api/metrics?run=0", &got)
	if got.Next != 2 || len(got.Records) != 2 {
		t.Fatalf("after 2 steps: next %d, %d records", got.Next, len(got.Records))
	}
	if err := m.Log("rl_math", 3, map[string]float64{"reward/mean": 0.75}); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "metrics.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"time":"2026-01-01T00:00:00Z","stage":"rl_ma`)
	f.Close()
	since := got.Next
	getJSON(t, srv.URL+"/api/metrics?run=0&since="+strconv.Itoa(since), &got)
	if got.Next != 3 || len(got.Records) != 1 || got.Records[0].Step != 3 || *got.Records[0].Values["reward/mean"] != 0.75 {
		t.Errorf("after step 3: next %d, records %+v", got.Next, got.Records)
	}
}

package telemetry

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Scrape fetches url and parses it with the Prometheus text parser.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing %s: %v", url, err)
	}
	return fams
}

// value is the value of the family's series whose labels include labels (name, value pairs).
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("no family %s", name)
	}
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		}
	}
	t.Fatalf("family %s has no series %v", name, labels)
	return 0
}

func TestListenAddr(t *testing.T) {
	for _, c := range []struct {
		in, want string
		remote   bool
	}{
		{":9090", "127.0.0.1:9090", false}, {"9090", "127.0.0.1:9090", false}, {"127.0.0.1:0", "127.0.0.1:0", false},
		{"localhost:9090", "localhost:9090", false}, {"[::1]:9090", "[::1]:9090", false}, {"127.0.0.2:1", "127.0.0.2:1", false},
		{"0.0.0.0:9090", "0.0.0.0:9090", true}, {"10.1.2.3:9090", "10.1.2.3:9090", true},
	} {
		got, err := ListenAddr(c.in, c.remote)
		if err != nil || got != c.want {
			t.Errorf("ListenAddr(%q, %v) = %q, %v; want %q", c.in, c.remote, got, err, c.want)
		}
	}
	for _, in := range []string{"0.0.0.0:9090", "[::]:9090", "10.1.2.3:9090", "example.com:9090"} {
		_, err := ListenAddr(in, false)
		if !errors.Is(err, ErrNotLoopback) || !strings.Contains(err.Error(), "--metrics-allow-remote") {
			t.Errorf("ListenAddr(%q, false) = %v; want ErrNotLoopback naming --metrics-allow-remote", in, err)
		}
	}
	for _, in := range []string{"", "localhost", "host:port:1", ":http-nope"} {
		if _, err := ListenAddr(in, true); err == nil {
			t.Errorf("ListenAddr(%q) accepted", in)
		}
	}
}

func TestServeRefusesRemoteHost(t *testing.T) {
	s, err := New().Serve(context.Background(), "0.0.0.0:0")
	if !errors.Is(err, ErrNotLoopback) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("Serve(0.0.0.0:0) = %v; want ErrNotLoopback", err)
	}
}

type fakeWorker struct{}

func (fakeWorker) Groups() int64            { return 7 }
func (fakeWorker) Tokens() int64            { return 140 }
func (fakeWorker) Version() int64           { return 3 }
func (fakeWorker) Swaps() int64             { return 2 }
func (fakeWorker) Errors() map[string]int64 { return map[string]int64{"failed": 1, "publish": 4} }

// TestServeLearnerAndWorker: records fed to a Learner and a source attached to a Worker come out of
// /metrics, parsed with the Prometheus text parser; counters follow the running totals by their increase.
func TestServeLearnerAndWorker(t *testing.T) {
	tel := New()
	tel.Log = nil
	l := NewLearner(tel.Registry)
	w := NewWorker(tel.Registry)
	ctx, cancel := context.WithCancel(context.Background())
	s, err := tel.Serve(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}

	fams := scrape(t, s.URL()) // before any record: the families exist at zero
	for _, name := range []string{"sparrow_learner_steps_total", "sparrow_learner_policy_version", "sparrow_bus_queue_depth",
		"sparrow_worker_groups_total", "go_goroutines"} {
		if v := value(t, fams, name); v != 0 && name != "go_goroutines" {
			t.Errorf("%s = %g before any record, want 0", name, v)
		}
	}
	if v := value(t, fams, "sparrow_bus_messages_total", "kind", "forged"); v != 0 {
		t.Errorf("forged = %g, want 0", v)
	}

	l.ObserveStep("rl", 1, map[string]float64{"policy_version": 1, "reward/mean": 0.5, "reward/accuracy": 0.25,
		"staleness/mean": 0.5, "staleness/max": 1, "rollout/live_workers": 2, "rollout/tokens_per_s": 100,
		"rollout/groups_per_s": 4, "timing_s/rollout": 1.5, "timing_s/train": 0.5, "rollout/dropped_stale": 1,
		"rollout/dropped_zero_std": 2, "bus/duplicate": 3, "bus/data_wait_frac": 0.9})
	l.ObserveStep("rl", 2, map[string]float64{"policy_version": 2, "rollout/dropped_stale": 1, "timing_s/rollout": 1, "timing_s/train": 1,
		"rollout/dropped_zero_std": 1, "bus/duplicate": 5})
	l.ObserveStep("rl", 2, map[string]float64{"eval/math/accuracy": 0.5}) // an eval record of the same step
	l.WatchQueue(func() int { return 6 })
	w.Attach(fakeWorker{})

	fams = scrape(t, s.URL())
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"sparrow_learner_steps_total", nil, 2}, {"sparrow_learner_policy_version", nil, 2},
		{"sparrow_learner_step_seconds", nil, 2}, {"sparrow_learner_tokens_per_second", nil, 100},
		{"sparrow_learner_groups_per_second", nil, 4}, {"sparrow_reward_mean", nil, 0.5},
		{"sparrow_reward_accuracy", nil, 0.25}, {"sparrow_staleness_mean", nil, 0.5}, {"sparrow_staleness_max", nil, 1},
		{"sparrow_rollout_live_workers", nil, 2}, {"sparrow_bus_queue_depth", nil, 6},
		{"sparrow_groups_dropped_total", []string{"reason", "stale"}, 1},
		{"sparrow_groups_dropped_total", []string{"reason", "zero_std"}, 3},
		{"sparrow_bus_messages_total", []string{"kind", "duplicate"}, 5},
		{"sparrow_worker_groups_total", nil, 7}, {"sparrow_worker_tokens_total", nil, 140},
		{"sparrow_worker_policy_version", nil, 3}, {"sparrow_worker_weight_swaps_total", nil, 2},
		{"sparrow_worker_errors_total", []string{"kind", "failed"}, 1},
		{"sparrow_worker_errors_total", []string{"kind", "publish"}, 4},
		{"sparrow_worker_errors_total", []string{"kind", "weights"}, 0},
	} {
		if got := value(t, fams, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %g, want %g", c.name, c.labels, got, c.want)
		}
	}
	if _, ok := fams["sparrow_bus_messages_total"]; ok {
		for _, m := range fams["sparrow_bus_messages_total"].GetMetric() {
			if m.GetLabel()[0].GetValue() == "data_wait_frac" {
				t.Error("bus/data_wait_frac exported as a message kind")
			}
		}
	}
	if ft := fams["sparrow_learner_steps_total"].GetType(); ft != dto.MetricType_COUNTER {
		t.Errorf("steps_total is a %v", ft)
	}

	cancel() // the server stops with its context
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get(s.URL())
		if err != nil {
			break
		}
		resp.Body.Close()
		if time.Now().After(deadline) {
			t.Fatal("the endpoint still answers after its context ended")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close after the context ended: %v", err)
	}
}

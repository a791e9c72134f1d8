package trainer

// telemetry_test.go: the Prometheus endpoints of a short RL run, scraped and parsed with the Prometheus text
// parser: the learner's (Options.Observer) on the embedded bus, and a worker process's (natsbus.RunWorkers
// with OnStart) next to a learner.

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/sparrow-rl/sparrow/internal/telemetry"
	"github.com/sparrow-rl/sparrow/rollout/natsbus"
)

func scrapeMetrics(url string) (map[string]*dto.MetricFamily, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(resp.Body)
}

// promValue is the value of family name's series with the label pair (none: the first series); ok is false
// when there is no such series.
func promValue(fams map[string]*dto.MetricFamily, name string, label ...string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		if len(label) == 2 {
			match := false
			for _, lp := range m.GetLabel() {
				match = match || lp.GetName() == label[0] && lp.GetValue() == label[1]
			}
			if !match {
				continue
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		}
	}
	return 0, false
}

// serveTelemetry starts an endpoint on a free loopback port with the families add registers.
func serveTelemetry(t *testing.T, add func(*telemetry.Telemetry)) *telemetry.Server {
	t.Helper()
	tel := telemetry.New()
	tel.Log = quietLog()
	add(tel)
	s, err := tel.Serve(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestPrometheusLearner: 3 GRPO steps on the embedded bus with the learner's endpoint on; scrapes during the
// run parse, and after it the families hold the run's values.
func TestPrometheusLearner(t *testing.T) {
	var l *telemetry.Learner
	s := serveTelemetry(t, func(tel *telemetry.Telemetry) { l = telemetry.NewLearner(tel.Registry) })
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var during int
	var duringErr error
	wg.Add(1)
	go func() { // scrape while the run goes on
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			if _, err := scrapeMetrics(s.URL()); err != nil {
				duringErr = err
				return
			}
			during++
		}
	}()
	cfg := rlTinyConfig(t, "rl.workers=2", "rl.beta=0", "rl.bus.transport=embedded")
	err := Execute(context.Background(), cfg, Options{Dir: t.TempDir(), Log: quietLog(), Observer: l})
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if duringErr != nil || during == 0 {
		t.Errorf("scrapes during the run: %d parsed, error %v", during, duringErr)
	}
	fams, err := scrapeMetrics(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][2]float64{ // inclusive bounds
		"sparrow_learner_steps_total":       {3, 3},
		"sparrow_learner_policy_version":    {3, 3},
		"sparrow_reward_mean":               {0, 1.2},
		"sparrow_reward_accuracy":           {0, 1},
		"sparrow_staleness_mean":            {0, 1},
		"sparrow_staleness_max":             {0, 1},
		"sparrow_learner_step_seconds":      {1e-9, 3600},
		"sparrow_learner_tokens_per_second": {1e-9, 1e9},
		"sparrow_learner_groups_per_second": {1e-9, 1e9},
		"sparrow_rollout_live_workers":      {1, 2},
		"sparrow_bus_queue_depth":           {0, 0}, // the stage ended
	}
	for name, b := range want {
		v, ok := promValue(fams, name)
		if !ok || v < b[0] || v > b[1] {
			t.Errorf("%s = %g (present %v), want in [%g, %g]", name, v, ok, b[0], b[1])
		}
	}
	for _, kind := range telemetry.BusKinds {
		if v, ok := promValue(fams, "sparrow_bus_messages_total", "kind", kind); !ok || v != 0 {
			t.Errorf("sparrow_bus_messages_total{kind=%q} = %g (present %v), want 0 in a clean run", kind, v, ok)
		}
	}
	if v, ok := promValue(fams, "sparrow_groups_dropped_total", "reason", "stale"); !ok || v != 0 {
		t.Errorf("sparrow_groups_dropped_total{reason=stale} = %g (present %v), want 0", v, ok)
	}
}

// TestPrometheusWorkerProcess: a worker process (natsbus.RunWorkers, as `trainer rollout` runs it) next to
// a learner on an embedded NATS server; its endpoint reports the groups and tokens it published, the
// newest version and the swaps, and the learner's reports the live worker.
func TestPrometheusWorkerProcess(t *testing.T) {
	e, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{StoreDir: t.TempDir(), MaxPayload: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown()
	var w *telemetry.Worker
	ws := serveTelemetry(t, func(tel *telemetry.Telemetry) { w = telemetry.NewWorker(tel.Registry) })
	var l *telemetry.Learner
	ls := serveTelemetry(t, func(tel *telemetry.Telemetry) { l = telemetry.NewLearner(tel.Registry) })

	cfg := rlTinyConfig(t, "rl.workers=2", "rl.beta=0", "rl.bus.transport=nats", "rl.bus.url="+e.URL(),
		"rl.bus.local_workers=false", "rl.bus.ack_wait_s=3", "rl.bus.job_ack_wait_s=2", "rl.bus.heartbeat_s=0.5", "rl.bus.wait_s=60")
	st := cfg.Stages[0]
	fam, err := RLFamily(st)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := natsbus.RunWorkers(ctx, natsbus.WorkerOptions{Conn: natsbus.ConnOptions{URL: e.URL()},
			Names: BusNames(cfg, st), RL: st.RL, Family: fam, Workers: 2, Log: quietLog(),
			OnStart: func(p *natsbus.WorkerProbe) { w.Attach(p) }})
		done <- err
	}()
	if err := Execute(ctx, cfg, Options{Dir: t.TempDir(), Log: quietLog(), Observer: l}); err != nil {
		t.Fatalf("learner: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("workers: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("workers still running 60 s after the learner finished")
	}
	fams, err := scrapeMetrics(ws.URL())
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][2]float64{
		"sparrow_worker_groups_total":       {6, 6},
		"sparrow_worker_tokens_total":       {1, 6 * 4 * 20},
		"sparrow_worker_policy_version":     {3, 3},
		"sparrow_worker_weight_swaps_total": {3, 10},
	} {
		v, ok := promValue(fams, name)
		if !ok || v < b[0] || v > b[1] {
			t.Errorf("worker %s = %g (present %v), want in [%g, %g]", name, v, ok, b[0], b[1])
		}
	}
	for _, kind := range telemetry.WorkerErrorKinds {
		if v, ok := promValue(fams, "sparrow_worker_errors_total", "kind", kind); !ok || v != 0 {
			t.Errorf("sparrow_worker_errors_total{kind=%q} = %g (present %v), want 0", kind, v, ok)
		}
	}
	lf, err := scrapeMetrics(ls.URL())
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := promValue(lf, "sparrow_rollout_live_workers"); v != 1 {
		t.Errorf("learner: sparrow_rollout_live_workers = %g, want 1", v)
	}
	if v, _ := promValue(lf, "sparrow_learner_steps_total"); v != 3 {
		t.Errorf("learner: sparrow_learner_steps_total = %g, want 3", v)
	}
}

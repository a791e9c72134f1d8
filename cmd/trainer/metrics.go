// metrics.go: --metrics-addr, the Prometheus /metrics endpoint of `trainer run`, `trainer learn` and
// `trainer rollout` (internal/telemetry). Off by default; an address without a host binds 127.0.0.1, and a
// host that other machines may reach is refused unless --metrics-allow-remote is given too.

package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/sparrow-rl/sparrow/internal/telemetry"
	"github.com/sparrow-rl/sparrow/rollout/natsbus"
	"github.com/sparrow-rl/sparrow/trainer"
)

// metricsFlags are --metrics-addr and --metrics-allow-remote.
type metricsFlags struct {
	addr        string
	allowRemote bool
}

func (f *metricsFlags) register(c *cobra.Command) {
	c.Flags().StringVar(&f.addr, "metrics-addr", "", "serve Prometheus metrics on http://ADDR/metrics, e.g. :9090 (= 127.0.0.1:9090); off when empty")
	c.Flags().BoolVar(&f.allowRemote, "metrics-allow-remote", false, "let --metrics-addr bind a non-loopback host such as 0.0.0.0 (the endpoint has no authentication)")
}

// serve starts the endpoint with the families that reg adds (nil and a no-op stop when --metrics-addr is
// empty). The endpoint ends with ctx or stop.
func (f *metricsFlags) serve(ctx context.Context, log *slog.Logger, add func(*telemetry.Telemetry)) (stop func(), err error) {
	if f.addr == "" {
		return func() {}, nil
	}
	t := telemetry.New()
	t.AllowRemote, t.Log = f.allowRemote, log
	add(t)
	s, err := t.Serve(ctx, f.addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr: %w", err)
	}
	return func() { _ = s.Close() }, nil
}

// learner starts the learner's endpoint and returns the observer that feeds it (nil when off).
func (f *metricsFlags) learner(ctx context.Context, log *slog.Logger) (trainer.Observer, func(), error) {
	var l *telemetry.Learner
	stop, err := f.serve(ctx, log, func(t *telemetry.Telemetry) { l = telemetry.NewLearner(t.Registry) })
	if err != nil || l == nil {
		return nil, stop, err
	}
	return l, stop, nil
}

// worker starts a worker process's endpoint and returns the hook that attaches the workers' counters (nil
// when off).
func (f *metricsFlags) worker(ctx context.Context, log *slog.Logger) (func(*natsbus.WorkerProbe), func(), error) {
	var w *telemetry.Worker
	stop, err := f.serve(ctx, log, func(t *telemetry.Telemetry) { w = telemetry.NewWorker(t.Registry) })
	if err != nil || w == nil {
		return nil, stop, err
	}
	return func(p *natsbus.WorkerProbe) { w.Attach(p) }, stop, nil
}

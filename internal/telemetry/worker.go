// worker.go: a rollout worker process's families, read from its counters when scraped.

package telemetry

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// WorkerErrorKinds are the kinds of sparrow_worker_errors_total, exported at zero before the first error.
var WorkerErrorKinds = []string{"failed", "oversize", "malformed", "weights"}

// WorkerSource is what a running worker process tells (natsbus.WorkerProbe); every method is called
// when /metrics is scraped, from the server's goroutine.
type WorkerSource interface {
	Groups() int64            // groups published
	Tokens() int64            // completion tokens published
	Version() int64           // the policy version of the weights in use
	Swaps() int64             // weight versions swapped in
	Errors() map[string]int64 // by kind
}

// Worker holds a worker process's families; before Attach (the workers wait for the first weights) they
// read zero.
type Worker struct {
	src atomic.Pointer[WorkerSource]
}

// NewWorker registers the worker families with reg.
func NewWorker(reg prometheus.Registerer) *Worker {
	w := &Worker{}
	read := func(f func(WorkerSource) int64) func() float64 {
		return func() float64 {
			if s := w.src.Load(); s != nil {
				return float64(f(*s))
			}
			return 0
		}
	}
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sparrow_worker_groups_total", Help: "Groups this worker process published."},
			read(WorkerSource.Groups)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sparrow_worker_tokens_total", Help: "Completion tokens this worker process published."},
			read(WorkerSource.Tokens)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sparrow_worker_policy_version", Help: "Policy version of the weights the workers sample with."},
			read(WorkerSource.Version)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sparrow_worker_weight_swaps_total", Help: "Weight versions swapped in after the first."},
			read(WorkerSource.Swaps)),
		workerErrors{w: w, desc: prometheus.NewDesc("sparrow_worker_errors_total",
			"Worker-side errors by kind: failed (sampling), oversize (over the max payload), malformed (prompts), weights (a version not fetched or installed).",
			[]string{"kind"}, nil)},
	)
	return w
}

// Attach makes the families read src.
func (w *Worker) Attach(src WorkerSource) {
	if src == nil {
		w.src.Store(nil)
		return
	}
	w.src.Store(&src)
}

// workerErrors collects sparrow_worker_errors_total from the source's error counts.
type workerErrors struct {
	w    *Worker
	desc *prometheus.Desc
}

func (c workerErrors) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c workerErrors) Collect(ch chan<- prometheus.Metric) {
	var counts map[string]int64
	if s := c.w.src.Load(); s != nil {
		counts = (*s).Errors()
	}
	for _, k := range WorkerErrorKinds {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(counts[k]), k)
	}
	for k, v := range counts {
		if !isWorkerErrorKind(k) {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(v), k)
		}
	}
}

func isWorkerErrorKind(k string) bool {
	for _, e := range WorkerErrorKinds {
		if e == k {
			return true
		}
	}
	return false
}

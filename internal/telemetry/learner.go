// learner.go: the learner's families, fed by the trainer's metric records.

package telemetry

import (
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DropReasons are the reasons of sparrow_groups_dropped_total (the trainer's rollout/dropped_<reason>),
// exported at zero before the first drop.
var DropReasons = []string{"failed", "stale", "invalid", "shape", "zero_std"}

// BusKinds are the kinds of sparrow_bus_messages_total (natsbus.Learner.Counts), exported at zero before
// the first message of the kind.
var BusKinds = []string{"malformed", "invalid", "forged", "duplicate", "failed", "oversize", "redelivered", "attention_mismatch"}

// Learner holds the learner's families. ObserveStep feeds it one metric record at a time; it is safe for
// concurrent use.
type Learner struct {
	steps                                prometheus.Counter
	version, stepSeconds                 prometheus.Gauge
	tokensPerS, groupsPerS               prometheus.Gauge
	rewardMean, rewardAcc                prometheus.Gauge
	stalenessMean, stalenessMax, workers prometheus.Gauge
	dropped, bus                         *prometheus.CounterVec

	queue atomic.Pointer[func() int]

	mu       sync.Mutex
	last     map[string]float64 // the cumulative values seen, by stage and metric
	lastTime map[string]time.Time
	now      func() time.Time
}

// NewLearner registers the learner's families with reg.
func NewLearner(reg prometheus.Registerer) *Learner {
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	}
	l := &Learner{
		steps:         prometheus.NewCounter(prometheus.CounterOpts{Name: "sparrow_learner_steps_total", Help: "Optimizer steps of the learner's stages (a resumed stage counts from its checkpoint's step)."}),
		version:       g("sparrow_learner_policy_version", "The newest policy version (rl stages)."),
		stepSeconds:   g("sparrow_learner_step_seconds", "Wall time of the last logged step: rollout plus training (rl), or since the previous record per step."),
		tokensPerS:    g("sparrow_learner_tokens_per_second", "Completion tokens collected per second of rollout (rl), or training tokens per second."),
		groupsPerS:    g("sparrow_learner_groups_per_second", "Groups collected per second of rollout (rl)."),
		rewardMean:    g("sparrow_reward_mean", "Mean reward of the last logged step's groups."),
		rewardAcc:     g("sparrow_reward_accuracy", "Fraction of correct completions in the last logged step."),
		stalenessMean: g("sparrow_staleness_mean", "Mean policy versions between sampling and training in the last logged step."),
		stalenessMax:  g("sparrow_staleness_max", "Largest policy-version lag in the last logged step."),
		workers:       g("sparrow_rollout_live_workers", "Rollout worker processes whose heartbeats are current (NATS transports)."),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sparrow_groups_dropped_total",
			Help: "Groups collected but not trained on, by reason."}, []string{"reason"}),
		bus: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sparrow_bus_messages_total",
			Help: "Trajectory messages the NATS learner terminated or counted, by kind."}, []string{"kind"}),
		last: map[string]float64{}, lastTime: map[string]time.Time{}, now: time.Now,
	}
	for _, r := range DropReasons {
		l.dropped.WithLabelValues(r)
	}
	for _, k := range BusKinds {
		l.bus.WithLabelValues(k)
	}
	queue := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sparrow_bus_queue_depth",
		Help: "Prompts dispatched whose groups the learner has not collected yet (NATS transports)."}, func() float64 {
		if f := l.queue.Load(); f != nil {
			return float64((*f)())
		}
		return 0
	})
	reg.MustRegister(l.steps, l.version, l.stepSeconds, l.tokensPerS, l.groupsPerS, l.rewardMean, l.rewardAcc,
		l.stalenessMean, l.stalenessMax, l.workers, l.dropped, l.bus, queue)
	return l
}

// WatchQueue makes sparrow_bus_queue_depth read depth when scraped; nil reads 0 (no bus).
func (l *Learner) WatchQueue(depth func() int) {
	if depth == nil {
		l.queue.Store(nil)
		return
	}
	l.queue.Store(&depth)
}

// ObserveStep takes one metric record of stage at step (the map the trainer writes to metrics.jsonl) and
// updates the families from its keys: policy_version, reward/mean, reward/accuracy, staleness/mean and /max,
// rollout/live_workers, rollout/tokens_per_s (or tokens_per_s), rollout/groups_per_s, timing_s/rollout and
// /train, rollout/dropped_<reason> and bus/<kind>. Counters are fed from the trainer's running totals (per
// stage) by their increase; rollout/dropped_zero_std is a per-step count and is added. A record without a
// key leaves its family as it was; non-finite values are ignored.
func (l *Learner) ObserveStep(stage string, step int, m map[string]float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if d := l.increase(stage, "step", float64(step)); d > 0 {
		l.steps.Add(d)
		_, hasTiming := m["timing_s/rollout"]
		if t, ok := l.lastTime[stage]; ok && !hasTiming {
			l.stepSeconds.Set(now.Sub(t).Seconds() / d)
		}
		l.lastTime[stage] = now
	}
	set := func(g prometheus.Gauge, keys ...string) {
		for _, k := range keys {
			if v, ok := m[k]; ok && finite(v) {
				g.Set(v)
				return
			}
		}
	}
	set(l.version, "policy_version")
	set(l.rewardMean, "reward/mean")
	set(l.rewardAcc, "reward/accuracy")
	set(l.stalenessMean, "staleness/mean")
	set(l.stalenessMax, "staleness/max")
	set(l.workers, "rollout/live_workers")
	set(l.tokensPerS, "rollout/tokens_per_s", "tokens_per_s")
	set(l.groupsPerS, "rollout/groups_per_s")
	r, okR := m["timing_s/rollout"]
	t, okT := m["timing_s/train"]
	if (okR || okT) && finite(r) && finite(t) {
		l.stepSeconds.Set(r + t)
	}
	for k, v := range m {
		if !finite(v) {
			continue
		}
		switch {
		case k == "rollout/dropped_zero_std":
			if v > 0 {
				l.dropped.WithLabelValues("zero_std").Add(v)
			}
		case strings.HasPrefix(k, "rollout/dropped_"):
			if d := l.increase(stage, k, v); d > 0 {
				l.dropped.WithLabelValues(strings.TrimPrefix(k, "rollout/dropped_")).Add(d)
			}
		case strings.HasPrefix(k, "bus/"):
			kind := strings.TrimPrefix(k, "bus/")
			if !isBusKind(kind) {
				continue
			}
			if d := l.increase(stage, k, v); d > 0 {
				l.bus.WithLabelValues(kind).Add(d)
			}
		}
	}
}

// increase records the running total v of key in stage and returns its increase since the last record
// (all of v the first time, or after it went down: a new count).
func (l *Learner) increase(stage, key string, v float64) float64 {
	id := stage + "\x00" + key
	prev, seen := l.last[id]
	l.last[id] = v
	if !seen || v < prev {
		return v
	}
	return v - prev
}

func isBusKind(k string) bool {
	for _, b := range BusKinds {
		if b == k {
			return true
		}
	}
	return false
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

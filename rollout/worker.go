// worker.go: the one rollout worker loop, driven by every transport (InProc in the learner's process, the
// NATS work queue in worker processes). A worker takes a job, waits until the weights it samples with are
// recent enough for the job (Gate: a version in [job.Version − max_staleness, job.Version]), samples the
// group under a read hold of those weights, and publishes it stamped with their version. New weights are
// swapped in under the write hold, so a swap happens between groups, never inside one.

package rollout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/sparrow-rl/sparrow/data"
)

// ErrJobOld says that the weights are newer than the version a job was dispatched for: the job is handed
// back rather than sampled with the wrong policy (its learner has its group already, or went back to an
// older checkpoint whose weights are on their way).
var ErrJobOld = errors.New("rollout: the weights are newer than the job's policy version")

// Gate guards the versioned weights that workers sample with.
type Gate struct {
	mu       sync.RWMutex // read: a group being sampled; write: a swap
	version  int64
	changed  chan struct{} // closed and replaced at every swap
	maxStale int64
	wait     time.Duration
	log      *slog.Logger
}

// NewGate returns a gate over weights of policy version; a job may be sampled with weights at most
// maxStaleness versions older than it asks for, and Acquire waits at most wait for them (0 = no limit).
func NewGate(version, maxStaleness int64, wait time.Duration, log *slog.Logger) *Gate {
	if log == nil {
		log = slog.Default()
	}
	return &Gate{version: version, changed: make(chan struct{}), maxStale: maxStaleness, wait: wait, log: log}
}

// Version is the policy version of the weights now behind the gate.
func (g *Gate) Version() int64 {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.version
}

// Swap waits for the groups being sampled, runs install (which changes the weights), and on success makes
// version the gate's version.
func (g *Gate) Swap(version int64, install func() error) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if install != nil {
		if err := install(); err != nil {
			return err
		}
	}
	g.version = version
	close(g.changed)
	g.changed = make(chan struct{})
	return nil
}

// Acquire waits until the weights may sample job and holds them until release is called. It returns
// ErrJobOld when they are newer than the job, ctx's error when ctx ends, and an error naming the versions
// when the right ones do not arrive in time.
func (g *Gate) Acquire(ctx context.Context, job Job, worker string) (version int64, release func(), err error) {
	need := job.Version - g.maxStale
	start := time.Now()
	var deadline <-chan time.Time
	if g.wait > 0 {
		t := time.NewTimer(g.wait)
		defer t.Stop()
		deadline = t.C
	}
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		g.mu.RLock()
		v, changed := g.version, g.changed
		switch {
		case v > job.Version:
			g.mu.RUnlock()
			return v, nil, ErrJobOld
		case v >= need:
			return v, g.mu.RUnlock, nil
		}
		g.mu.RUnlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return v, nil, ctx.Err()
		case <-tick.C:
			g.log.Info("rollout: worker waiting for newer weights", "worker", worker, "have", v, "need", need, "group", job.GroupID,
				"waited_s", time.Since(start).Round(time.Second).Seconds())
		case <-deadline:
			return v, nil, fmt.Errorf("rollout: worker %s: weights of a policy version in [%d, %d] never arrived (have %d) within %s", worker, need, job.Version, v, g.wait)
		}
	}
}

// Worker is a rollout worker: one sampler, the gate of the weights its engine reads.
type Worker struct {
	Sampler *GroupSampler
	Weights *Gate
	// Errors receives every sampling error (the group is still reported to the learner, empty, as failed);
	// nil logs them instead.
	Errors chan<- error
	Log    *slog.Logger
	// Scorer, when set, completes each sampled group before it is published (distillation: the teachers'
	// log-probabilities, TeacherScorer); a scoring error fails the group like a sampling error.
	Scorer Scorer
}

// Run takes jobs from t and publishes their groups until ctx ends or t closes (nil), or t fails.
func (w *Worker) Run(ctx context.Context, t WorkerTransport) error {
	for {
		job, err := t.NextJob(ctx)
		if err == nil {
			err = w.do(ctx, t, job)
		}
		if errors.Is(err, ErrClosed) || ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// do samples one job's group and publishes it, or hands the job back.
func (w *Worker) do(ctx context.Context, t WorkerTransport, job Job) error {
	version, release, err := w.Weights.Acquire(ctx, job, w.Sampler.WorkerID)
	if errors.Is(err, ErrJobOld) {
		t.Return(job, time.Second)
		return nil
	}
	if err != nil {
		t.Return(job, 0)
		return err
	}
	g, err := w.Sampler.Sample(ctx, job.Task, job.GroupID, version, job.RNG())
	release()
	if err == nil && w.Scorer != nil {
		err = w.Scorer.Score(ctx, g)
	}
	if err != nil {
		if ctx.Err() != nil {
			t.Return(job, 0)
			return ctx.Err()
		}
		w.report(fmt.Errorf("worker %s: group %s: %w", w.Sampler.WorkerID, job.GroupID, err))
		g = &data.Group{GroupID: job.GroupID} // an empty group tells the learner this job failed
	}
	// a finished group is delivered even when ctx ends meanwhile: the work is done
	return t.Publish(context.WithoutCancel(ctx), g)
}

func (w *Worker) report(err error) {
	if w.Errors != nil {
		w.Errors <- err
		return
	}
	log := w.Log
	if log == nil {
		log = slog.Default()
	}
	log.Error("rollout: sampling failed; the learner is told", "err", err)
}

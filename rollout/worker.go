// worker.go: the one rollout worker loop, driven by every transport (InProc in the learner's process, the
// NATS work queue in worker processes). A worker takes a job, waits until the weights it samples with are
// recent enough for the job (Gate: a version in [job.Version − max_staleness, job.Version]), samples the
// group under a read hold of those weights, and publishes it stamped with their version. New weights are
// swapped in under the write hold, so a swap happens between groups, never inside one.
//
// A worker keeps several groups in flight (continuous batching, batch.go): while its sampler has free decode
// slots it asks the transport for the next job and admits it under the same hold when the held weights
// suit it. It stops admitting when a swap is waiting or a job needs other weights, finishes the groups in
// flight, lets the hold go (so the swap happens), and acquires again for the job that waited.

package rollout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
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
	swaps    atomic.Int32 // swaps waiting for the write hold
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
	g.swaps.Add(1)
	g.mu.Lock()
	g.swaps.Add(-1)
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

// SwapWaiting says whether a swap waits for the groups being sampled (a worker then admits no more groups
// under its hold).
func (g *Gate) SwapWaiting() bool { return g.swaps.Load() > 0 }

// admits says whether weights of version v (held) may sample job: nil, ErrJobOld when they are newer than the
// job, errNeedNewer when they are too old for it.
func (g *Gate) admits(job Job, v int64) error {
	switch {
	case v > job.Version:
		return ErrJobOld
	case v >= job.Version-g.maxStale:
		return nil
	}
	return errNeedNewer
}

var errNeedNewer = errors.New("rollout: the weights are older than the job allows")

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

// fetched is a job (or the error) the fetcher got from the transport.
type fetched struct {
	job Job
	err error
}

// workerState is the loop's state: the hold on the weights, the job waiting for admission, the fetch.
type workerState struct {
	version  int64
	release  func() // nil: no hold
	parked   *Job   // a job taken from the transport and not admitted yet
	asking   bool   // a fetch is outstanding
	want     chan struct{}
	jobs     chan fetched
	inFlight map[string]Job // admitted jobs by group id
}

// Run takes jobs from t and publishes their groups until ctx ends or t closes (nil), or t fails. On return
// every job it holds unfinished is handed back to t.
func (w *Worker) Run(ctx context.Context, t WorkerTransport) error {
	fctx, stop := context.WithCancel(ctx)
	st := &workerState{want: make(chan struct{}), jobs: make(chan fetched), inFlight: map[string]Job{}}
	var fetcher sync.WaitGroup
	fetcher.Add(1)
	go func() { defer fetcher.Done(); fetch(fctx, t, st.want, st.jobs) }()
	err := w.loop(ctx, t, st)
	stop()
	fetcher.Wait()
	w.handBack(t, st)
	if errors.Is(err, ErrClosed) || ctx.Err() != nil {
		return nil
	}
	return err
}

// fetch takes a job from t each time the worker asks for one; a job it cannot deliver (the worker stopped)
// goes back to t.
func fetch(ctx context.Context, t WorkerTransport, want <-chan struct{}, out chan<- fetched) {
	for {
		select {
		case <-want:
		case <-ctx.Done():
			return
		}
		job, err := t.NextJob(ctx)
		select {
		case out <- fetched{job, err}:
		case <-ctx.Done():
			if err == nil {
				t.Return(job, 0)
			}
			return
		}
		if err != nil {
			return
		}
	}
}

// loop is the worker's life: admit, decode one step, publish what finished, until an error or ctx ends.
func (w *Worker) loop(ctx context.Context, t WorkerTransport, st *workerState) error {
	gs := w.Sampler
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := w.admitParked(ctx, t, st); err != nil {
			return err
		}
		idle := gs.InFlight() == 0
		if idle && st.release != nil {
			st.release() // nothing in flight: a swap may happen before the next job (or the parked one's weights)
			st.release = nil
		}
		// Ask for the next job while there is room, the held weights may still admit, and no swap waits.
		draining := st.parked != nil || w.Weights.SwapWaiting()
		if !st.asking && st.parked == nil && (idle || (gs.WantsMore() && !draining)) {
			select {
			case st.want <- struct{}{}:
				st.asking = true
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if st.asking {
			var f fetched
			got := false
			if idle && st.parked == nil {
				select { // nothing to decode: wait for the job
				case f = <-st.jobs:
					got = true
				case <-ctx.Done():
					return ctx.Err()
				}
			} else {
				select {
				case f = <-st.jobs:
					got = true
				default:
				}
			}
			if got {
				st.asking = false
				if f.err != nil {
					return f.err
				}
				st.parked = &f.job
				continue
			}
		}
		if idle {
			continue
		}
		if err := w.step(ctx, t, st); err != nil {
			return err
		}
	}
}

// admitParked admits the job that waits, acquiring the weights first when no hold is kept; a job older than
// the weights is handed back; one that needs newer weights waits until the groups in flight are done.
func (w *Worker) admitParked(ctx context.Context, t WorkerTransport, st *workerState) error {
	if st.parked == nil {
		return nil
	}
	job := *st.parked
	if st.release == nil {
		version, release, err := w.Weights.Acquire(ctx, job, w.Sampler.WorkerID)
		if errors.Is(err, ErrJobOld) {
			st.parked = nil
			t.Return(job, time.Second)
			return nil
		}
		if err != nil {
			return err // the parked job is handed back by Run
		}
		st.version, st.release = version, release
	} else if err := w.Weights.admits(job, st.version); err != nil {
		if errors.Is(err, ErrJobOld) {
			st.parked = nil
			t.Return(job, time.Second)
		}
		return nil // needs newer weights: drain first
	}
	st.parked = nil
	req := GroupRequest{Task: job.Task, GroupID: job.GroupID, Version: st.version, RNG: job.RNG(), Tag: job}
	if err := w.Sampler.Admit(ctx, req); err != nil {
		w.report(fmt.Errorf("worker %s: group %s: %w", w.Sampler.WorkerID, job.GroupID, err))
		// an empty group tells the learner this job failed
		return t.Publish(context.WithoutCancel(ctx), &data.Group{GroupID: job.GroupID})
	}
	st.inFlight[job.GroupID] = job
	return nil
}

// step decodes one token of every completion in flight and publishes the groups that finished. A sampling
// error fails every group in flight (each reported to the learner, empty).
func (w *Worker) step(ctx context.Context, t WorkerTransport, st *workerState) error {
	fin, err := w.Sampler.Advance(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		for _, tag := range w.Sampler.Abandon() {
			job := tag.(Job)
			delete(st.inFlight, job.GroupID)
			w.report(fmt.Errorf("worker %s: group %s: %w", w.Sampler.WorkerID, job.GroupID, err))
			fin = append(fin, Finished{Group: &data.Group{GroupID: job.GroupID}, Tag: job})
		}
	}
	for _, f := range fin {
		delete(st.inFlight, f.Tag.(Job).GroupID)
		if w.Scorer != nil && len(f.Group.Trajectories) > 0 {
			if err := w.Scorer.Score(ctx, f.Group); err != nil {
				if ctx.Err() != nil {
					t.Return(f.Tag.(Job), 0)
					continue
				}
				w.report(fmt.Errorf("worker %s: group %s: scoring: %w", w.Sampler.WorkerID, f.Group.GroupID, err))
				f.Group = &data.Group{GroupID: f.Group.GroupID} // an empty group tells the learner this job failed
			}
		}
		// a finished group is delivered even when ctx ends meanwhile: the work is done
		if err := t.Publish(context.WithoutCancel(ctx), f.Group); err != nil {
			return err
		}
	}
	return nil
}

// handBack returns to t every job the worker took and did not finish, and lets the hold go.
func (w *Worker) handBack(t WorkerTransport, st *workerState) {
	w.Sampler.Abandon()
	for _, job := range st.inFlight {
		t.Return(job, 0)
	}
	clear(st.inFlight)
	if st.parked != nil {
		t.Return(*st.parked, 0)
		st.parked = nil
	}
	if st.release != nil {
		st.release()
		st.release = nil
	}
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

// transport.go: the seam between rollout workers and the learner. Prompts travel to workers as jobs and
// groups travel back; the in-process transport uses channels, the NATS JetStream transport (a later issue)
// implements the same interface across machines.
package rollout

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"

	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/envs"
)

// Job asks a worker for one group.
type Job struct {
	GroupID string
	Task    envs.Task
	// Version is the policy version the group must be sampled with (workers with another version wait or
	// refuse, depending on the staleness bound).
	Version int64
	// Seed seeds the group's sampling, so a group's completions do not depend on which worker drew it.
	Seed uint64
}

// Transport carries jobs to workers and groups back.
type Transport interface {
	// Dispatch queues jobs for the workers.
	Dispatch(ctx context.Context, jobs []Job) error
	// NextJob blocks until a job is available (worker side).
	NextJob(ctx context.Context) (Job, error)
	// Publish sends a finished group to the learner (worker side).
	Publish(ctx context.Context, g *data.Group) error
	// Collect blocks until n groups have arrived (learner side).
	Collect(ctx context.Context, n int) ([]*data.Group, error)
	Close() error
}

// ErrClosed is returned by a closed transport.
var ErrClosed = errors.New("rollout: transport closed")

// InProc is the in-process transport: buffered channels.
type InProc struct {
	jobs   chan Job
	groups chan *data.Group
	done   chan struct{}
	once   sync.Once
}

// NewInProc returns an in-process transport with room for capacity jobs and groups.
func NewInProc(capacity int) *InProc {
	return &InProc{jobs: make(chan Job, capacity), groups: make(chan *data.Group, capacity), done: make(chan struct{})}
}

func (t *InProc) Dispatch(ctx context.Context, jobs []Job) error {
	for _, j := range jobs {
		select {
		case t.jobs <- j:
		case <-ctx.Done():
			return ctx.Err()
		case <-t.done:
			return ErrClosed
		}
	}
	return nil
}

func (t *InProc) NextJob(ctx context.Context) (Job, error) {
	select {
	case j := <-t.jobs:
		return j, nil
	case <-ctx.Done():
		return Job{}, ctx.Err()
	case <-t.done:
		return Job{}, ErrClosed
	}
}

func (t *InProc) Publish(ctx context.Context, g *data.Group) error {
	select {
	case t.groups <- g:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.done:
		return ErrClosed
	}
}

func (t *InProc) Collect(ctx context.Context, n int) ([]*data.Group, error) {
	out := make([]*data.Group, 0, n)
	for len(out) < n {
		select {
		case g := <-t.groups:
			out = append(out, g)
		case <-ctx.Done():
			return out, ctx.Err()
		case <-t.done:
			return out, ErrClosed
		}
	}
	return out, nil
}

func (t *InProc) Close() error {
	t.once.Do(func() { close(t.done) })
	return nil
}

// Worker pulls jobs, samples groups and publishes them until ctx ends or the transport closes.
type Worker struct {
	Sampler *GroupSampler
	// Version returns the policy version of the weights the sampler's engine reads now.
	Version func() int64
	// Errors receives sampling errors (the worker keeps going); nil = dropped.
	Errors chan<- error
}

// Run is the worker loop.
func (w *Worker) Run(ctx context.Context, t Transport) error {
	for {
		job, err := t.NextJob(ctx)
		if err != nil {
			if errors.Is(err, ErrClosed) || ctx.Err() != nil {
				return nil
			}
			return err
		}
		v := w.Version()
		rng := rand.New(rand.NewPCG(job.Seed, 0x9e3779b97f4a7c15))
		g, err := w.Sampler.Sample(ctx, job.Task, job.GroupID, v, rng)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			err = fmt.Errorf("worker %s: group %s: %w", w.Sampler.WorkerID, job.GroupID, err)
			if w.Errors != nil {
				w.Errors <- err
			}
			// an empty group tells the learner this job failed, so it never waits forever
			g = &data.Group{GroupID: job.GroupID}
		}
		if err := t.Publish(ctx, g); err != nil {
			if errors.Is(err, ErrClosed) || ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// transport.go: the seam between the learner and the rollout workers, one interface per side. The learner
// dispatches prompts as jobs, collects the finished groups and commits them once a checkpoint holds their
// update; a worker takes the next job, publishes its group, or returns a job it cannot sample yet. InProc
// carries both sides over channels in one process; package natsbus carries them over NATS JetStream.

package rollout

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/envs"
)

// Job asks a worker for one group.
type Job struct {
	GroupID string
	Task    envs.Task
	// Version is the policy version the group must be sampled with (Gate.Acquire waits for weights in
	// [Version − max_staleness, Version] and returns a job older than the weights).
	Version int64
	// Seed seeds the group's sampling (RNG), so a group's completions do not depend on which worker drew it.
	Seed uint64
}

// RNG is the job's sampling generator: the same for every worker that draws the job.
func (j Job) RNG() *rand.Rand { return rand.New(rand.NewPCG(j.Seed, 0x9e3779b97f4a7c15)) }

// GroupID names a group by its stage, the learner step that dispatched it and its index within the step:
// "<stage>-<step:06>-<index:03>". Ids sort in dispatch order, and the step is the learner's watermark: every
// group of a step before the one a learner resumes at is in its checkpoint.
type GroupID struct {
	Stage       string
	Step, Index int
}

func (g GroupID) String() string { return fmt.Sprintf("%s-%06d-%03d", g.Stage, g.Step, g.Index) }

// ParseGroupID parses a GroupID's string form.
func ParseGroupID(s string) (GroupID, error) {
	i := strings.LastIndexByte(s, '-')
	j := -1
	if i > 0 {
		j = strings.LastIndexByte(s[:i], '-')
	}
	if j <= 0 {
		return GroupID{}, fmt.Errorf("rollout: group id %q: want <stage>-<step>-<index>", s)
	}
	step, err1 := strconv.Atoi(s[j+1 : i])
	index, err2 := strconv.Atoi(s[i+1:])
	if err1 != nil || err2 != nil || step < 0 || index < 0 {
		return GroupID{}, fmt.Errorf("rollout: group id %q: step and index must be non-negative numbers", s)
	}
	return GroupID{Stage: s[:j], Step: step, Index: index}, nil
}

// LearnerTransport is the learner's side: it sends prompts out and takes groups in.
type LearnerTransport interface {
	// Dispatch queues the jobs of learner step step for the workers. Groups of earlier steps that arrive
	// later are settled (applied or dropped) already and are not handed out again.
	Dispatch(ctx context.Context, step int, jobs []Job) error
	// Collect blocks until n of the dispatched groups have arrived and returns them. A group is checked
	// once, where it enters (data.Group.Validate): only valid ones are returned. A group whose sampling
	// failed arrives empty (no trajectories).
	Collect(ctx context.Context, n int) ([]*data.Group, error)
	// Commit tells the transport that a checkpoint on disk holds the updates that used (or deliberately
	// dropped) the groups ids: they are acknowledged and never delivered again.
	Commit(ctx context.Context, ids []string) error
	Close() error
}

// WorkerTransport is a rollout worker's side: it takes prompts and hands groups back.
type WorkerTransport interface {
	// NextJob blocks until a job is available.
	NextJob(ctx context.Context) (Job, error)
	// Publish sends a finished group (an empty one reports that sampling failed) and settles its job.
	Publish(ctx context.Context, g *data.Group) error
	// Return hands an unsampled job back, to be delivered again (to any worker) after delay.
	Return(job Job, delay time.Duration)
}

// ErrClosed is returned by a closed transport.
var ErrClosed = errors.New("rollout: transport closed")

// InProc carries jobs and groups over buffered channels between a learner and workers in one process. It
// is both sides' transport.
type InProc struct {
	vocab  int
	jobs   chan Job
	groups chan *data.Group
	done   chan struct{}
	once   sync.Once
}

// NewInProc returns an in-process transport with room for capacity jobs and capacity groups of a model of
// vocabulary size vocab.
func NewInProc(capacity, vocab int) *InProc {
	return &InProc{vocab: vocab, jobs: make(chan Job, capacity), groups: make(chan *data.Group, capacity), done: make(chan struct{})}
}

// Dispatch queues jobs; the in-process learner collects every group of a step before the next one, so no
// group of an earlier step can arrive late.
func (t *InProc) Dispatch(ctx context.Context, step int, jobs []Job) error {
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

// Return queues the job again after delay (unless the transport closes first).
func (t *InProc) Return(job Job, delay time.Duration) {
	go func() {
		timer := time.NewTimer(delay)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-t.done:
			return
		}
		select {
		case t.jobs <- job:
		case <-t.done:
		}
	}()
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

// Collect returns n groups. The in-process samplers' groups are checked like any other; one that fails is
// a bug of this process, and an error.
func (t *InProc) Collect(ctx context.Context, n int) ([]*data.Group, error) {
	out := make([]*data.Group, 0, n)
	for len(out) < n {
		select {
		case g := <-t.groups:
			if len(g.Trajectories) > 0 {
				if err := g.Validate(t.vocab); err != nil {
					return out, fmt.Errorf("rollout: an in-process worker sampled an invalid group: %w", err)
				}
			}
			out = append(out, g)
		case <-ctx.Done():
			return out, ctx.Err()
		case <-t.done:
			return out, ErrClosed
		}
	}
	return out, nil
}

// Commit has nothing to acknowledge in one process: a group lives only in memory.
func (t *InProc) Commit(context.Context, []string) error { return nil }

func (t *InProc) Close() error {
	t.once.Do(func() { close(t.done) })
	return nil
}

// Tests of the worker loop and its parts: group ids, the gate over versioned weights, and the in-process
// transport driving Worker.Run end to end.

package rollout

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/envs"
	"github.com/sparrow-rl/sparrow/model"
)

func TestGroupID(t *testing.T) {
	for _, c := range []struct {
		in   string
		want GroupID
		err  string
	}{
		{"rl_math-000012-003", GroupID{"rl_math", 12, 3}, ""},
		{"rl-math-v2-000000-017", GroupID{"rl-math-v2", 0, 17}, ""}, // a stage name with dashes
		{"rl_math-12", GroupID{}, "want <stage>-<step>-<index>"},
		{"-000001-002", GroupID{}, "want <stage>-<step>-<index>"},
		{"rl_math-x-002", GroupID{}, "non-negative numbers"},
		{"rl_math-000001--2", GroupID{}, "non-negative numbers"},
	} {
		got, err := ParseGroupID(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseGroupID(%q) = %v, %v; want an error with %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParseGroupID(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
		if s := got.String(); s != c.in {
			t.Errorf("%+v.String() = %q, want %q", got, s, c.in)
		}
	}
}

// TestJobRNG: a job's generator depends on its seed only, so whichever worker draws it samples the same.
func TestJobRNG(t *testing.T) {
	a, b := Job{GroupID: "a", Seed: 42}.RNG(), Job{GroupID: "b", Seed: 42, Version: 3}.RNG()
	c := Job{Seed: 43}.RNG()
	x, y, z := a.Uint64(), b.Uint64(), c.Uint64()
	if x != y || x == z {
		t.Fatalf("draws %d %d %d: want equal for equal seeds, different otherwise", x, y, z)
	}
}

func TestGateAcquire(t *testing.T) {
	ctx := context.Background()
	g := NewGate(3, 1, time.Second, nil)
	// within [job − max_staleness, job]: at once
	for _, v := range []int64{3, 4} {
		got, release, err := g.Acquire(ctx, Job{GroupID: "j", Version: v}, "w")
		if err != nil || got != 3 {
			t.Fatalf("job version %d: %d, %v; want 3 at once", v, got, err)
		}
		release()
	}
	// weights newer than the job: handed back
	if _, _, err := g.Acquire(ctx, Job{Version: 2}, "w"); !errors.Is(err, ErrJobOld) {
		t.Fatalf("job older than the weights: %v, want ErrJobOld", err)
	}
	// too new a job waits for the swap, which waits for groups in flight
	_, hold, err := g.Acquire(ctx, Job{Version: 3}, "w")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan int64, 1)
	go func() {
		v, release, err := g.Acquire(ctx, Job{Version: 5}, "w")
		if err != nil {
			t.Error(err)
		}
		release()
		got <- v
	}()
	swapped := make(chan error, 1)
	go func() { swapped <- g.Swap(5, nil) }()
	select {
	case <-swapped:
		t.Fatal("a swap happened while a group was being sampled")
	case <-time.After(50 * time.Millisecond):
	}
	hold()
	if err := <-swapped; err != nil {
		t.Fatal(err)
	}
	if v := <-got; v != 5 {
		t.Fatalf("the waiting job sampled with version %d, want 5", v)
	}
	// a failed install keeps the version
	if err := g.Swap(6, func() error { return errors.New("layout") }); err == nil || g.Version() != 5 {
		t.Fatalf("failed swap: %v, version %d; want an error and version 5", err, g.Version())
	}
	// weights that never come: an error naming the versions, after the wait
	if _, _, err := g.Acquire(ctx, Job{GroupID: "late", Version: 9}, "w7"); err == nil || !strings.Contains(err.Error(), "[8, 9]") || !strings.Contains(err.Error(), "w7") {
		t.Fatalf("never-arriving weights: %v", err)
	}
	// a cancelled context ends the wait
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := g.Acquire(cctx, Job{Version: 9}, "w"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: %v", err)
	}
}

// tinySampler builds a group sampler over a small random MoE model on the 1-digit math family.
func tinySampler(t *testing.T, id string, groupSize int) *GroupSampler {
	t.Helper()
	cfg, err := configs.Load("tiny", nil)
	if err != nil {
		t.Fatal(err)
	}
	p := model.NewParams(cfg.Model)
	p.Init(5)
	tok, err := data.NewTokenizer(cfg.Model.VocabSize)
	if err != nil {
		t.Fatal(err)
	}
	fam, err := envs.New("math", envs.Options{HeldOut: 0.1, Params: map[string]string{"digits": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	return NewGroupSampler(model.NewEngine(p), tok, fam, id, SamplerConfig{Params: SamplingParams{Temperature: 1, TopP: 1}, GroupSize: groupSize, MaxNewTokens: 6})
}

// TestWorkerInProc: two workers on the in-process transport sample every dispatched job once, stamped with
// the gate's version; a job older than the weights is handed back and redone once they match; the groups
// do not depend on which worker drew them, nor on how many groups a worker decodes together (decode batch 1:
// one completion at a time; 8: all four groups of two completions in flight at once).
func TestWorkerInProc(t *testing.T) {
	for _, batch := range []int{1, 8} {
		t.Run(fmt.Sprintf("decode_batch=%d", batch), func(t *testing.T) { testWorkerInProc(t, batch) })
	}
}

func testWorkerInProc(t *testing.T, batch int) {
	tr := NewInProc(8, 272)
	gate := NewGate(0, 0, 10*time.Second, nil)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, id := range []string{"w0", "w1"} {
		gs := tinySampler(t, id, 2)
		gs.DecodeBatch = batch
		w := &Worker{Sampler: gs, Weights: gate}
		wg.Add(1)
		go func() { defer wg.Done(); _ = w.Run(ctx, tr) }()
	}
	defer func() { cancel(); tr.Close(); wg.Wait() }()
	fam := tinySampler(t, "x", 1).Family
	var jobs []Job
	for i := range 4 {
		task := fam.Sample(rand.New(rand.NewPCG(uint64(i), 1)), data.SplitTrain)
		jobs = append(jobs, Job{GroupID: GroupID{"rl", 0, i}.String(), Task: task, Seed: uint64(100 + i)})
	}
	if err := tr.Dispatch(ctx, 0, jobs); err != nil {
		t.Fatal(err)
	}
	got, err := tr.Collect(ctx, 4)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]*data.Group{}
	for _, g := range got {
		if len(g.Trajectories) != 2 || g.Trajectories[0].PolicyVersion != 0 {
			t.Fatalf("group %s: %d trajectories at version %d", g.GroupID, len(g.Trajectories), g.Trajectories[0].PolicyVersion)
		}
		seen[g.GroupID] = g
	}
	if len(seen) != 4 {
		t.Fatalf("collected %d distinct groups, want 4", len(seen))
	}
	// the same job again samples the same completions, whichever worker draws it
	ref := tinySampler(t, "ref", 2)
	want, err := ref.Sample(ctx, jobs[1].Task, jobs[1].GroupID, 0, jobs[1].RNG())
	if err != nil {
		t.Fatal(err)
	}
	if a, b := want.Trajectories[1].CompletionTokens, seen[jobs[1].GroupID].Trajectories[1].CompletionTokens; !slices.Equal(a, b) {
		t.Fatalf("group %s: worker sampled %v, a fresh sampler %v", jobs[1].GroupID, b, a)
	}
	for _, j := range jobs {
		want, err := ref.Sample(ctx, j.Task, j.GroupID, 0, j.RNG())
		if err != nil {
			t.Fatal(err)
		}
		if err := sameGroup(want, seen[j.GroupID], bitwise()); err != nil {
			t.Fatalf("group %s: worker with decode batch %d vs a fresh sampler alone: %v", j.GroupID, batch, err)
		}
	}
	// jobs for version 1 while the weights are at 0 wait (with max_staleness 0) and are sampled after the swap
	var next []Job
	for i := range 3 {
		j := jobs[i]
		j.GroupID, j.Version = GroupID{"rl", 1, i}.String(), 1
		next = append(next, j)
	}
	if err := tr.Dispatch(ctx, 1, next); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if err := gate.Swap(1, nil); err != nil {
		t.Fatal(err)
	}
	got, err = tr.Collect(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range got {
		if len(g.Trajectories) != 2 || g.Trajectories[0].PolicyVersion != 1 {
			t.Fatalf("group %s after the swap: %d trajectories at version %v", g.GroupID, len(g.Trajectories), g.Trajectories)
		}
	}
	// weights at version 2, a job for version 1 (a learner that went back): handed back until the weights match
	if err := gate.Swap(2, nil); err != nil {
		t.Fatal(err)
	}
	old := jobs[0]
	old.GroupID, old.Version = GroupID{"rl", 1, 9}.String(), 1
	if err := tr.Dispatch(ctx, 1, []Job{old}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if err := gate.Swap(1, nil); err != nil {
		t.Fatal(err)
	}
	got, err = tr.Collect(ctx, 1)
	if err != nil || len(got) != 1 || got[0].GroupID != old.GroupID || got[0].Trajectories[0].PolicyVersion != 1 {
		t.Fatalf("the handed-back job: %v, %v; want its group sampled at version 1", got, err)
	}
}

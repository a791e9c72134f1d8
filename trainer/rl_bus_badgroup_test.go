// rl_bus_badgroup_test.go: a well-formed group of the wrong shape (a worker started with another
// rl.group_size) arrives over a real NATS server; the learner drops and counts it instead of stopping, and
// a resumed run does not die on it again.

package trainer

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/model"
	"github.com/sparrow-rl/sparrow/rollout"
	"github.com/sparrow-rl/sparrow/rollout/natsbus"
)

func TestRLBusWrongGroupSizeDropped(t *testing.T) {
	e, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{StoreDir: t.TempDir(), MaxPayload: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown()
	cfg := rlTinyConfig(t, "rl.beta=0", "train.steps=2", "checkpoint.every=1", "rl.bus.transport=nats", "rl.bus.url="+e.URL(),
		"rl.bus.local_workers=false", "rl.bus.ack_wait_s=3", "rl.bus.job_ack_wait_s=2", "rl.bus.heartbeat_s=0.5", "rl.bus.wait_s=60")
	st := cfg.Stages[0]
	fam, err := RLFamily(st)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	log := quietLog()
	names := BusNames(cfg, st)
	nc, err := natsbus.Connect(natsbus.ConnOptions{URL: e.URL(), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	dir := t.TempDir()
	learnerDone := make(chan error, 1)
	go func() { learnerDone <- Execute(ctx, cfg, Options{Dir: dir, Log: log}) }()
	// the rogue worker takes the first prompt and answers it with 2 completions instead of rl.group_size 4
	rogue, err := natsbus.NewWorkerClient(ctx, nc, names, st.RL.Bus, cfg.Model.VocabSize, "rogue", log)
	if err != nil {
		t.Fatal(err)
	}
	defer rogue.Close()
	p := model.NewParams(cfg.Model)
	p.Init(uint64(cfg.Seed))
	tok, err := data.NewTokenizer(cfg.Model.VocabSize)
	if err != nil {
		t.Fatal(err)
	}
	rc := st.RL
	rc.GroupSize = 2
	small := rollout.NewGroupSampler(model.NewEngine(p), tok, fam, "rogue", rollout.RLSamplerConfig(rc, false, 0))
	rogueDone := make(chan string, 1)
	go func() {
		job, err := rogue.NextJob(ctx)
		if err != nil {
			rogueDone <- ""
			return
		}
		g, err := small.Sample(ctx, job.Task, job.GroupID, job.Version, rand.New(rand.NewPCG(job.Seed, 1)))
		if err == nil {
			err = rogue.Publish(ctx, g)
		}
		if err != nil {
			t.Error(err)
		}
		rogueDone <- job.GroupID
	}()

	var bad string
	select {
	case bad = <-rogueDone:
	case <-time.After(60 * time.Second):
		t.Fatal("the rogue worker got no prompt")
	}
	workers := func() <-chan error {
		done := make(chan error, 1)
		go func() {
			_, err := natsbus.RunWorkers(ctx, natsbus.WorkerOptions{Conn: natsbus.ConnOptions{URL: e.URL()}, Names: names, RL: st.RL,
				Family: fam, Workers: 1, Log: log})
			done <- err
		}()
		return done
	}
	w := workers()
	if err := <-learnerDone; err != nil {
		t.Fatalf("the learner stopped on a group of the wrong size: %v", err)
	}
	if err := <-w; err != nil {
		t.Fatalf("workers: %v", err)
	}
	recs, err := ReadMetrics(filepath.Join(dir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	dropped := 0.0
	for _, r := range recs {
		if v, ok := r.Values["rollout/dropped_"+dropShape]; ok && r.Step == 1 {
			dropped = v
		}
	}
	if dropped != 1 {
		t.Fatalf("rollout/dropped_shape at step 1 = %v, want 1", dropped)
	}
	ids, _, err := HandledGroups(dir, st.Name, 2)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, id := range ids {
		found = found || id == bad
	}
	if !found {
		t.Fatalf("the dropped group %s is not in the group ledger %v", bad, ids)
	}

	// resume from the last checkpoint with more steps: the bad group (acked with its checkpoint) is not seen again
	cfg.Stages[0].Train.Steps = 3
	w = workers()
	if err := Execute(ctx, cfg, Options{Dir: dir, Resume: "auto", Log: log}); err != nil {
		t.Fatalf("resume: %v", err)
	}
	if err := <-w; err != nil {
		t.Fatalf("workers after resume: %v", err)
	}
}

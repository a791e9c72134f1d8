// badgroup_test.go: a well-formed group of the wrong size (a worker started with another rl.group_size)
// reaches a `trainer learn` process over Debian's nats-server: it is dropped and counted, the run goes on,
// and a `--resume` of the run does not die on it (it was acked with the checkpoint of its step).

package main

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/model"
	"github.com/sparrow-rl/sparrow/rollout"
	"github.com/sparrow-rl/sparrow/rollout/natsbus"
	"github.com/sparrow-rl/sparrow/trainer"
)

func TestBusProcessesWrongGroupSize(t *testing.T) {
	srv := startNATS(t)
	dir := t.TempDir()
	runDir := filepath.Join(dir, "run")
	learner := startTrainer(t, dir, "learner", busArgs("learn", srv.URL(), "--run-dir", runDir, "--lease-ttl", "3s")...)

	cfg, err := configs.Load("tiny", busSets)
	if err != nil {
		t.Fatal(err)
	}
	st := cfg.Stages[0]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nc, err := natsbus.Connect(natsbus.ConnOptions{URL: srv.URL(), Log: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	rogue, err := natsbus.NewWorkerClient(ctx, nc, trainer.BusNames(cfg, st), st.RL.Bus, cfg.Model.VocabSize, "rogue", quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer rogue.Close()
	job, err := rogue.NextJob(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fam, err := trainer.RLFamily(st)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := data.NewTokenizer(cfg.Model.VocabSize)
	if err != nil {
		t.Fatal(err)
	}
	p := model.NewParams(cfg.Model)
	p.Init(1)
	rc := st.RL
	rc.GroupSize = 2
	g, err := rollout.NewGroupSampler(model.NewEngine(p), tok, fam, "rogue", rollout.RLSamplerConfig(rc, false, 0)).Sample(ctx, job.Task, job.GroupID, job.Version, job.RNG())
	if err != nil {
		t.Fatal(err)
	}
	if err := rogue.Publish(ctx, g); err != nil {
		t.Fatal(err)
	}
	worker := startTrainer(t, dir, "rollout", busArgs("rollout", srv.URL(), "--workers", "1")...)
	if err := learner.wait(t, 90*time.Second); err != nil {
		t.Fatalf("the learner stopped on a group of the wrong size: %v", err)
	}
	if err := worker.wait(t, 30*time.Second); err != nil {
		t.Fatalf("worker: %v", err)
	}
	if n := metricMax(t, runDir, "rollout/dropped_shape"); n != 1 {
		t.Fatalf("rollout/dropped_shape = %v, want 1", n)
	}
	ids, _, err := trainer.HandledGroups(runDir, "rl_math", busSteps)
	if err != nil {
		t.Fatal(err)
	}
	// the dropped group was replaced by a refill prompt, so its step still trained on two groups
	if !slices.Contains(ids, job.GroupID) || len(ids) != 2*busSteps+1 {
		t.Fatalf("ledger %v: want %d groups, the dropped %s and its replacement among them", ids, 2*busSteps+1, job.GroupID)
	}

	// resume with two more steps: the learner does not meet the bad group again
	worker = startTrainer(t, dir, "rollout2", busArgs("rollout", srv.URL(), "--workers", "1", "--set", "train.steps=8")...)
	// (--resume RUN_DIR with a space: the run directory is the resume target)
	resumed := startTrainer(t, dir, "learner2", busArgs("learn", srv.URL(), "--resume", runDir, "--set", "train.steps=8")...)
	if err := resumed.wait(t, 90*time.Second); err != nil {
		t.Fatalf("resumed learner: %v", err)
	}
	if err := worker.wait(t, 30*time.Second); err != nil {
		t.Fatalf("worker after resume: %v", err)
	}
	if n := lastStep(runDir); n != 8 {
		t.Fatalf("resumed run reached step %d, want 8", n)
	}
}

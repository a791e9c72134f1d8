// chaos_test.go: the chaos soak of the distributed mode, behind a flag (it is not part of `go test ./...`):
// `trainer learn` and three `trainer rollout` processes against Debian's nats-server for a long RL run
// while faults are injected at random — workers SIGKILLed and paused, the server restarted (TERM and KILL),
// the learner SIGKILLed or SIGTERMed and resumed, hostile messages published — and then checked by group ids
// (the group ledger of the final weights lists every expected group exactly once) and by weights (equal bit
// for bit to an in-process run of the same config).
//
//	go test ./cmd/trainer -run TestChaosSoak -timeout 90m -args -chaos 20m [-chaos.steps N]
//
// The summary (faults by kind, groups applied, duplicates, lost, weights equal) is logged and written to
// $SPARROW_CHAOS_OUT when set.

package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/rollout"
	"github.com/sparrow-rl/sparrow/rollout/natsbus"
	"github.com/sparrow-rl/sparrow/trainer"
)

var (
	chaosFor   = flag.Duration("chaos", 0, "run the chaos soak, injecting faults for at least this long (0 = skip)")
	chaosSteps = flag.Int("chaos.steps", 1200, "learner steps of the chaos soak")
	chaosSeed  = flag.Uint64("chaos.seed", 1, "seed of the fault schedule")
)

// chaosSets is the soak's config: 8 prompts × 8 completions per step, a checkpoint every 5 steps, a constant
// learning rate (so that a run of N steps is the prefix of a longer one), no evaluation.
func chaosSets(steps int) []string {
	return []string{"run.progress=off", "run.plots=false", "run.tensorboard=false", "train.steps=" + fmt.Sprint(steps),
		"schedule.kind=constant", "schedule.warmup_steps=0", "checkpoint.every=5", "checkpoint.keep_last=3",
		"rl.env=math", "rl.env_params={digits: \"1\"}", "rl.group_size=8", "rl.prompts_per_step=8",
		"rl.max_new_tokens=20", "rl.max_prompt_tokens=32", "rl.eval_tasks=0", "rl.beta=0",
		"stages.pretrain.kind=rl", "stages.pretrain.name=rl_math",
		"rl.bus.ack_wait_s=3", "rl.bus.job_ack_wait_s=2", "rl.bus.heartbeat_s=0.5", "rl.bus.wait_s=120"}
}

func chaosArgs(cmd, url string, steps int, extra ...string) []string {
	args := []string{cmd, "tiny", "--nats", url}
	for _, s := range chaosSets(steps) {
		args = append(args, "--set", s)
	}
	return append(args, extra...)
}

// chaosReport is the soak's result.
type chaosReport struct {
	Steps          int            `json:"steps"`
	Minutes        float64        `json:"minutes"`
	Faults         map[string]int `json:"faults"`
	GroupsExpected int            `json:"groups_expected"`
	GroupsApplied  int            `json:"groups_applied"`
	Lost           int            `json:"lost"`
	Repeated       int            `json:"repeated"` // ids applied more than once in the final weights' history
	Dropped        int            `json:"dropped"`  // groups the learner dropped (failed, stale, …)
	DuplicatesAck  float64        `json:"duplicates_acked"`
	Redelivered    float64        `json:"redelivered"`
	Forged         float64        `json:"forged"`
	Malformed      float64        `json:"malformed"`
	LearnerRuns    int            `json:"learner_runs"`
	WeightsEqual   bool           `json:"weights_equal_in_process"`
}

func TestChaosSoak(t *testing.T) {
	if *chaosFor == 0 {
		t.Skip("the chaos soak runs with -args -chaos DURATION (see chaos_test.go)")
	}
	steps := *chaosSteps
	srv := startNATS(t)
	dir := t.TempDir()
	runDir := filepath.Join(dir, "run")
	start := time.Now()

	// the in-process reference, alongside
	refDone := make(chan []float32, 1)
	go func() {
		cfg, err := configs.Load("tiny", append(chaosSets(steps), "rl.bus.transport=inproc"))
		if err != nil {
			t.Error(err)
			refDone <- nil
			return
		}
		ref := filepath.Join(dir, "ref")
		if err := trainer.Execute(context.Background(), cfg, trainer.Options{Dir: ref, Log: quietLogger()}); err != nil {
			t.Error(err)
			refDone <- nil
			return
		}
		w, err := flatWeights(filepath.Join(ref, "checkpoints", fmt.Sprintf("rl_math-%d", steps)))
		if err != nil {
			t.Error(err)
		}
		refDone <- w
	}()

	rng := rand.New(rand.NewPCG(*chaosSeed, 7))
	rep := chaosReport{Steps: steps, Faults: map[string]int{}}
	n := 0
	startWorker := func() *proc {
		n++
		return startTrainer(t, dir, fmt.Sprintf("rollout%d", n), chaosArgs("rollout", srv.URL(), steps, "--workers", "1")...)
	}
	workers := []*proc{startWorker(), startWorker(), startWorker()}
	startLearner := func(resume bool) *proc {
		rep.LearnerRuns++
		extra := []string{"--run-dir", runDir, "--lease-ttl", "10s"}
		if resume {
			extra = append(extra, "--resume")
		}
		return startTrainer(t, dir, fmt.Sprintf("learner%d", rep.LearnerRuns), chaosArgs("learn", srv.URL(), steps, extra...)...)
	}
	learner := startLearner(false)
	nc, err := nats.Connect(srv.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	names := natsbus.NewNames("tiny", "rl_math")

	finished := func() bool {
		select {
		case err := <-learner.done:
			learner.done <- err
			return err == nil
		default:
			return false
		}
	}
	// restartLearner waits for the stopped learner and resumes, retrying while the old one's lease lasts.
	restartLearner := func() {
		for tries := 0; ; tries++ {
			learner = startLearner(true)
			select {
			case err := <-learner.done:
				learner.done <- err
				b, _ := os.ReadFile(learner.log)
				if err != nil && strings.Contains(string(b), "lease") && tries < 60 {
					time.Sleep(time.Second)
					continue
				}
				if err != nil {
					t.Fatalf("resumed learner exited: %v\n%s", err, tail(string(b), 3000))
				}
				return
			case <-time.After(3 * time.Second):
				return
			}
		}
	}
	kinds := []string{"worker_kill", "worker_pause", "server_term", "server_kill", "learner_kill", "learner_term", "hostile"}
	for !finished() {
		time.Sleep(time.Duration(4+rng.IntN(9)) * time.Second)
		if finished() {
			break
		}
		if time.Since(start) > *chaosFor && lastStep(runDir) > 0 {
			continue // faults are over: let the run finish
		}
		if err := learnerExitedBadly(learner); err != nil {
			b, _ := os.ReadFile(learner.log)
			t.Fatalf("learner exited: %v\n%s", err, tail(string(b), 3000))
		}
		kind := kinds[rng.IntN(len(kinds))]
		rep.Faults[kind]++
		t.Logf("%6.1fs step %d: %s", time.Since(start).Seconds(), lastStep(runDir), kind)
		switch kind {
		case "worker_kill":
			i := rng.IntN(len(workers))
			_ = workers[i].cmd.Process.Signal(syscall.SIGKILL)
			_ = workers[i].wait(t, 30*time.Second)
			workers[i] = startWorker()
		case "worker_pause":
			w := workers[rng.IntN(len(workers))]
			_ = w.cmd.Process.Signal(syscall.SIGSTOP)
			time.Sleep(time.Duration(2+rng.IntN(6)) * time.Second)
			_ = w.cmd.Process.Signal(syscall.SIGCONT)
		case "server_term":
			srv.Stop()
			time.Sleep(time.Duration(200+rng.IntN(1500)) * time.Millisecond)
			srv.Restart(t)
		case "server_kill":
			srv.Kill()
			time.Sleep(time.Duration(200+rng.IntN(1500)) * time.Millisecond)
			srv.Restart(t)
		case "learner_kill":
			_ = learner.cmd.Process.Signal(syscall.SIGKILL)
			_ = learner.wait(t, 30*time.Second)
			restartLearner()
		case "learner_term":
			_ = learner.cmd.Process.Signal(syscall.SIGTERM)
			if err := learner.wait(t, 60*time.Second); exitCode(err) != 130 && err != nil {
				b, _ := os.ReadFile(learner.log)
				t.Fatalf("learner after SIGTERM: exit %d (%v), want 130\n%s", exitCode(err), err, tail(string(b), 3000))
			}
			restartLearner()
		case "hostile":
			hostile(t, nc, names, lastStep(runDir), rng)
		}
	}
	for i, w := range workers {
		if err := w.wait(t, 60*time.Second); err != nil {
			t.Errorf("worker %d: %v", i, err)
		}
	}
	rep.Minutes = time.Since(start).Minutes()

	// group ids: every expected id in the ledger of the final weights, once, none dropped
	ids, _, err := trainer.HandledGroups(runDir, "rl_math", steps)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, id := range ids {
		seen[id]++
	}
	for s := range steps {
		for j := range 8 {
			id := rollout.GroupID{Stage: "rl_math", Step: s, Index: j}.String()
			rep.GroupsExpected++
			switch seen[id] {
			case 0:
				rep.Lost++
			case 1:
				rep.GroupsApplied++
			default:
				rep.GroupsApplied++
				rep.Repeated += seen[id] - 1
			}
		}
	}
	rep.Dropped = len(ids) - rep.GroupsApplied - rep.Repeated
	rep.DuplicatesAck = sumOverRuns(t, runDir, "bus/duplicate")
	rep.Redelivered = sumOverRuns(t, runDir, "bus/redelivered")
	rep.Forged = sumOverRuns(t, runDir, "bus/forged")
	rep.Malformed = sumOverRuns(t, runDir, "bus/malformed")
	w, err := flatWeights(filepath.Join(runDir, "checkpoints", fmt.Sprintf("rl_math-%d", steps)))
	if err != nil {
		t.Fatal(err)
	}
	ref := <-refDone
	rep.WeightsEqual = len(ref) == len(w) && slices.EqualFunc(w, ref, func(a, b float32) bool { return math.Float32bits(a) == math.Float32bits(b) })
	b, _ := json.MarshalIndent(rep, "", "  ")
	t.Logf("chaos soak:\n%s", b)
	if out := os.Getenv("SPARROW_CHAOS_OUT"); out != "" {
		_ = os.WriteFile(out, b, 0o644)
	}
	if rep.Lost != 0 || rep.Repeated != 0 || rep.Dropped != 0 || !rep.WeightsEqual {
		t.Fatalf("the soak lost %d, repeated %d, dropped %d groups; weights equal to the in-process run: %v", rep.Lost, rep.Repeated, rep.Dropped, rep.WeightsEqual)
	}
}

// hostile publishes what an outsider with publish rights on the run's subjects could: junk groups, junk
// prompts, a spoofed "failed" report for a group of the next step, and junk under that group's bare id as
// its message id.
func hostile(t *testing.T, nc *nats.Conn, names natsbus.Names, step int, rng *rand.Rand) {
	next := rollout.GroupID{Stage: "rl_math", Step: step + 1, Index: rng.IntN(8)}.String()
	msgs := []*nats.Msg{
		{Subject: names.TrajSubject(), Data: []byte("junk group"), Header: nats.Header{natsbus.HdrGroup: {next}, natsbus.HdrStatus: {"ok"}}},
		{Subject: names.JobSubject(), Data: []byte("junk prompt")},
		{Subject: names.TrajSubject(), Header: nats.Header{natsbus.HdrGroup: {next}, natsbus.HdrStatus: {"failed"}}},
		{Subject: names.TrajSubject(), Data: []byte("junk"), Header: nats.Header{natsbus.HdrGroup: {next}, natsbus.HdrStatus: {"ok"}, "Nats-Msg-Id": {next}}},
	}
	for _, m := range msgs {
		if err := nc.PublishMsg(m); err != nil {
			t.Logf("hostile publish: %v (server restarting?)", err)
		}
	}
}

// learnerExitedBadly returns the learner's error if it exited with one.
func learnerExitedBadly(p *proc) error {
	select {
	case err := <-p.done:
		p.done <- err
		return err
	default:
		return nil
	}
}

// sumOverRuns adds up a cumulative counter over the learner processes of a run: each process's counters
// start from 0, so a drop marks a new process.
func sumOverRuns(t *testing.T, runDir, key string) float64 {
	t.Helper()
	recs, err := trainer.ReadMetrics(filepath.Join(runDir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var total, last float64
	for _, r := range recs {
		v, ok := r.Values[key]
		if !ok {
			continue
		}
		if v < last {
			total += last
		}
		last = v
	}
	return total + last
}

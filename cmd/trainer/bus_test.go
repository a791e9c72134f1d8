package main

// bus_test.go: `trainer learn` and two `trainer rollout` processes against Debian's nats-server started as a
// separate process on loopback, with faults: a worker SIGKILLed mid-run, a corrupted message injected, the
// server restarted mid-run, the learner SIGKILLed and resumed from its checkpoint. Each run is checked by
// group ids (the group ledger of the final weights lists every expected group exactly once) and by the final weights, which
// must equal bit for bit those of an in-process run of the same config. Without nats-server in $PATH the
// tests skip, or fail when SPARROW_REQUIRE_NATS=1 (.ci/install-nats.sh installs it).

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sparrow-rl/sparrow/checkpoints"
	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/internal/natstest"
	"github.com/sparrow-rl/sparrow/rollout/natsbus"
	"github.com/sparrow-rl/sparrow/trainer"
)

const busSteps = 6

// busSets is the tiny RL config of the bus tests: 6 steps of 2 groups of 4, checkpoints every 2 steps,
// short ack waits so that redeliveries happen within the test.
var busSets = []string{"run.progress=off", "run.plots=false", "run.tensorboard=false", "train.steps=6", "schedule.warmup_steps=1",
	"checkpoint.every=2", "rl.env=math", "rl.env_params={digits: \"1\"}", "rl.group_size=4", "rl.prompts_per_step=2",
	"rl.max_new_tokens=20", "rl.max_prompt_tokens=32", "rl.eval_tasks=16", "rl.eval_every=1", "rl.beta=0",
	"stages.pretrain.kind=rl", "stages.pretrain.name=rl_math",
	"rl.bus.ack_wait_s=3", "rl.bus.job_ack_wait_s=2", "rl.bus.heartbeat_s=0.5", "rl.bus.wait_s=60"}

var (
	binOnce sync.Once
	binPath string
	binErr  error
	refOnce sync.Once
	refW    []float32
	refErr  error
)

func trainerBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sparrow-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "trainer")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// referenceWeights runs the same config in-process over Go channels.
func referenceWeights(t *testing.T) []float32 {
	t.Helper()
	refOnce.Do(func() {
		cfg, err := configs.Load("tiny", append(slices.Clone(busSets), "rl.bus.transport=inproc"))
		if err != nil {
			refErr = err
			return
		}
		dir, _ := os.MkdirTemp("", "sparrow-ref")
		defer os.RemoveAll(dir)
		if refErr = trainer.Execute(context.Background(), cfg, trainer.Options{Dir: dir, Log: quietLogger()}); refErr != nil {
			return
		}
		refW, refErr = flatWeights(filepath.Join(dir, "checkpoints", fmt.Sprintf("rl_math-%d", busSteps)))
	})
	if refErr != nil {
		t.Fatal(refErr)
	}
	return refW
}

func flatWeights(dir string) ([]float32, error) {
	ck, err := checkpoints.Load(dir, checkpoints.LoadOptions{WeightsOnly: true})
	if err != nil {
		return nil, err
	}
	var out []float32
	for _, tn := range ck.Tensors {
		out = append(out, tn.Data...)
	}
	return out, nil
}

// startNATS starts Debian's nats-server with JetStream on loopback (natstest).
func startNATS(t *testing.T) *natstest.Server {
	return natstest.Start(t, natstest.Options{JetStream: true})
}

// proc is a trainer child process with its log.
type proc struct {
	cmd  *exec.Cmd
	log  string
	done chan error
}

func startTrainer(t *testing.T, dir, name string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(trainerBinary(t), args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, log: logPath, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); f.Close() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("--- %s log ---\n%s", name, tail(string(b), 4000))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func (p *proc) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(d):
		t.Fatalf("%s still running after %s", p.log, d)
		return nil
	}
}

func busArgs(cmd string, url string, extra ...string) []string {
	args := []string{cmd, "tiny", "--nats", url, "--log-level", "debug"}
	for _, s := range busSets {
		args = append(args, "--set", s)
	}
	return append(args, extra...)
}

// lastStep is the highest step with a reward in metrics.jsonl.
func lastStep(runDir string) int { return lastLogged(runDir, "reward/mean") }

func waitStep(t *testing.T, runDir string, step int, learner *proc) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for lastStep(runDir) < step {
		select {
		case err := <-learner.done:
			learner.done <- err
			t.Fatalf("learner exited (%v) before step %d", err, step)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("step %d not reached within 60 s", step)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// metricMax is the largest value a metric took in the run.
func metricMax(t *testing.T, runDir, key string) float64 {
	t.Helper()
	recs, err := trainer.ReadMetrics(filepath.Join(runDir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	m := math.Inf(-1)
	for _, r := range recs {
		if v, ok := r.Values[key]; ok {
			m = math.Max(m, v)
		}
	}
	return m
}

// checkExactlyOnce: the group ledger lists every expected group exactly once and the weights equal
// those of the in-process reference run.
func checkExactlyOnce(t *testing.T, runDir string) {
	t.Helper()
	ck := filepath.Join(runDir, "checkpoints", fmt.Sprintf("rl_math-%d", busSteps))
	ids, version, err := trainer.HandledGroups(runDir, "rl_math", busSteps)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for s := 0; s < busSteps; s++ {
		for j := 0; j < 2; j++ {
			want = append(want, fmt.Sprintf("rl_math-%06d-%03d", s, j))
		}
	}
	got := slices.Clone(ids)
	slices.Sort(got)
	if !slices.Equal(got, want) || version != busSteps {
		t.Fatalf("the group ledger handled %d ids %v at version %d, want each of %v once at version %d", len(ids), ids, version, want, busSteps)
	}
	w, err := flatWeights(ck)
	if err != nil {
		t.Fatal(err)
	}
	ref := referenceWeights(t)
	if len(w) != len(ref) {
		t.Fatalf("%d weights, reference has %d", len(w), len(ref))
	}
	for i := range w {
		if math.Float32bits(w[i]) != math.Float32bits(ref[i]) {
			t.Fatalf("weight %d = %v, the in-process run has %v: a group was lost, repeated or sampled with other weights", i, w[i], ref[i])
		}
	}
}

// TestBusProcessesWorkerKillAndCorruption: learner and two worker processes; one worker is SIGKILLed after
// the first step (its prompt is redelivered to the other), corrupted group messages with valid job tokens
// are injected (terminated and counted as malformed, the run goes on), and so is a spoofed failure report
// for a future group without a token (terminated and counted as forged, never obeyed: the weights equal
// the in-process run's).
func TestBusProcessesWorkerKillAndCorruption(t *testing.T) {
	srv := startNATS(t)
	dir := t.TempDir()
	runDir := filepath.Join(dir, "run")
	w1 := startTrainer(t, dir, "rollout1", busArgs("rollout", srv.URL(), "--workers", "1")...)
	w2 := startTrainer(t, dir, "rollout2", busArgs("rollout", srv.URL(), "--workers", "1")...)
	learner := startTrainer(t, dir, "learner", busArgs("learn", srv.URL(), "--run-dir", runDir)...)
	waitStep(t, runDir, 1, learner)
	if err := w1.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	names := natsbus.NewNames("tiny", "rl_math")
	secret, err := natsbus.LoadOrCreateSecret(filepath.Join(runDir, "nats", "learner-rl_math.secret")) // the learner's
	if err != nil {
		t.Fatal(err)
	}
	for i, body := range [][]byte{[]byte("not arrow at all"), {0xff, 0xff, 0xff, 0xff, 0x10, 0, 0, 0, 1, 2, 3}} {
		m := &nats.Msg{Subject: names.TrajSubject(), Data: body, Header: nats.Header{}}
		id := fmt.Sprintf("corrupt-%d", i)
		m.Header.Set(natsbus.HdrGroup, id)
		m.Header.Set(natsbus.HdrStatus, "ok")
		m.Header.Set(natsbus.HdrToken, natsbus.JobToken(secret, id))
		if err := nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	spoof := &nats.Msg{Subject: names.TrajSubject(), Header: nats.Header{}}
	spoof.Header.Set(natsbus.HdrGroup, fmt.Sprintf("rl_math-%06d-000", busSteps-1))
	spoof.Header.Set(natsbus.HdrStatus, "failed")
	if err := nc.PublishMsg(spoof); err != nil {
		t.Fatal(err)
	}
	if err := learner.wait(t, 90*time.Second); err != nil {
		t.Fatalf("learner: %v", err)
	}
	if err := w2.wait(t, 30*time.Second); err != nil {
		t.Fatalf("surviving worker did not exit cleanly after the stage: %v", err)
	}
	t.Logf("%v groups redelivered, %v duplicates acked", metricMax(t, runDir, "bus/redelivered"), metricMax(t, runDir, "bus/duplicate"))
	if n := metricMax(t, runDir, "bus/malformed"); n != 2 {
		t.Errorf("bus/malformed = %v, want the 2 injected messages", n)
	}
	if n := metricMax(t, runDir, "bus/forged"); n != 1 {
		t.Errorf("bus/forged = %v, want the spoofed failure report", n)
	}
	checkExactlyOnce(t, runDir)
}

// TestBusProcessesServerRestartAndLearnerResume: the NATS server is restarted after step 1 (clients
// reconnect), the learner is SIGKILLed after step 3 and resumed from its checkpoint (step 2): the groups it
// had collected but not checkpointed are redelivered and applied once, those it had checkpointed are not
// applied again.
func TestBusProcessesServerRestartAndLearnerResume(t *testing.T) {
	srv := startNATS(t)
	dir := t.TempDir()
	runDir := filepath.Join(dir, "run")
	w1 := startTrainer(t, dir, "rollout1", busArgs("rollout", srv.URL(), "--workers", "1")...)
	w2 := startTrainer(t, dir, "rollout2", busArgs("rollout", srv.URL(), "--workers", "1")...)
	// a short lease TTL: the SIGKILLed learner's lease expires soon and the resumed learner takes it over
	learner := startTrainer(t, dir, "learner", busArgs("learn", srv.URL(), "--run-dir", runDir, "--lease-ttl", "3s")...)
	waitStep(t, runDir, 1, learner)
	srv.Stop()
	time.Sleep(300 * time.Millisecond)
	srv.Restart(t)
	waitStep(t, runDir, 3, learner)
	if err := learner.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	learner.wait(t, 10*time.Second)
	resumed := startTrainer(t, dir, "learner2", busArgs("learn", srv.URL(), "--run-dir", runDir, "--resume", "--lease-ttl", "3s")...)
	if err := resumed.wait(t, 90*time.Second); err != nil {
		t.Fatalf("resumed learner: %v", err)
	}
	for i, w := range []*proc{w1, w2} {
		if err := w.wait(t, 30*time.Second); err != nil {
			t.Fatalf("worker %d: %v", i+1, err)
		}
	}
	b, _ := os.ReadFile(resumed.log)
	if !strings.Contains(string(b), "resuming") {
		t.Error("the second learner did not resume from a checkpoint")
	}
	t.Logf("resumed learner: %v groups redelivered, %v duplicates acked", metricMax(t, runDir, "bus/redelivered"), metricMax(t, runDir, "bus/duplicate"))
	checkExactlyOnce(t, runDir)
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

package main

// stop_test.go: stopping and fencing with real processes (the helpers of bus_test.go). SIGTERM of `trainer
// learn` at random moments against Debian's nats-server with `trainer rollout` workers: exit 130, a checkpoint
// of the last completed step, and --resume carries on to the weights of an uninterrupted in-process run;
// SIGTERM of a worker: exit 130, its prompts go to the other worker. The learner lease: a second learner is
// refused naming the holder; a learner paused past the lease TTL loses it to the next one and stops without a
// checkpoint, as does one whose lease is stolen; the run directory lock refuses a second trainer on the same
// directory. A second signal, or a stop that outlasts --stop-timeout, exits at once with 143. SIGTERM of
// `trainer run tiny`: exit 130 with a checkpoint of the last step, from which --resume continues.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sparrow-rl/sparrow/checkpoints"
	"github.com/sparrow-rl/sparrow/rollout/natsbus"
)

// exitCode is a finished process's exit status (-1: killed by a signal).
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -2
	}
	return 0
}

// expectExit waits for p and fails unless it exits with code and its log says want (when not "").
func expectExit(t *testing.T, p *proc, within time.Duration, code int, want ...string) {
	t.Helper()
	start := time.Now()
	got := exitCode(p.wait(t, within))
	b, _ := os.ReadFile(p.log)
	if got != code {
		t.Fatalf("%s exited %d after %s, want %d\n%s", filepath.Base(p.log), got, time.Since(start).Round(time.Millisecond), code, tail(string(b), 3000))
	}
	for _, w := range want {
		if !strings.Contains(string(b), w) {
			t.Fatalf("%s (exit %d) does not say %q\n%s", filepath.Base(p.log), got, w, tail(string(b), 3000))
		}
	}
}

// waitLog waits until p's log holds s.
func waitLog(t *testing.T, p *proc, s string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if b, _ := os.ReadFile(p.log); strings.Contains(string(b), s) {
			return
		}
		select {
		case err := <-p.done:
			p.done <- err
			b, _ := os.ReadFile(p.log)
			t.Fatalf("%s exited (%v) before logging %q\n%s", filepath.Base(p.log), err, s, tail(string(b), 3000))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not log %q within %s", filepath.Base(p.log), s, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lastLogged is the highest step of metrics.jsonl with the metric key.
func lastLogged(runDir, key string) int {
	f, err := os.Open(filepath.Join(runDir, "metrics.jsonl"))
	if err != nil {
		return -1
	}
	defer f.Close()
	best := -1
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			if _, ok := m[key]; ok {
				best = max(best, int(m["step"].(float64)))
			}
		}
	}
	return best
}

// latestName is the checkpoint checkpoints/latest names ("" when none).
func latestName(runDir string) string {
	l, err := checkpoints.Latest(filepath.Join(runDir, "checkpoints"))
	if err != nil {
		return ""
	}
	return filepath.Base(l)
}

// TestBusSIGTERM: the learner is stopped with SIGTERM three times at random moments (after 0–2 of its steps
// and up to 60 ms) and resumed each time; one worker is stopped with SIGTERM mid-run. Every stop exits 130
// and leaves the checkpoint of the last completed step; the resumed runs apply every group exactly once
// and end with the weights of the uninterrupted in-process run.
func TestBusSIGTERM(t *testing.T) {
	srv := startNATS(t)
	referenceWeights(t)
	dir := t.TempDir()
	runDir := filepath.Join(dir, "run")
	w1 := startTrainer(t, dir, "rollout1", busArgs("rollout", srv.URL(), "--workers", "1")...)
	w2 := startTrainer(t, dir, "rollout2", busArgs("rollout", srv.URL(), "--workers", "1")...)
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 1))
	t.Logf("random moments from seed %d", seed)
	stops := 0
	for round := 0; ; round++ {
		args := busArgs("learn", srv.URL(), "--run-dir", runDir)
		if latestName(runDir) != "" {
			args = append(args, "--resume")
		}
		learner := startTrainer(t, dir, fmt.Sprintf("learner%d", round), args...)
		if round == 3 {
			if err := learner.wait(t, 90*time.Second); err != nil {
				t.Fatalf("the last learner: %v", err)
			}
			break
		}
		waitLog(t, learner, "msg=learn", 30*time.Second) // its signal handler is in place (a signal before kills it)
		from, k := lastStep(runDir), rng.IntN(3)
		for lastStep(runDir) < from+k && len(learner.done) == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		if round == 1 && stops > 0 { // a worker, most likely mid-group
			if err := w1.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			expectExit(t, w1, 20*time.Second, 130, "stopped by SIGTERM")
			t.Logf("round %d: worker 1 stopped with SIGTERM: exit 130", round)
		}
		time.Sleep(time.Duration(rng.IntN(60)) * time.Millisecond)
		sent := time.Now()
		// a learner that finished its last step meanwhile has exited: the wait below reads its exit 0
		if err := learner.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			t.Fatal(err)
		}
		code := exitCode(learner.wait(t, 60*time.Second))
		if code == 0 {
			t.Logf("round %d: the learner finished before the signal", round)
			break
		}
		b, _ := os.ReadFile(learner.log)
		if code != 130 {
			t.Fatalf("round %d: learner exited %d after SIGTERM, want 130\n%s", round, code, tail(string(b), 3000))
		}
		stops++
		last, latest := lastStep(runDir), latestName(runDir)
		t.Logf("round %d: SIGTERM once step %d was done (+%d) → exit 130 in %s; last completed step %d, latest %s",
			round, from+k, k, time.Since(sent).Round(time.Millisecond), last, latest)
		if last >= 0 && latest != checkpoints.Name("rl_math", last) {
			t.Fatalf("round %d: latest is %q, want the last completed step rl_math-%d\n%s", round, latest, last, tail(string(b), 3000))
		}
	}
	if stops == 0 {
		t.Error("no learner was stopped mid-run")
	}
	if err := w2.wait(t, 30*time.Second); err != nil {
		t.Fatalf("worker 2: %v", err)
	}
	checkExactlyOnce(t, runDir)
}

// TestBusLearnerLease: against one nats-server without workers (the learners wait for step 0's groups).
func TestBusLearnerLease(t *testing.T) {
	srv := startNATS(t)
	dir := t.TempDir()
	learn := func(name, runDir string, extra ...string) *proc {
		return startTrainer(t, dir, name, busArgs("learn", srv.URL(), append([]string{"--run-dir", filepath.Join(dir, runDir), "--lease-ttl", "2s"}, extra...)...)...)
	}
	mark := time.Now()
	phase := func(what string) {
		t.Logf("%-48s %s", what, time.Since(mark).Round(time.Millisecond))
		mark = time.Now()
	}
	a := learn("a", "run-a")
	waitLog(t, a, "learner lease taken", 30*time.Second)
	phase("learner a took the lease")
	pidA := fmt.Sprintf("pid %d", a.cmd.Process.Pid)

	// another learner of the same run and stage (another machine: another run directory) is refused
	b := learn("b", "run-b")
	expectExit(t, b, 20*time.Second, 1, "another learner holds this stage's lease", pidA, "run-a")
	phase("learner b refused by the lease")
	// another trainer on the same run directory is refused by its lock
	c := learn("c", "run-a")
	expectExit(t, c, 20*time.Second, 1, "run.lock", pidA)
	phase("learner c refused by the run directory lock")

	// a learner paused past the TTL loses the lease to the next one, and stops without a checkpoint
	if err := a.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	d := learn("d", "run-d")
	waitLog(t, d, "learner lease taken", 30*time.Second)
	phase("learner d took over a's expired lease")
	if err := a.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	expectExit(t, a, 20*time.Second, 1, "lost its lease", "run-d")
	phase("learner a, resumed, stopped: lease lost")
	if n := latestName(filepath.Join(dir, "run-a")); n != "" {
		t.Errorf("the learner that lost its lease wrote checkpoint %s", n)
	}

	// a stolen lease: the holder stops at its next renewal
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(t.Context(), natsbus.NewNames("tiny", "rl_math").LeaseBucket())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), natsbus.LeaseKey, []byte(`{"host":"thief","pid":7}`)); err != nil {
		t.Fatal(err)
	}
	expectExit(t, d, 20*time.Second, 1, "lost its lease", "thief")
	phase("learner d stopped: lease stolen")
	if n := latestName(filepath.Join(dir, "run-d")); n != "" {
		t.Errorf("the learner whose lease was stolen wrote checkpoint %s", n)
	}

	// a second signal exits at once: the first stop hangs on a server that does not answer
	// (a run of its own: its lease bucket and streams are apart from the ones above)
	e := learn("e", "run-e", "--lease-ttl", "20s", "--set", "rl.bus.prefix=second-signal")
	waitLog(t, e, "weights published", 30*time.Second)
	phase("learner e started")
	if err := srv.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Signal(syscall.SIGCONT) }()
	if err := e.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitLog(t, e, "stopping:", 10*time.Second)
	sent := time.Now()
	if err := e.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	expectExit(t, e, 5*time.Second, 143, "second signal")
	t.Logf("second SIGTERM: exit 143 after %s", time.Since(sent).Round(time.Millisecond))
	if err := srv.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}

	// so does a stop that outlasts --stop-timeout
	f := learn("f", "run-f", "--lease-ttl", "20s", "--stop-timeout", "1s", "--set", "rl.bus.prefix=stop-timeout")
	waitLog(t, f, "weights published", 60*time.Second)
	phase("learner f started")
	if err := srv.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	sent = time.Now()
	if err := f.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	expectExit(t, f, 10*time.Second, 143, "did not finish within --stop-timeout")
	t.Logf("stop timeout 1s: exit 143 after %s", time.Since(sent).Round(time.Millisecond))
}

// TestRunSIGTERM: `trainer run tiny` (pretraining in one process) stopped with SIGTERM exits 130 with the
// checkpoint of its last step; a second `trainer run` on its directory meanwhile is refused by the lock;
// --resume continues from the checkpoint.
func TestRunSIGTERM(t *testing.T) {
	dir := t.TempDir()
	runDir := filepath.Join(dir, "run")
	args := []string{"run", "tiny", "--run-dir", runDir}
	for _, s := range []string{"run.progress=off", "run.plots=false", "run.tensorboard=false", "train.log_every=1", "train.eval_every=100000", "checkpoint.every=100000"} {
		args = append(args, "--set", s)
	}
	first := startTrainer(t, dir, "run1", append(args, "--set", "train.steps=100000")...)
	for lastLogged(runDir, "loss") < 5 && len(first.done) == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	second := startTrainer(t, dir, "run2", append(args, "--set", "train.steps=100000", "--resume")...)
	expectExit(t, second, 30*time.Second, 1, "run.lock", fmt.Sprintf("pid %d", first.cmd.Process.Pid))
	if err := first.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	expectExit(t, first, 30*time.Second, 130, "interrupted")
	last := lastLogged(runDir, "loss")
	t.Logf("SIGTERM after step %d: exit 130, latest %s", last, latestName(runDir))
	if got, want := latestName(runDir), checkpoints.Name("pretrain", last); got != want {
		t.Fatalf("latest is %q after SIGTERM, want the last step %s", got, want)
	}
	resumed := startTrainer(t, dir, "run3", append(args, "--set", fmt.Sprintf("train.steps=%d", last+3), "--resume")...)
	expectExit(t, resumed, 60*time.Second, 0, "resuming")
	if got, want := latestName(runDir), checkpoints.Name("pretrain", last+3); got != want {
		t.Fatalf("latest is %q after the resumed run, want %s", got, want)
	}
}

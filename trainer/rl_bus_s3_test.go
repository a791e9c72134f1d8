package trainer

// rl_bus_s3_test.go: a short RL run whose weights travel over S3 (rl.bus.weights s3, versitygw) while the
// groups travel over an embedded NATS server, with the rollout workers run as a separate worker process
// would run them (natsbus.RunWorkers, local_workers false).

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/sparrow-rl/sparrow/checkpoints/objstore/s3test"
	"github.com/sparrow-rl/sparrow/rollout/natsbus"
)

// TestRLBusWeightsS3: 3 GRPO steps with 2 out-of-process-style workers that get every policy version from
// S3 (the NATS notice carries version, hash and s3:// location). Every group is applied exactly once, the
// workers swapped weights, the bucket holds the last 3 versions, and the final weights equal bit for bit
// those of the in-process channel transport (max_staleness 0: every group sampled with the newest weights).
func TestRLBusWeightsS3(t *testing.T) {
	srv := s3test.Start(t)
	srv.MakeBucket("sparrow-weights")
	srv.SetEnv(t)
	e, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{StoreDir: t.TempDir(), MaxPayload: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown()

	cfg := rlTinyConfig(t, "rl.workers=2", "rl.beta=0", "rl.bus.transport=nats", "rl.bus.url="+e.URL(),
		"rl.bus.local_workers=false", "rl.bus.weights=s3", "rl.bus.weights_url=s3://sparrow-weights/run/rl",
		"rl.bus.ack_wait_s=3", "rl.bus.job_ack_wait_s=2", "rl.bus.heartbeat_s=0.5", "rl.bus.wait_s=60")
	st := cfg.Stages[0]
	fam, err := RLFamily(st)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	type result struct {
		rep natsbus.WorkerReport
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, err := natsbus.RunWorkers(ctx, natsbus.WorkerOptions{Conn: natsbus.ConnOptions{URL: e.URL()},
			Names: BusNames(cfg, st), RL: st.RL, Family: fam, Workers: 2, Log: quietLog()})
		done <- result{rep, err}
	}()
	dir := t.TempDir()
	if err := Execute(ctx, cfg, Options{Dir: dir, Log: quietLog()}); err != nil {
		t.Fatalf("learner: %v", err)
	}
	var w result
	select {
	case w = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("workers still running 60 s after the learner finished")
	}
	if w.err != nil {
		t.Fatalf("workers: %v", w.err)
	}
	if w.rep.Groups != 6 || w.rep.Version != 3 || w.rep.Swaps < 3 {
		t.Errorf("workers: %d groups, version %d, %d weight swaps; want 6 groups, version 3, ≥ 3 swaps", w.rep.Groups, w.rep.Version, w.rep.Swaps)
	}

	ck := filepath.Join(dir, "checkpoints", "rl_math-3")
	ids, version, err := HandledGroups(dir, "rl_math", 3)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ids)
	if want := expectedGroups("rl_math", 3, 2); !slices.Equal(ids, want) || version != 3 {
		t.Errorf("the group ledger handled %v at version %d, want %v at 3", ids, version, want)
	}
	for v := 0; v <= 3; v++ {
		_, err := os.Stat(srv.ObjectPath("sparrow-weights", fmt.Sprintf("run/rl/v%012d", v)))
		if got, want := err == nil, v >= 1; got != want {
			t.Errorf("weights version %d in the bucket: %v, want %v (%v)", v, got, want, err)
		}
	}

	ref := t.TempDir()
	if err := Execute(context.Background(), rlTinyConfig(t, "rl.workers=2", "rl.beta=0", "rl.bus.transport=inproc"), Options{Dir: ref, Log: quietLog()}); err != nil {
		t.Fatal(err)
	}
	a, b := loadWeights(t, ck), loadWeights(t, filepath.Join(ref, "checkpoints", "rl_math-3"))
	for i := range a.Data {
		for j := range a.Data[i] {
			if math.Float32bits(a.Data[i][j]) != math.Float32bits(b.Data[i][j]) {
				t.Fatalf("%s[%d]: %v with weights over S3, %v in-process", a.Specs[i].Name, j, a.Data[i][j], b.Data[i][j])
			}
		}
	}
}

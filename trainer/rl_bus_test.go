package trainer

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/sparrow-rl/sparrow/checkpoints"
)

// expectedGroups lists the group ids a run without dynamic sampling handles: prompts_per_step per step.
func expectedGroups(stage string, steps, prompts int) []string {
	var out []string
	for s := 0; s < steps; s++ {
		for j := 0; j < prompts; j++ {
			out = append(out, fmt.Sprintf("%s-%06d-%03d", stage, s, j))
		}
	}
	return out
}

// TestRLBusEmbedded: the default transport (an embedded nats-server with JetStream, two in-process workers)
// runs GRPO end to end; every group is applied exactly once (the group ledger, groups.jsonl), the bus metrics
// are logged, and the weights equal bit for bit those of the in-process channel transport.
func TestRLBusEmbedded(t *testing.T) {
	weights := map[string][]float32{}
	for _, tr := range []string{"embedded", "inproc"} {
		dir := t.TempDir()
		cfg := rlTinyConfig(t, "rl.workers=2", "rl.beta=0", "rl.bus.transport="+tr)
		if err := Execute(context.Background(), cfg, Options{Dir: dir, Log: quietLog()}); err != nil {
			t.Fatalf("%s: %v", tr, err)
		}
		ck := filepath.Join(dir, "checkpoints", "rl_math-3")
		ids, version, err := HandledGroups(dir, "rl_math", 3)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(ids) // handled in arrival order within a step
		if want := expectedGroups("rl_math", 3, 2); !slices.Equal(ids, want) || version != 3 {
			t.Errorf("%s: the group ledger handled %v at version %d, want %v at 3", tr, ids, version, want)
		}
		p := loadWeights(t, ck)
		var flat []float32
		for _, d := range p.Data {
			flat = append(flat, d...)
		}
		weights[tr] = flat
		if tr != "embedded" {
			continue
		}
		recs, err := ReadMetrics(filepath.Join(dir, "metrics.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		steps := 0
		for _, r := range recs {
			if _, ok := r.Values["reward/mean"]; !ok {
				continue
			}
			steps++
			for _, k := range []string{"bus/data_wait_frac", "bus/transport_frac", "timing_s/data_wait", "rollout/live_workers", "bus/mb_received"} {
				if v, ok := r.Values[k]; !ok || math.IsNaN(v) {
					t.Errorf("step %d: bus metric %s missing", r.Step, k)
				}
			}
			if r.Values["rollout/live_workers"] < 1 {
				t.Errorf("step %d: %v live workers reported, want the local ones", r.Step, r.Values["rollout/live_workers"])
			}
			if r.Values["bus/mb_received"] <= 0 {
				t.Errorf("step %d: no bytes received through the stream", r.Step)
			}
		}
		if steps != 3 {
			t.Errorf("%d steps logged, want 3", steps)
		}
	}
	a, b := weights["embedded"], weights["inproc"]
	if len(a) != len(b) {
		t.Fatalf("weights of %d and %d values", len(a), len(b))
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			t.Fatalf("weight %d: %v over NATS, %v in-process", i, a[i], b[i])
		}
	}
}

// TestRLInterruptMidStep: a run with in-process workers over the embedded server (`trainer run`) is
// cancelled at a random moment of its third step (collecting or updating): it returns ErrInterrupted with a
// checkpoint of the last completed step, and the resumed run applies every group once (those the stopped
// step held were not acked) and ends with the weights of the uninterrupted run.
func TestRLInterruptMidStep(t *testing.T) {
	// the embedded server restarts with the resumed run and redelivers what was in flight after the ack waits
	sets := []string{"rl.workers=2", "rl.beta=0", "train.steps=6", "checkpoint.every=100", "rl.bus.ack_wait_s=2", "rl.bus.job_ack_wait_s=2"}
	straight := t.TempDir()
	if err := Execute(context.Background(), rlTinyConfig(t, sets...), Options{Dir: straight, Log: quietLog()}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	delay := time.Duration(rand.IntN(20)) * time.Millisecond // a step takes some 30 ms
	testHookAfterStep = func(step int) {
		if step == 2 {
			time.AfterFunc(delay, cancel)
		}
	}
	err := Execute(ctx, rlTinyConfig(t, sets...), Options{Dir: dir, Log: quietLog()})
	testHookAfterStep = nil
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("run cancelled %s after step 2: %v, want ErrInterrupted", delay, err)
	}
	latest, err := checkpoints.Latest(filepath.Join(dir, "checkpoints"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cancelled %s into step 3: checkpoint %s", delay, filepath.Base(latest))
	if err := Execute(context.Background(), rlTinyConfig(t, sets...), Options{Dir: dir, Resume: "auto", Log: quietLog()}); err != nil {
		t.Fatal(err)
	}
	ids, version, err := HandledGroups(dir, "rl_math", 6)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ids)
	if want := expectedGroups("rl_math", 6, 2); !slices.Equal(ids, want) || version != 6 {
		t.Errorf("the group ledger handled %v at version %d, want %v at 6", ids, version, want)
	}
	a, b := loadWeights(t, filepath.Join(straight, "checkpoints", "rl_math-6")), loadWeights(t, filepath.Join(dir, "checkpoints", "rl_math-6"))
	for i := range a.Data {
		for j := range a.Data[i] {
			if math.Float32bits(a.Data[i][j]) != math.Float32bits(b.Data[i][j]) {
				t.Fatalf("%s[%d]: straight %v, interrupted and resumed %v", a.Specs[i].Name, j, a.Data[i][j], b.Data[i][j])
			}
		}
	}
}

// Tests of out-of-process rollout workers (natsbus.RunWorkers, what `trainer rollout` runs) serving a
// sparse-attention policy over the embedded NATS server: the workers learn the policy from the weights the
// learner publishes and decode with DeepSeek Sparse Attention, recording dsa_topk when rl.keep_selection is
// on; their groups equal bit for bit those of the learner's in-process sparse sampler (and differ from dense
// decoding), and with Keep Selection the learner's recomputed log-probabilities match theirs to float
// rounding. A worker whose config says the policy is dense is refused.
package trainer

import (
	"context"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/model"
	"github.com/sparrow-rl/sparrow/rollout"
	"github.com/sparrow-rl/sparrow/rollout/natsbus"
)

// busDSAStage builds a sparse rl stage (dsa_sparse before it, k = 4) whose learner talks to out-of-process
// workers over the embedded server e, and opens its bus (which publishes the weights of version 0).
func busDSAStage(t *testing.T, ctx context.Context, e *natsbus.Embedded, keep bool, sets ...string) *rlStage {
	t.Helper()
	cfg, st := dsaRLConfig(t, keep, append([]string{"rl.beta=0", "rl.temperature=0.8", "rl.top_p=0.9", "rl.group_size=4", "rl.prompts_per_step=2",
		"rl.bus.transport=nats", "rl.bus.url=" + e.URL(), "rl.bus.local_workers=false",
		"rl.bus.ack_wait_s=3", "rl.bus.job_ack_wait_s=2", "rl.bus.heartbeat_s=0.5", "rl.bus.wait_s=60"}, sets...)...)
	p := model.NewParams(cfg.Model)
	p.Init(11)
	s, err := newRLStage(&Run{Config: cfg, Dir: t.TempDir(), Log: quietLog()}, st, p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.end(false) })
	if err := s.begin(ctx, 0); err != nil {
		t.Fatal(err)
	}
	return s
}

type workerResult struct {
	rep natsbus.WorkerReport
	err error
}

// startWorkers runs a worker process's workers (as `trainer rollout` does) for stage s, with the attention
// its config derives unless att overrides it.
func startWorkers(t *testing.T, ctx context.Context, e *natsbus.Embedded, s *rlStage, att string) <-chan workerResult {
	t.Helper()
	cfg, st := s.run.Config, s.stage
	fam, err := RLFamily(st)
	if err != nil {
		t.Fatal(err)
	}
	want, why, err := WorkerAttention(cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	if att != "" {
		want, why = att, "overridden by the test"
	}
	done := make(chan workerResult, 1)
	go func() {
		rep, err := natsbus.RunWorkers(ctx, natsbus.WorkerOptions{Conn: natsbus.ConnOptions{URL: e.URL()}, Names: BusNames(cfg, st),
			RL: st.RL, Attention: want, AttentionWhy: why, Family: fam, Workers: 1, Log: quietLog()})
		done <- workerResult{rep, err}
	}()
	return done
}

// TestRLBusWorkerProcessSparse: with Keep Selection on and off, the out-of-process workers of a sparse policy
// decode sparsely: their groups equal bit for bit those the learner's own sparse sampler draws for the same
// jobs (and not those of dense decoding), carry dsa_topk exactly when rl.keep_selection is on, and with it
// the learner's recomputed log-probabilities match logp_old to float rounding.
//
// With rl.rollout_dtype bfloat16 the workers round the weights they receive as the learner's in-process engine
// does (their groups equal its bit for bit), and the learner, still at float32, no longer matches logp_old to
// float rounding: that is the training–inference mismatch the setting exists to create.
func TestRLBusWorkerProcessSparse(t *testing.T) {
	for _, c := range []struct {
		name  string
		keep  bool
		dtype string
	}{{"keep_selection", true, "float32"}, {"no_keep_selection", false, "float32"}, {"keep_selection_bf16", true, "bfloat16"}} {
		keep := c.keep
		t.Run(c.name, func(t *testing.T) {
			e, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{StoreDir: t.TempDir(), MaxPayload: 8 << 20})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Shutdown()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			s := busDSAStage(t, ctx, e, keep, "rl.rollout_dtype="+c.dtype)
			if s.stopWorkers != nil {
				t.Fatal("local_workers false: the learner must not sample itself")
			}
			done := startWorkers(t, ctx, e, s, "")
			groups, _, err := s.collect(ctx, 0)
			if err != nil {
				t.Fatal(err)
			}
			s.closeTransport(true)
			var w workerResult
			select {
			case w = <-done:
			case <-time.After(60 * time.Second):
				t.Fatal("workers still running 60 s after the learner finished")
			}
			want := natsbus.Policy{Attention: configs.AttentionSparse, SparseTopK: 4, KeepSelection: keep}
			if w.err != nil || w.rep.Policy != want || w.rep.Groups != 2 {
				t.Fatalf("workers: %+v, %v; want 2 groups with policy %+v", w.rep, w.err, want)
			}

			// the same jobs, sampled in-process by the learner's sparse sampler and by a dense one
			jobs, err := s.jobs(0, 0, len(groups))
			if err != nil {
				t.Fatal(err)
			}
			sc := rollout.RLSamplerConfig(s.rc, s.sparse, s.layout.selectionK)
			local := rollout.NewGroupSampler(s.engine, s.tok, s.family, "local", sc)
			sc.Sparse, sc.SparseTopK, sc.RecordSelection = false, 0, false
			dense := rollout.NewGroupSampler(s.engine, s.tok, s.family, "dense", sc)
			var trajs []*data.Trajectory
			denseDiffers := false
			for i, g := range groups {
				j := jobs[i]
				if g.GroupID != j.GroupID {
					t.Fatalf("group %d is %s, job %s", i, g.GroupID, j.GroupID)
				}
				ref, err := local.Sample(ctx, j.Task, j.GroupID, 0, j.RNG())
				if err != nil {
					t.Fatal(err)
				}
				dg, err := dense.Sample(ctx, j.Task, j.GroupID, 0, j.RNG())
				if err != nil {
					t.Fatal(err)
				}
				for r := range g.Trajectories {
					tr, rt, dt := &g.Trajectories[r], &ref.Trajectories[r], &dg.Trajectories[r]
					if !slices.Equal(tr.CompletionTokens, rt.CompletionTokens) || !slices.Equal(tr.LogpOld, rt.LogpOld) || !slices.Equal(tr.DSATopK, rt.DSATopK) {
						t.Fatalf("group %s row %d: the worker's completion differs from the learner's sparse sampler's", g.GroupID, r)
					}
					if !slices.Equal(tr.CompletionTokens, dt.CompletionTokens) || maxAbsDiff(tr.LogpOld, dt.LogpOld) > 1e-4 {
						denseDiffers = true
					}
					positions := len(tr.PromptTokens) + len(tr.CompletionTokens)
					if keep && (tr.DSALayers != s.params.Config.NumHiddenLayers || tr.DSAK != 4 || len(tr.DSATopK) != positions*tr.DSALayers*4) {
						t.Fatalf("group %s row %d: dsa_topk %d entries of %d layers × %d, want %d positions × %d × 4", g.GroupID, r,
							len(tr.DSATopK), tr.DSALayers, tr.DSAK, positions, s.params.Config.NumHiddenLayers)
					}
					if !keep && (tr.DSALayers != 0 || len(tr.DSATopK) != 0) {
						t.Fatalf("group %s row %d: dsa_topk recorded without rl.keep_selection", g.GroupID, r)
					}
					trajs = append(trajs, tr)
				}
			}
			if !denseDiffers {
				t.Fatal("dense decoding gives the same completions and log-probabilities: the test does not tell sparse from dense")
			}
			if keep && c.dtype == "bfloat16" {
				fMax, fMean, _, _ := learnerLogp(t, s, trajs, true)
				t.Logf("worker process at bfloat16, Keep Selection: max |logp_learner − logp_old| %.3g, mean %.3g", fMax, fMean)
				if !(fMean > 1e-5) {
					t.Errorf("mean |logp_learner − logp_old| = %.3g with bfloat16 rollout weights, want more than float32 rounding", fMean)
				}
			} else if keep {
				fMax, fMean, _, _ := learnerLogp(t, s, trajs, true)
				t.Logf("worker process, Keep Selection: max |logp_learner − logp_old| %.3g, mean %.3g", fMax, fMean)
				if fMax > 1e-5 {
					t.Errorf("max |logp_learner − logp_old| = %.3g with the worker's groups, want float rounding (≤ 1e-5)", fMax)
				}
			}
		})
	}
}

func maxAbsDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	var m float64
	for i := range a {
		m = math.Max(m, math.Abs(float64(a[i])-float64(b[i])))
	}
	return m
}

// TestRLBusWorkerAttentionMismatch: a worker process whose config says the policy is dense refuses the
// weights of a sparse learner, naming both, instead of sampling dense rollouts for it.
func TestRLBusWorkerAttentionMismatch(t *testing.T) {
	e, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{StoreDir: t.TempDir(), MaxPayload: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := busDSAStage(t, ctx, e, false)
	defer s.closeTransport(false)
	var w workerResult
	select {
	case w = <-startWorkers(t, ctx, e, s, configs.AttentionDense):
	case <-time.After(30 * time.Second):
		t.Fatal("a worker whose config contradicts the learner's policy is still running after 30 s")
	}
	if w.err == nil || !strings.Contains(w.err.Error(), "sparse") || !strings.Contains(w.err.Error(), "config says dense") {
		t.Fatalf("RunWorkers = %v, want an error naming the learner's sparse policy and the worker's dense config", w.err)
	}
}

// TestWorkerAttention: a worker derives the policy's attention from its config like the learner, except that
// an init_from checkpoint missing on its machine leaves it to the weights ("").
func TestWorkerAttention(t *testing.T) {
	cfg, st := dsaRLConfig(t, false)
	if att, _, err := WorkerAttention(cfg, st); err != nil || att != configs.AttentionSparse {
		t.Fatalf("after dsa_sparse: %q, %v; want sparse", att, err)
	}
	cfg = rlTinyConfig(t)
	if att, _, err := WorkerAttention(cfg, cfg.Stages[0]); err != nil || att != configs.AttentionDense {
		t.Fatalf("fresh weights: %q, %v; want dense", att, err)
	}
	cfg.Stages[0].InitFrom = t.TempDir() + "/elsewhere"
	att, why, err := WorkerAttention(cfg, cfg.Stages[0])
	if err != nil || att != "" || !strings.Contains(why, "not on this machine") {
		t.Fatalf("init_from missing here: %q, %q, %v; want \"\" and a reason", att, why, err)
	}
}

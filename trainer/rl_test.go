package trainer

import (
	"context"
	"math"
	"path/filepath"
	"testing"

	"github.com/sparrow-rl/sparrow/checkpoints"
	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/model"
)

func rlTinyConfig(t *testing.T, sets ...string) *configs.Config {
	t.Helper()
	base := []string{"run.progress=off", "run.plots=false", "train.steps=3", "schedule.warmup_steps=1",
		"rl.env=math", "rl.env_params={digits: \"1\"}", "rl.group_size=4", "rl.prompts_per_step=2",
		"rl.max_new_tokens=20", "rl.max_prompt_tokens=32", "rl.eval_tasks=4", "rl.eval_every=0",
		"stages.pretrain.kind=rl", "stages.pretrain.name=rl_math"}
	cfg, err := configs.Load("tiny", append(base, sets...))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestRLRunsAndLogs: a few GRPO steps end to end with the reference model on; the verl-style metrics are
// logged and the learner's recomputed log-probabilities match the sampler's at equal policy version (forced
// routes, kept sets and temperature replayed).
func TestRLRunsAndLogs(t *testing.T) {
	dir := t.TempDir()
	cfg := rlTinyConfig(t, "rl.beta=0.01", "rl.temperature=0.8", "rl.top_p=0.9", "rl.top_k=50")
	if err := Execute(context.Background(), cfg, Options{Dir: dir, Log: quietLog()}); err != nil {
		t.Fatal(err)
	}
	recs, err := ReadMetrics(filepath.Join(dir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"reward/mean", "reward/std", "reward/frac_zero_std", "response_length/mean", "response_length/clip_ratio",
		"actor/pg_loss", "actor/pg_clipfrac", "actor/kl", "actor/entropy", "actor/opsm_frac", "rollout/logp_mismatch",
		"rollout/is_ratio_mean", "staleness/mean", "staleness/max", "timing_s/rollout", "timing_s/train", "grad_norm", "lr"}
	steps := 0
	for _, r := range recs {
		if _, ok := r.Values["reward/mean"]; !ok {
			continue
		}
		steps++
		for _, k := range want {
			v, ok := r.Values[k]
			if !ok || math.IsNaN(v) {
				t.Errorf("step %d: metric %s missing or NaN", r.Step, k)
			}
		}
		if mm := r.Values["rollout/logp_mismatch"]; mm > 1e-4 {
			t.Errorf("step %d: learner vs sampler log-prob mismatch %.3g > 1e-4", r.Step, mm)
		}
		if r.Values["staleness/max"] != 0 {
			t.Errorf("step %d: staleness %v on a strictly on-policy run", r.Step, r.Values["staleness/max"])
		}
	}
	if steps != 3 {
		t.Fatalf("%d RL steps logged, want 3", steps)
	}
}

// TestRLDeterministic: a seeded RL run gives the same weights twice, whatever the worker timing.
func TestRLDeterministic(t *testing.T) {
	var weights [][]float32
	for i := 0; i < 2; i++ {
		dir := t.TempDir()
		cfg := rlTinyConfig(t, "rl.workers=3", "rl.beta=0")
		if err := Execute(context.Background(), cfg, Options{Dir: dir, Log: quietLog()}); err != nil {
			t.Fatal(err)
		}
		p := loadWeights(t, filepath.Join(dir, "checkpoints", "rl_math-3"))
		var flat []float32
		for _, d := range p.Data {
			flat = append(flat, d...)
		}
		weights = append(weights, flat)
	}
	for j := range weights[0] {
		if math.Float32bits(weights[0][j]) != math.Float32bits(weights[1][j]) {
			t.Fatalf("weight %d differs between two seeded runs: %v vs %v", j, weights[0][j], weights[1][j])
		}
	}
}

// TestRLUpdateDirection: one GRPO update raises the log-likelihood of the completions with positive advantage
// and lowers that of the ones with negative advantage (the sign and the chain rule of the whole learner: grpo
// loss → policy head → network → AdamW).
func TestRLUpdateDirection(t *testing.T) {
	cfg := rlTinyConfig(t, "rl.beta=0", "rl.delta=0", "rl.group_size=8", "rl.prompts_per_step=4", "stages.rl_math.optimizer.lr=1e-3")
	st := cfg.Stages[0]
	p := model.NewParams(cfg.Model)
	p.Init(3)
	s, err := newRLStage(&Run{Config: cfg, Dir: t.TempDir(), Log: quietLog()}, st, p)
	if err != nil {
		t.Fatal(err)
	}
	defer s.end(false)
	groups := sampledGroups(t, s)
	// artificial rewards: within each group, the first half is rewarded
	var trajs []*data.Trajectory
	for _, g := range groups {
		for i := range g.Trajectories {
			g.Trajectories[i].Reward = float32(map[bool]int{true: 1, false: 0}[i < len(g.Trajectories)/2])
			trajs = append(trajs, &g.Trajectories[i])
		}
	}
	seqLogp := func() []float64 {
		b := s.batch
		if err := b.lay(trajs, make([]float64, len(trajs)), s.layout); err != nil {
			t.Fatal(err)
		}
		rec := &logpRecorder{batch: b, dlogp: make([]float64, b.Rows*b.T)}
		b.replay(s.graph, s.rc.Temperature, s.layout.moeLayers)
		s.graph.Policy.Loss = rec.loss
		if _, err := s.graph.Run(b.Input); err != nil {
			t.Fatal(err)
		}
		out := make([]float64, len(trajs))
		for k, lp := range rec.logp {
			out[b.Layout.Seq[k]] += lp
		}
		return out
	}
	before := seqLogp()
	batch, err := s.advantages(groups)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.update(0, batch); err != nil {
		t.Fatal(err)
	}
	after := seqLogp()
	var up, down int
	for i := range trajs {
		d := after[i] - before[i]
		if trajs[i].Reward == 1 && d > 0 {
			up++
		}
		if trajs[i].Reward == 0 && d < 0 {
			down++
		}
	}
	n := len(trajs) / 2
	t.Logf("rewarded completions more likely: %d/%d; unrewarded less likely: %d/%d", up, n, down, n)
	if up < n*3/4 || down < n*3/4 {
		t.Fatalf("the update moved log-likelihoods the wrong way: %d/%d up, %d/%d down", up, n, down, n)
	}
}

// TestRLDynamicSamplingAndLongPrompts: with dynamic sampling on a random policy (every group has equal,
// zero rewards) the refill budget is spent and the run goes on instead of aborting; tasks whose prompts
// exceed rl.max_prompt_tokens are redrawn and counted instead of failing the step.
func TestRLDynamicSamplingAndLongPrompts(t *testing.T) {
	dir := t.TempDir()
	cfg := rlTinyConfig(t, "rl.beta=0", "rl.dynamic_sampling=true", "rl.max_refill=3", "rl.env=logic",
		"rl.max_prompt_tokens=16", "train.steps=2")
	cfg.Stages[0].RL.EnvParams = map[string]string{"sort_len": "6"} // (map --set values merge with the recipe's)
	if err := Execute(context.Background(), cfg, Options{Dir: dir, Log: quietLog()}); err != nil {
		t.Fatal(err)
	}
	recs, err := ReadMetrics(filepath.Join(dir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var dropped, tooLong float64
	for _, r := range recs {
		dropped += r.Values["rollout/dropped_zero_std"]
		tooLong = math.Max(tooLong, r.Values["rollout/prompts_too_long"])
	}
	if dropped == 0 || tooLong == 0 {
		t.Fatalf("dropped zero-std groups %v, redrawn long prompts %v: want both > 0", dropped, tooLong)
	}
}

// TestRolloutDtype: with rl.rollout_dtype bfloat16 the in-process engine decodes with the policy's weights
// rounded to bfloat16 while the learner keeps float32 (its weights untouched), so the learner's recomputed
// log-probabilities differ from logp_old by far more than float rounding; at float32 they match to it.
func TestRolloutDtype(t *testing.T) {
	mean := map[string]float64{}
	for _, dtype := range []string{"float32", "bfloat16"} {
		cfg := rlTinyConfig(t, "rl.beta=0", "rl.temperature=0.8", "rl.rollout_dtype="+dtype)
		p := model.NewParams(cfg.Model)
		p.Init(11)
		orig := p.Clone()
		s, err := newRLStage(&Run{Config: cfg, Dir: t.TempDir(), Log: quietLog()}, cfg.Stages[0], p)
		if err != nil {
			t.Fatal(err)
		}
		defer s.end(false)
		served := s.engine.P
		for i := range p.Data {
			for j, v := range p.Data[i] {
				if v != orig.Data[i][j] {
					t.Fatalf("%s: the learner's weight %s[%d] changed", dtype, p.Specs[i].Name, j)
				}
				want := v
				if dtype == "bfloat16" {
					want = checkpoints.RoundTo(v, checkpoints.BF16)
				}
				if served.Data[i][j] != want {
					t.Fatalf("%s: the rollout engine's %s[%d] = %g, want %g", dtype, p.Specs[i].Name, j, served.Data[i][j], want)
				}
			}
		}
		var trajs []*data.Trajectory
		for _, g := range sampledGroups(t, s) {
			for r := range g.Trajectories {
				trajs = append(trajs, &g.Trajectories[r])
			}
		}
		_, mean[dtype], _, _ = learnerLogp(t, s, trajs, true)
		t.Logf("rl.rollout_dtype %s: mean |logp_learner − logp_old| %.3g over %d trajectories (routes replayed)", dtype, mean[dtype], len(trajs))
	}
	if mean["float32"] > 1e-6 {
		t.Errorf("float32 rollout: mean mismatch %.3g, want float rounding (≤ 1e-6)", mean["float32"])
	}
	if !(mean["bfloat16"] > 100*mean["float32"] && mean["bfloat16"] > 1e-5) {
		t.Errorf("bfloat16 rollout: mean mismatch %.3g, want far above float32's %.3g", mean["bfloat16"], mean["float32"])
	}
}

// Tests of the RL stage on a DeepSeek Sparse Attention policy: rollouts decode sparsely and the learner runs
// the sparse graph; with Keep Selection the recorded top-k (dsa_topk) is replayed and the learner's
// log-probabilities equal the sampler's to float rounding; the attention of the starting policy is read from
// the pipeline or the init_from checkpoint; a whole dsa_sparse → rl run over the embedded NATS bus keeps the
// selections and records the policy's attention in its checkpoint.
package trainer

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sparrow-rl/sparrow/checkpoints"
	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/model"
)

// dsaRLConfig is rlTinyConfig with a dsa_sparse stage before the rl stage (so the policy is sparse) and
// k = 4 keys per query, so that every position past the fourth attends to a strict subset.
func dsaRLConfig(t *testing.T, keep bool, sets ...string) (*configs.Config, configs.Stage) {
	t.Helper()
	cfg := rlTinyConfig(t, append([]string{"model.index_topk=4"}, sets...)...)
	rl := cfg.Stages[0]
	rl.RL.KeepSelection = keep
	sp := rl
	sp.Name, sp.Kind = "dsa_sparse", configs.KindDSASparse
	cfg.Stages = []configs.Stage{sp, rl}
	return cfg, rl
}

// sampledGroups has the stage's in-process workers sample one batch of groups at the current policy version.
func sampledGroups(t *testing.T, s *rlStage) []*data.Group {
	t.Helper()
	if s.transport == nil {
		if err := s.begin(context.Background(), 0); err != nil {
			t.Fatal(err)
		}
	}
	groups, _, err := s.collect(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	return groups
}

// learnerLogp recomputes log π_θ of every loss token of trajs with the learner's graph (replaying the
// recorded experts and selections when forced and the stage keeps them) and returns max and mean
// |logp − logp_old|, and the number of (query, layer) selections of the learner's own top-k that differ
// from the recorded ones.
func learnerLogp(t *testing.T, s *rlStage, trajs []*data.Trajectory, forced bool) (maxD, meanD float64, flips, rows int) {
	t.Helper()
	b := s.batch
	if err := b.lay(trajs, make([]float64, len(trajs)), s.layout); err != nil {
		t.Fatal(err)
	}
	replayed := *b
	if !forced {
		replayed.Experts, replayed.Selected = nil, nil
	}
	rec := &logpRecorder{batch: b, dlogp: make([]float64, b.Rows*b.T)}
	replayed.replay(s.graph, s.rc.Temperature, s.layout.moeLayers)
	s.graph.Policy.Loss = rec.loss
	if _, err := s.graph.Run(b.Input); err != nil {
		t.Fatal(err)
	}
	var sum float64
	for k, lp := range rec.logp {
		d := math.Abs(lp - b.LogpOld[k])
		maxD, sum = math.Max(maxD, d), sum+d
	}
	meanD = sum / float64(len(rec.logp))
	K, T := s.layout.selectionK, b.T
	for r, tr := range trajs {
		if tr.DSALayers == 0 {
			continue
		}
		L := int(b.Input.Lengths[r])
		for l, ly := range s.graph.DSA.Layers {
			for p := 0; p < L; p++ {
				rows++
				got := ly.Sel[(r*T+p)*K : (r*T+p+1)*K]
				want := tr.DSATopK[(p*tr.DSALayers+l)*K : (p*tr.DSALayers+l+1)*K]
				if !slices.Equal(got, want) {
					flips++
				}
			}
		}
	}
	return maxD, meanD, flips, rows
}

// TestRLDSAKeepSelectionParity: on a sparse-attention MoE policy at equal policy version, the learner's
// log-probabilities replaying the recorded experts, kept sets and DSA selections equal the sampler's to float
// rounding; the learner's own top-k is measured against the recorded one, and where it picks the same keys
// the unforced pass agrees to rounding too. It holds for groups decoded one completion at a time
// (rl.decode_batch 1) and with the two groups' eight completions decoded together (rl.decode_batch 8).
func TestRLDSAKeepSelectionParity(t *testing.T) {
	for _, batch := range []string{"1", "8"} {
		t.Run("decode_batch="+batch, func(t *testing.T) { testRLDSAKeepSelectionParity(t, "rl.decode_batch="+batch) })
	}
}

func testRLDSAKeepSelectionParity(t *testing.T, batch string) {
	cfg, st := dsaRLConfig(t, true, "rl.beta=0", "rl.temperature=0.8", "rl.top_p=0.9", "rl.top_k=50", "rl.group_size=4", "rl.prompts_per_step=2", batch)
	p := model.NewParams(cfg.Model)
	p.Init(11)
	s, err := newRLStage(&Run{Config: cfg, Dir: t.TempDir(), Log: quietLog()}, st, p)
	if err != nil {
		t.Fatal(err)
	}
	defer s.end(false)
	if !s.sparse || s.graph.DSA == nil || s.layout.selectionK != 4 {
		t.Fatalf("stage after dsa_sparse: sparse %v, graph DSA %v, k %d; want a sparse graph with k 4", s.sparse, s.graph.DSA != nil, s.layout.selectionK)
	}
	groups := sampledGroups(t, s)
	var trajs []*data.Trajectory
	for _, g := range groups {
		for i := range g.Trajectories {
			tr := &g.Trajectories[i]
			positions := len(tr.PromptTokens) + len(tr.CompletionTokens)
			if tr.DSALayers != cfg.Model.NumHiddenLayers || tr.DSAK != 4 || len(tr.DSATopK) != positions*tr.DSALayers*4 {
				t.Fatalf("trajectory %s: dsa_topk %d entries of %d layers × %d, want %d positions × %d × 4", tr.GroupID, len(tr.DSATopK), tr.DSALayers, tr.DSAK, positions, cfg.Model.NumHiddenLayers)
			}
			trajs = append(trajs, tr)
		}
	}
	// the encoded groups (what the NATS bus carries) give the same trajectories back
	for _, g := range groups {
		b, err := data.EncodeGroup(g, cfg.Model.VocabSize)
		if err != nil {
			t.Fatal(err)
		}
		back, err := data.DecodeGroup(b, cfg.Model.VocabSize)
		if err != nil {
			t.Fatal(err)
		}
		for i := range g.Trajectories {
			if !slices.Equal(back.Trajectories[i].DSATopK, g.Trajectories[i].DSATopK) {
				t.Fatalf("group %s row %d: dsa_topk changed through the codec", g.GroupID, i)
			}
		}
	}
	fMax, fMean, _, _ := learnerLogp(t, s, trajs, true)
	uMax, uMean, flips, rows := learnerLogp(t, s, trajs, false)
	t.Logf("Keep Selection on: max |Δlogp| %.3g, mean %.3g; off: max %.3g, mean %.3g, learner top-k differs from the recorded one in %d of %d (query, layer) rows",
		fMax, fMean, uMax, uMean, flips, rows)
	if fMax > 1e-5 {
		t.Errorf("Keep Selection on: max |logp_learner − logp_old| = %.3g, want float rounding (≤ 1e-5)", fMax)
	}
	if flips == 0 && uMax > 1e-5 {
		t.Errorf("the learner's own top-k equals the recorded one everywhere, yet max |Δlogp| = %.3g without replay", uMax)
	}
	// a group without recorded selections cannot be replayed: a configuration error where it enters
	bare := *trajs[0]
	bare.DSATopK, bare.DSALayers, bare.DSAK = nil, 0, 0
	g := &data.Group{GroupID: bare.GroupID, Trajectories: slices.Repeat([]data.Trajectory{bare}, s.rc.GroupSize)}
	_, err = s.admit(g)
	if err == nil || !strings.Contains(err.Error(), "rl.keep_selection") || !strings.Contains(err.Error(), "dsa_topk") {
		t.Fatalf("a group without dsa_topk: err = %v, want one naming rl.keep_selection and dsa_topk", err)
	}
}

// TestRLPolicyAttention: the rl stage's attention comes from the pipeline, or from the trainer state of its
// init_from checkpoint; rl.keep_selection on a dense policy is refused naming the key.
func TestRLPolicyAttention(t *testing.T) {
	state := func(ts string) string {
		dir := t.TempDir()
		if ts != "" {
			if err := os.WriteFile(filepath.Join(dir, checkpoints.TrainerStateFile), []byte(ts), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	cases := []struct {
		name    string
		state   string // trainer_state.json of the init_from checkpoint; "" = none (a foreign checkpoint)
		want    string
		wantErr string
	}{
		{"dsa_sparse checkpoint", `{"stage":"dsa_sparse","kind":"dsa_sparse"}`, configs.AttentionSparse, ""},
		{"rl checkpoint of a sparse policy", `{"stage":"rl_math","kind":"rl","extra":{"attention":"sparse"}}`, configs.AttentionSparse, ""},
		{"rl checkpoint of a dense policy", `{"stage":"rl_math","kind":"rl","extra":{"attention":"dense"}}`, configs.AttentionDense, ""},
		{"pretrain checkpoint", `{"stage":"pretrain","kind":"pretrain"}`, configs.AttentionDense, ""},
		{"foreign checkpoint", "", configs.AttentionDense, ""},
		{"bad attention", `{"kind":"rl","extra":{"attention":"half"}}`, "", `extra.attention is "half"`},
		{"broken JSON", `{"kind":`, "", "trainer_state.json"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := rlTinyConfig(t)
			cfg.Stages[0].InitFrom = state(c.state)
			att, why, err := RLPolicyAttention(cfg, cfg.Stages[0])
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, c.wantErr)
				}
				return
			}
			if err != nil || att != c.want || !strings.Contains(why, "init_from") {
				t.Fatalf("RLPolicyAttention = %q, %q, %v; want %q and a reason naming init_from", att, why, err, c.want)
			}
		})
	}
	cfg := rlTinyConfig(t)
	st := cfg.Stages[0]
	st.RL.KeepSelection = true
	st.InitFrom = state(`{"stage":"pretrain","kind":"pretrain"}`)
	cfg.Stages[0] = st
	p := model.NewParams(cfg.Model)
	p.Init(1)
	_, err := newRLStage(&Run{Config: cfg, Dir: t.TempDir(), Log: quietLog()}, st, p)
	if err == nil || !strings.Contains(err.Error(), "stages[rl_math].rl.keep_selection") || !strings.Contains(err.Error(), "dense") {
		t.Fatalf("keep_selection on a dense init_from: err = %v, want one naming stages[rl_math].rl.keep_selection", err)
	}
}

// TestRLDSAPipeline: dsa_sparse then GRPO with Keep Selection over the embedded NATS bus (the default
// transport): the selections cross the bus, the learner matches the sampler at equal policy version to
// float rounding, and the rl checkpoint records a sparse policy for the stages that start from it.
func TestRLDSAPipeline(t *testing.T) {
	yml := `name: dsarl
model: {hidden_size: 32, num_hidden_layers: 2, first_k_dense_replace: 1, num_attention_heads: 2, q_lora_rank: 16,
  kv_lora_rank: 16, qk_nope_head_dim: 8, qk_rope_head_dim: 8, v_head_dim: 8, intermediate_size: 64,
  moe_intermediate_size: 16, n_routed_experts: 4, n_group: 2, topk_group: 1, num_experts_per_tok: 2,
  n_shared_experts: 1, index_n_heads: 2, index_head_dim: 16, index_topk: 4}
train: {batch_size: 2, seq_len: 32, log_every: 1, eval_every: 0, eval_batches: 1}
schedule: {warmup_steps: 0}
dsa: {eval_tasks: 2}
rl: {env: math, env_params: {digits: "1"}, group_size: 4, prompts_per_step: 2, max_new_tokens: 16, max_prompt_tokens: 32,
  eval_tasks: 2, eval_every: 0, beta: 0.01, temperature: 0.8, keep_selection: true}
run: {progress: "off", plots: false}
stages:
  - {name: dsa_sparse, kind: dsa_sparse, train: {steps: 2}}
  - {name: rl_math, kind: rl, train: {steps: 2}}
`
	cfg, err := configs.Parse([]byte(yml), "rl_dsa_test.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := Execute(context.Background(), cfg, Options{Dir: dir, Log: quietLog()}); err != nil {
		t.Fatal(err)
	}
	recs, err := ReadMetrics(filepath.Join(dir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	steps := 0
	for _, r := range recs {
		mm, ok := r.Values["rollout/logp_mismatch"]
		if !ok || r.Stage != "rl_math" {
			continue
		}
		steps++
		t.Logf("step %d: rollout/logp_mismatch %.3g, bus/mb_received %.4f", r.Step, mm, r.Values["bus/mb_received"])
		if !(r.Values["bus/mb_received"] > 0) {
			t.Errorf("step %d: no bytes received over the NATS bus (bus/mb_received %v)", r.Step, r.Values["bus/mb_received"])
		}
		if mm > 1e-5 {
			t.Errorf("step %d: rollout/logp_mismatch %.3g with Keep Selection and Keep Routing, want float rounding", r.Step, mm)
		}
	}
	if steps != 2 {
		t.Fatalf("%d rl steps logged, want 2", steps)
	}
	b, err := os.ReadFile(filepath.Join(dir, "checkpoints", "rl_math-2", checkpoints.TrainerStateFile))
	if err != nil {
		t.Fatal(err)
	}
	var ts checkpoints.TrainerState
	if err := json.Unmarshal(b, &ts); err != nil {
		t.Fatal(err)
	}
	if a := string(ts.Extra[attentionExtraKey]); a != `"sparse"` {
		t.Fatalf("rl checkpoint extra.%s = %s, want \"sparse\"", attentionExtraKey, a)
	}
}

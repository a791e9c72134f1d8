// Tests of branching pipelines and the distill stage, on a tiny model so that each takes seconds: a shared
// pre-training on a math+logic mixture, two GRPO specialists branching from it (init_from: stage:pretrain),
// and on-policy distillation of both into a student from the base; resume after a stop in the second
// specialist redoes nothing finished and ends with the weights of an uninterrupted run; a teacher with
// another vocabulary is refused before anything trains.

package trainer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sparrow-rl/sparrow/checkpoints"
	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/rollout"
	"github.com/sparrow-rl/sparrow/rollout/natsbus"
)

// distillModelYAML is the tiny model and quiet run section of the distillation tests' recipes.
const distillModelYAML = `
model: {hidden_size: 32, num_hidden_layers: 2, first_k_dense_replace: 1, num_attention_heads: 2, q_lora_rank: 16,
  kv_lora_rank: 16, qk_nope_head_dim: 8, qk_rope_head_dim: 8, v_head_dim: 8, intermediate_size: 64,
  moe_intermediate_size: 16, n_routed_experts: 4, n_group: 2, topk_group: 1, num_experts_per_tok: 2,
  n_shared_experts: 1, index_n_heads: 2, index_head_dim: 16, index_topk: 16}
run: {progress: "off", plots: false, tensorboard: false}
`

const branchYAML = `
name: branchy
seed: 7
` + distillModelYAML + `data:
  source: synthetic
  generator: mix
  format: chat
  packing: whole
  params: {families: "math:1,logic:1", math.digits: "1", math.flaw: "0.5", logic.sort_len: "3", logic.flaw: "0.5"}
train: {steps: 4, batch_size: 4, seq_len: 128, log_every: 1, eval_every: 0, eval_batches: 1}
schedule: {warmup_steps: 1}
checkpoint: {every: 2, keep_last: 1}
rl:
  env: math
  group_size: 4
  prompts_per_step: 2
  max_new_tokens: 16
  max_prompt_tokens: 64
  eval_tasks: 4
  eval_every: 0
  beta: 0
  length_budget: 4          # a length penalty: rewards differ within a group even for an untrained policy
  length_weight: 0.05
  workers: 2
  bus: {transport: inproc}
stages:
  - {name: pretrain, kind: pretrain}
  - {name: rl_math, kind: rl, init_from: "stage:pretrain", train: {steps: 3}, rl: {env_params: {digits: "1"}}}
  - {name: rl_logic, kind: rl, init_from: "stage:pretrain", train: {steps: 3}, rl: {env: logic, env_params: {sort_len: "3"}}}
  - name: distill
    kind: distill
    init_from: "stage:pretrain"
    train: {steps: 2}
    rl: {env: mix, env_params: {families: "math:1,logic:1", math.digits: "1", logic.sort_len: "3"}}
    distill: {teachers: {math: "stage:rl_math", logic: "stage:rl_logic"}}
`

func branchConfig(t *testing.T, sets ...string) *configs.Config {
	t.Helper()
	cfg, err := configs.Parse([]byte(branchYAML), "branchy.yaml", sets)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// finalWeights reads the final checkpoint of every stage of a run.
func finalWeights(t *testing.T, dir string, cfg *configs.Config) map[string][]float32 {
	t.Helper()
	out := map[string][]float32{}
	for _, st := range cfg.Stages {
		p := loadWeights(t, filepath.Join(dir, "checkpoints", checkpoints.Name(st.Name, st.Train.Steps)))
		var flat []float32
		for _, d := range p.Data {
			flat = append(flat, d...)
		}
		out[st.Name] = flat
	}
	return out
}

// TestBranchingDistillPipeline: the whole branching recipe runs; the branch point survives pruning
// (keep_last 1); each specialist starts from the base, not from the stage before it; the distill stage
// logs the per-family KL and every family's accuracy; the run ends with the accuracy table of every
// stage on both families.
func TestBranchingDistillPipeline(t *testing.T) {
	dir := t.TempDir()
	cfg := branchConfig(t, "run.accuracy_table=3")
	var printed bytes.Buffer
	if err := Execute(context.Background(), cfg, Options{Dir: dir, Log: quietLog(), TableOut: &printed}); err != nil {
		t.Fatal(err)
	}
	var table AccuracyTable
	b, err := os.ReadFile(filepath.Join(dir, "accuracy_table.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &table); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(table.Models, []string{"pretrain", "rl_math", "rl_logic", "distill"}) || !slices.Equal(table.Families, []string{"math", "logic"}) || table.N != 3 {
		t.Fatalf("table %+v", table)
	}
	md, err := os.ReadFile(filepath.Join(dir, "accuracy_table.md"))
	if err != nil || string(md) != strings.TrimPrefix(printed.String(), "\n") || !strings.Contains(string(md), "| rl_logic |") {
		t.Fatalf("accuracy_table.md %q (%v), printed %q", md, err, printed.String())
	}
	w := finalWeights(t, dir, cfg) // fails if any stage's final checkpoint was pruned
	for _, pair := range [][2]string{{"rl_math", "pretrain"}, {"rl_logic", "pretrain"}, {"rl_math", "rl_logic"}, {"distill", "pretrain"}} {
		if slices.Equal(w[pair[0]], w[pair[1]]) {
			t.Errorf("stage %s ends with the weights of %s: it did not train", pair[0], pair[1])
		}
	}
	recs, err := ReadMetrics(filepath.Join(dir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	// rl_logic's step-0 evaluation is the base's accuracy on logic (it starts from pretrain, not rl_math)
	var seen []string
	for _, r := range recs {
		if r.Stage != "distill" {
			continue
		}
		for k := range r.Values {
			if strings.HasPrefix(k, "distill/") || strings.HasPrefix(k, "eval/") {
				seen = append(seen, k)
			}
		}
	}
	for _, k := range []string{"distill/kl", "distill/math/kl", "distill/logic/kl", "distill/math/accuracy", "distill/logic/accuracy", "eval/math/accuracy", "eval/logic/accuracy"} {
		if !slices.Contains(seen, k) {
			t.Errorf("distill stage: metric %s not logged (have %v)", k, seen)
		}
	}
}

// stopAt cancels a run when a metric record of stage at step arrives.
type stopAt struct {
	stage  string
	step   int
	cancel context.CancelFunc
	once   sync.Once
}

func (s *stopAt) ObserveStep(stage string, step int, _ map[string]float64) {
	if stage == s.stage && step >= s.step {
		s.once.Do(s.cancel)
	}
}

// TestBranchingResume: a run stopped during the second specialist, or during the distill stage, and resumed
// continues that stage, redoes neither the base nor the first specialist (their checkpoints are untouched,
// their steps logged once), and ends with the weights of an uninterrupted run, stage by stage.
func TestBranchingResume(t *testing.T) {
	cfg := branchConfig(t)
	whole := t.TempDir()
	if err := Execute(context.Background(), cfg, Options{Dir: whole, Log: quietLog()}); err != nil {
		t.Fatal(err)
	}
	want := finalWeights(t, whole, cfg)
	for _, stop := range []string{"rl_logic", "distill"} {
		t.Run("stop_in_"+stop, func(t *testing.T) {
			dir := t.TempDir()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			err := Execute(ctx, branchConfig(t), Options{Dir: dir, Log: quietLog(), Observer: &stopAt{stage: stop, step: 1, cancel: cancel}})
			if !errors.Is(err, ErrInterrupted) {
				t.Fatalf("stopped run: %v, want ErrInterrupted", err)
			}
			mathCk := filepath.Join(dir, "checkpoints", "rl_math-3", checkpoints.ManifestFile)
			before, err := os.Stat(mathCk)
			if err != nil {
				t.Fatalf("the first specialist's final checkpoint: %v", err)
			}
			if _, err := os.Stat(filepath.Join(dir, "checkpoints", "distill-2")); err == nil {
				t.Fatal("the stop came after the distill stage: nothing was interrupted")
			}
			if err := Execute(context.Background(), branchConfig(t), Options{Dir: dir, Resume: "auto", Log: quietLog()}); err != nil {
				t.Fatalf("resume: %v", err)
			}
			after, err := os.Stat(mathCk)
			if err != nil || !after.ModTime().Equal(before.ModTime()) {
				t.Fatalf("the first specialist's checkpoint was rewritten on resume (%v)", err)
			}
			got := finalWeights(t, dir, cfg)
			for _, st := range cfg.Stages {
				if !slices.Equal(got[st.Name], want[st.Name]) {
					t.Errorf("stage %s: final weights differ from the uninterrupted run", st.Name)
				}
			}
			recs, err := ReadMetrics(filepath.Join(dir, "metrics.jsonl"))
			if err != nil {
				t.Fatal(err)
			}
			logged := map[string]int{}
			for _, r := range recs {
				if _, ok := r.Values["loss"]; ok {
					logged[r.Stage]++
				}
				if _, ok := r.Values["reward/mean"]; ok {
					logged[r.Stage]++
				}
			}
			if logged["pretrain"] != 4 || logged["rl_math"] != 3 || logged["rl_logic"] != 3 || logged["distill"] != 2 {
				t.Fatalf("training records per stage after resume: %v, want pretrain 4, rl_math 3, rl_logic 3, distill 2 (a step redone or lost?)", logged)
			}
		})
	}
}

// TestDistillRefusesForeignTeacher: a teacher checkpoint with another vocabulary is refused, naming the
// family and the mismatch, before the stage trains a step.
func TestDistillRefusesForeignTeacher(t *testing.T) {
	other := t.TempDir()
	ocfg := branchConfig(t, "model.vocab_size=300", "stages.pretrain.train.steps=1")
	ocfg.Stages = ocfg.Stages[:1]
	if err := Execute(context.Background(), ocfg, Options{Dir: other, Log: quietLog()}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := branchConfig(t, "stages.pretrain.train.steps=1", "stages.rl_math.train.steps=1", "stages.rl_logic.train.steps=1",
		"stages.distill.distill.teachers={math: \"stage:rl_math\", logic: \""+filepath.Join(other, "checkpoints", "pretrain-1")+"\"}")
	err := Execute(context.Background(), cfg, Options{Dir: dir, Log: quietLog()})
	if err == nil || !strings.Contains(err.Error(), "distill.teachers.logic") || !strings.Contains(err.Error(), "vocab_size 300, the student 272") {
		t.Fatalf("got %v, want the logic teacher refused for its vocabulary", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "checkpoints", "distill-1")); err == nil {
		t.Fatal("the distill stage trained")
	}
	recs, _ := ReadMetrics(filepath.Join(dir, "metrics.jsonl"))
	for _, r := range recs {
		if r.Stage == "distill" {
			t.Fatalf("the distill stage logged %v", r.Values)
		}
	}
}

// TestDistillOverEmbeddedBus: the distill stage over the embedded NATS bus: teacher log-probabilities
// travel in the trajectory record (Arrow, teacher_logp) and the run ends with the weights of the in-process
// transport.
func TestDistillOverEmbeddedBus(t *testing.T) {
	var got [2][]float32
	for i, transport := range []string{"inproc", "embedded"} {
		dir := t.TempDir()
		cfg := branchConfig(t, "stages.distill.rl.bus.transport="+transport)
		if err := Execute(context.Background(), cfg, Options{Dir: dir, Log: quietLog()}); err != nil {
			t.Fatalf("%s: %v", transport, err)
		}
		got[i] = finalWeights(t, dir, cfg)["distill"]
	}
	if !slices.Equal(got[0], got[1]) {
		t.Fatal("the distilled student differs between the in-process transport and the embedded bus")
	}
}

// TestDistillSFT: the sft method. With untrained teachers no sampled completion verifies, and the stage
// refuses to train on nothing, saying so; with the distillation file in place (here the families' own worked
// solutions, as verified teachers would write them) the student trains on it as chat SFT.
func TestDistillSFT(t *testing.T) {
	sets := []string{"stages.distill.distill.method=sft", "stages.distill.distill.sft_prompts=4", "stages.distill.distill.sft_samples=2"}
	dir := t.TempDir()
	err := Execute(context.Background(), branchConfig(t, sets...), Options{Dir: dir, Log: quietLog()})
	if err == nil || !strings.Contains(err.Error(), "no teacher completion of 4 prompts × 2 samples per family was correct") {
		t.Fatalf("untrained teachers: %v", err)
	}
	// a run whose distillation data exist: the stage trains on them
	dir = t.TempDir()
	cfg := branchConfig(t, sets...)
	fam, err := RLFamily(cfg.Stages[3])
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for i := range 40 {
		task := fam.Sample(labeledRNG(1, fmt.Sprint(i), 1), data.SplitTrain)
		reasoning, answer := fam.Solution(task)
		b, err := json.Marshal(sftExample{Messages: []data.Message{{Role: "user", Content: task.Prompt}, {Role: "assistant", ReasoningContent: reasoning, Content: answer}}})
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, string(b))
	}
	path := filepath.Join(dir, "distill", "distill", "sft.jsonl")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Execute(context.Background(), cfg, Options{Dir: dir, Log: quietLog()}); err != nil {
		t.Fatal(err)
	}
	w := finalWeights(t, dir, cfg)
	if slices.Equal(w["distill"], w["pretrain"]) {
		t.Fatal("the sft student did not train")
	}
	recs, err := ReadMetrics(filepath.Join(dir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	losses := 0
	for _, r := range recs {
		if _, ok := r.Values["loss"]; ok && r.Stage == "distill" {
			losses++
		}
	}
	if losses != 2 {
		t.Fatalf("%d loss records of the sft distill stage, want 2", losses)
	}
}

// TestDistillWorkerProcess: the distill learner over NATS with its workers in another "process"
// (natsbus.RunWorkers, as `trainer rollout` runs them): the learner loads no teacher, the workers hold them
// and attach their log-probabilities, and the student ends with the weights of the in-process run.
func TestDistillWorkerProcess(t *testing.T) {
	whole := t.TempDir()
	ref := branchConfig(t)
	if err := Execute(context.Background(), ref, Options{Dir: whole, Log: quietLog()}); err != nil {
		t.Fatal(err)
	}
	want := finalWeights(t, whole, ref)["distill"]

	e, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{StoreDir: t.TempDir(), MaxPayload: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown()
	ck := func(name string) string { return filepath.Join(whole, "checkpoints", name) }
	cfg := branchConfig(t, "stages.distill.rl.bus.transport=nats", "stages.distill.rl.bus.url="+e.URL(), "stages.distill.rl.bus.local_workers=false",
		"stages.distill.rl.bus.wait_s=60", "stages.distill.rl.bus.ack_wait_s=3", "stages.distill.rl.bus.job_ack_wait_s=2", "stages.distill.rl.bus.heartbeat_s=0.5")
	cfg.Stages = cfg.Stages[3:] // the distill stage alone, from the first run's checkpoints
	st := &cfg.Stages[0]
	st.InitFrom = ck("pretrain-4")
	st.Distill.Teachers = map[string]string{"math": ck("rl_math-3"), "logic": ck("rl_logic-3")}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	scorer, err := LoadTeacherScorer(ctx, *st, cfg.Model, nil, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	fam, err := RLFamily(*st)
	if err != nil {
		t.Fatal(err)
	}
	att, why, err := WorkerAttention(cfg, *st)
	if err != nil {
		t.Fatal(err)
	}
	wctx, stopWorkers := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := natsbus.RunWorkers(wctx, natsbus.WorkerOptions{Conn: natsbus.ConnOptions{URL: e.URL()}, Names: BusNames(cfg, *st),
			RL: st.RL, Attention: att, AttentionWhy: why, Family: fam, Workers: 2, Log: quietLog(), Scorer: scorer})
		done <- err
	}()
	dir := t.TempDir()
	if err := Execute(ctx, cfg, Options{Dir: dir, Log: quietLog()}); err != nil {
		t.Fatal(err)
	}
	stopWorkers()
	<-done
	if got := finalWeights(t, dir, cfg)["distill"]; !slices.Equal(got, want) {
		t.Fatal("the student distilled over NATS with out-of-process teachers differs from the in-process run")
	}
}

// exactYAML: a base, a second pre-training stage branching from it (a teacher that differs from the base),
// and distill stages from the base with the exact KL: one whose teacher is the base itself (student =
// teacher at the first step), one whose teacher differs (kl both, with top_p 0.9 kept sets), and one that
// ignores the kept sets (rl.keep_sampling_mask off: the teacher over the whole vocabulary).
const exactYAML = `
name: exact
seed: 7
` + distillModelYAML + `data:
  source: synthetic
  generator: math
  format: chat
  packing: whole
  params: {digits: "1"}
train: {steps: 3, batch_size: 4, seq_len: 128, log_every: 1, eval_every: 0, eval_batches: 1}
schedule: {warmup_steps: 1}
rl:
  env: math
  env_params: {digits: "1"}
  group_size: 2
  prompts_per_step: 2
  max_new_tokens: 12
  max_prompt_tokens: 64
  eval_tasks: 2
  eval_every: 0
  beta: 0
  workers: 1
  bus: {transport: inproc}
stages:
  - {name: base, kind: pretrain}
  - {name: other, kind: pretrain, init_from: "stage:base", optimizer: {lr: 3e-3}}
  - {name: same, kind: distill, init_from: "stage:base", train: {steps: 1}, distill: {kl: exact, teachers: {math: "stage:base"}}}
  - {name: both, kind: distill, init_from: "stage:base", train: {steps: 2}, rl: {top_p: 0.9}, distill: {kl: both, teachers: {math: "stage:other"}}}
  - {name: whole, kind: distill, init_from: "stage:base", train: {steps: 1}, rl: {top_p: 0.9, keep_sampling_mask: false}, distill: {kl: exact, teachers: {math: "stage:other"}}}
`

// TestDistillExactKL runs the exact-KL distill stages end to end in process: the learner's exact KL is 0 (to
// float32 rounding) when the teacher is the student's own checkpoint and positive when it is not; with kl
// both the sampled-token metric is logged beside it; with rl.keep_sampling_mask off the workers score the
// whole vocabulary and the learner's sets match; every stage trains (its weights move).
func TestDistillExactKL(t *testing.T) {
	cfg, err := configs.Parse([]byte(exactYAML), "exact.yaml", nil)
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
	first := map[string]map[string]float64{} // stage → its first step's record with the distillation metrics
	for _, r := range recs {
		if _, seen := first[r.Stage]; !seen {
			if _, ok := r.Values["distill/kl"]; ok {
				first[r.Stage] = r.Values
			}
		}
	}
	for _, st := range []string{"same", "both", "whole"} {
		m, ok := first[st]
		if !ok {
			t.Fatalf("stage %s logged no distillation metrics", st)
		}
		kl, ok := m["distill/math/kl_exact"]
		if !ok || kl != m["distill/kl_exact"] {
			t.Fatalf("stage %s: distill/math/kl_exact %v (logged %v), distill/kl_exact %v", st, kl, ok, m["distill/kl_exact"])
		}
		t.Logf("stage %s first step: distill/math/kl_exact %.6g, distill/math/kl (sampled) %.6g, actor/loss %.6g", st, kl, m["distill/math/kl"], m["actor/loss"])
		switch st {
		case "same":
			if math.Abs(kl) > 1e-6 {
				t.Errorf("student = teacher: exact KL %g at the first step, want 0", kl)
			}
		default:
			if !(kl > 1e-4) || math.IsInf(kl, 0) {
				t.Errorf("stage %s: exact KL %g, want > 0 (the teacher differs)", st, kl)
			}
		}
		if _, ok := m["distill/math/kl"]; !ok {
			t.Errorf("stage %s: the sampled-token distill/math/kl is not logged", st)
		}
	}
	flat := func(name string, steps int) []float32 {
		var out []float32
		for _, d := range loadWeights(t, filepath.Join(dir, "checkpoints", checkpoints.Name(name, steps))).Data {
			out = append(out, d...)
		}
		return out
	}
	base := flat("base", 3)
	for st, steps := range map[string]int{"both": 2, "whole": 1} {
		if slices.Equal(flat(st, steps), base) {
			t.Errorf("stage %s ends with the base's weights: it did not train", st)
		}
	}
}

// TestTeacherKeptScoring: the workers attach the teacher over the kept sets only for the exact KL, over the
// recorded sets when the learner replays them and over the whole vocabulary when it does not; a learner with
// the exact KL refuses a group scored without them, naming the group and the key.
func TestTeacherKeptScoring(t *testing.T) {
	cases := []struct {
		method, kl string
		keepMask   bool
		want       rollout.KeptScoring
	}{
		{configs.DistillOnPolicy, configs.DistillKLSampled, true, rollout.KeptNone},
		{configs.DistillOnPolicy, configs.DistillKLExact, true, rollout.KeptRecorded},
		{configs.DistillOnPolicy, configs.DistillKLBoth, true, rollout.KeptRecorded},
		{configs.DistillOnPolicy, configs.DistillKLExact, false, rollout.KeptWholeVocab},
		{configs.DistillSFT, configs.DistillKLSampled, true, rollout.KeptNone},
	}
	for _, c := range cases {
		var st configs.Stage
		st.Distill.Method, st.Distill.KL, st.RL.KeepSamplingMask = c.method, c.kl, c.keepMask
		if got := TeacherKeptScoring(st); got != c.want {
			t.Errorf("method %s, kl %s, keep_sampling_mask %v: scoring %d, want %d", c.method, c.kl, c.keepMask, got, c.want)
		}
	}
	g := &data.Group{GroupID: "distill-000001-000", Trajectories: []data.Trajectory{{GroupID: "distill-000001-000", Env: "math",
		PromptTokens: []int32{1}, CompletionTokens: []int32{5, 6}, LossMask: []uint8{1, 1}, LogpOld: []float32{-1, -1}, TeacherLogp: []float32{-2, -2}}}}
	if err := (&distillState{sampled: true}).check(g); err != nil {
		t.Fatalf("sampled KL: %v", err)
	}
	err := (&distillState{exact: true}).check(g)
	if err == nil || !strings.Contains(err.Error(), "distill-000001-000") || !strings.Contains(err.Error(), "distill.kl exact/both") {
		t.Fatalf("exact KL without teacher_kept_logp: err %v", err)
	}
}

// rl.go: the GRPO learner (stage kind rl), DeepSeek-V3.2 style (dsv32-spec.md §3.2): the stage, its
// lifetime and one step; the step's parts live in rl_collect.go, rl_batch.go and rl_update.go, the
// transport in rl_bus.go. One step reads top to bottom (rlStage.step):
//
//  1. collect: draw prompts_per_step training tasks (deterministically from the seed and the step),
//     dispatch them as jobs, and collect their groups from the transport; each group is checked where it
//     enters (admit) and a bad, failed or stale one is dropped and counted; with dynamic sampling, groups
//     whose rewards are all equal are replaced by new prompts. The groups are ordered by id, so a seeded run
//     does not depend on worker timing.
//  2. advantages: R_i − mean(R) per group (grpo.Config.Advantages).
//  3. per mini-batch: lay the trajectories out for the graph (RLBatch: tokens, recorded experts, kept sets,
//     DSA selections, loss positions, advantages); referenceLogp runs the frozen reference (β > 0);
//     policyPass runs the training graph with the sampler's experts, kept sets and temperature replayed
//     (Keep Routing, Keep Sampling Mask, Keep Selection): its policy head hands log π_θ to grpo.Loss
//     (clipped ratio to π_old, unbiased KL, off-policy sequence masking, aggregation) and chains the returned
//     ∂L/∂logp into the network in the same pass; applyGradients clips, steps AdamW and balances the MoE
//     biases.
//  4. advancePolicy: the policy version advances and the rollout engines get the new weights; the step's
//     groups go to groups.jsonl and, with rl.log_samples, the first of them readable to rollouts.jsonl
//     (rollouts.go).
//
// runLoop (stage.go) logs the verl-style metrics, evaluates greedy accuracy on held-out tasks, checkpoints,
// and then saved acks the groups the checkpoint holds (rl_bus.go).
//
// A policy trained with DeepSeek Sparse Attention (a dsa_sparse stage before this one, or init_from a sparse
// checkpoint; configs.PolicyAttention) stays sparse: workers decode with the sparse engine and the learner and
// the reference pass run the sparse training graph, so rollout and training attend alike. The indexers stay
// frozen (they are not trained here). With rl.keep_selection the workers record every position's selected
// keys per layer (dsa_topk) and both passes replay them (Keep Selection, the DSA analogue of Keep Routing).

package trainer

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"maps"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/sparrow-rl/sparrow/checkpoints"
	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/envs"
	"github.com/sparrow-rl/sparrow/grpo"
	"github.com/sparrow-rl/sparrow/model"
	"github.com/sparrow-rl/sparrow/rollout"
)

// rlStage is the GRPO learner of one rl stage and, unless its workers run elsewhere, its rollout workers.
type rlStage struct {
	run    *Run
	stage  configs.Stage
	rc     configs.RL
	params *model.Params // the policy being trained
	family envs.Family
	tok    *data.Tokenizer
	loss   grpo.Config
	sparse bool // the policy runs DeepSeek Sparse Attention (rollout and learner)
	layout rlLayout
	// distill is set when the stage is an on-policy distill stage (distill.go): teacher-scored groups,
	// per-token reverse-KL advantages.
	distill *distillState

	// the learner
	graph, refGraph *model.Graph[float32] // policy; frozen reference (nil when β = 0)
	ref             *model.Params
	opt             *AdamW
	groups          []ParamGroup
	gradOf          []int
	batch           *RLBatch
	version         int64 // policy version of params: the number of updates applied

	// the rollout side in this process
	engine        *model.Engine // the in-process workers' engine
	rolloutParams *model.Params // rl.rollout_dtype other than float32: the weights rounded for the engine
	rolloutDType  checkpoints.DType
	gate          *rollout.Gate // the in-process workers' weights (the learner swaps versions in)
	transport     rollout.LearnerTransport
	workerErrs    chan error // sampling errors of in-process workers: the learner stops with them
	stopWorkers   func()     // cancels the in-process workers and waits for them
	closeTools    func()     // closes the connections of remote tools (rl.tools_nats, rl.tools_mcp)
	bus           busState   // the NATS side (rl_bus.go)

	// the record of groups
	drops       map[string]float64 // groups dropped so far, by reason
	stepDrops   map[string]string  // the step's dropped groups and why
	tooLong     int                // tasks redrawn because their prompt exceeded rl.max_prompt_tokens
	uncommitted []string           // groups handled since the last checkpoint (acked once one holds them)
	ledger      *groupLedger
	rollouts    *rolloutLog          // rl.log_samples > 0: rollouts.jsonl (rollouts.go); nil = off
	tasks       map[string]envs.Task // with rollouts: the step's dispatched tasks by group id
}

// familyOptions are the family options of st's rl section. A member of a toolmix mixture evaluated or sampled
// alone (eval --env calc on a toolmix stage) takes its own params out of the mixture's (envs.MemberParams).
func familyOptions(st configs.Stage) envs.Options {
	rc := st.RL
	return envs.Options{HeldOut: st.Data.HeldOut, Params: envs.MemberParams(rc.EnvParams, rc.Env),
		Reward: envs.RewardOptions{Correct: 1, Format: rc.FormatReward, LengthPenalty: rc.LengthWeight, LengthBudget: rc.LengthBudget}}
}

// grpoConfig is the GRPO objective of the rl section rc.
func grpoConfig(rc configs.RL) grpo.Config {
	lc := grpo.Config{EpsLow: rc.EpsLow, EpsHigh: rc.EpsHigh, DualClipC: rc.DualClip, Beta: rc.Beta, KL: grpo.KLKind(rc.KL),
		Delta: rc.Delta, Agg: grpo.AggMode(rc.Agg), MaxLen: rc.MaxNewTokens, StdNormalize: rc.StdNormalize, StdEps: 1e-6}
	if rc.Beta == 0 {
		lc.KL = grpo.KLNone // no reference model is kept: the KL is neither trained nor measured
	}
	return lc
}

func newRLStage(r *Run, st configs.Stage, params *model.Params) (*rlStage, error) {
	rc := st.RL
	fam, err := envs.New(rc.Env, familyOptions(st))
	if err != nil {
		return nil, fmt.Errorf("stages[%s].rl.env: %w", st.Name, err)
	}
	fam, closeTools, err := RemoteTools(context.Background(), st, fam, r.Log)
	if err != nil {
		return nil, err
	}
	tok, err := data.NewTokenizer(params.Config.VocabSize)
	if err != nil {
		return nil, err
	}
	lc := grpoConfig(rc)
	if err := lc.Validate(); err != nil {
		return nil, fmt.Errorf("stages[%s].rl: %w", st.Name, err)
	}
	s := &rlStage{run: r, stage: st, rc: rc, params: params, family: fam, tok: tok, loss: lc, drops: map[string]float64{}, closeTools: closeTools}
	rows, T := rc.PromptsPerStep/rc.MiniBatches*rc.GroupSize, rc.MaxPromptTokens+rc.MaxNewTokens
	if T > params.Config.MaxPositionEmbeddings {
		return nil, fmt.Errorf("stages[%s].rl: max_prompt_tokens + max_new_tokens = %d exceeds model.max_position_embeddings %d", st.Name, T, params.Config.MaxPositionEmbeddings)
	}
	attention, why, err := RLPolicyAttention(r.Config, st)
	if err != nil {
		return nil, err
	}
	s.sparse = attention == configs.AttentionSparse
	if rc.KeepSelection && !s.sparse {
		return nil, fmt.Errorf("stages[%s].rl.keep_selection: true needs a DeepSeek Sparse Attention policy, but this stage's policy is dense: %s", st.Name, why)
	}
	if s.rolloutDType, err = checkpoints.RolloutDType(rc.RolloutDtype); err != nil {
		return nil, fmt.Errorf("stages[%s]: %w", st.Name, err)
	}
	if err := s.buildLearner(rows, T, why); err != nil {
		return nil, fmt.Errorf("stage %s: %w", st.Name, err)
	}
	served := params
	if s.rolloutDType != checkpoints.F32 {
		s.rolloutParams = params.Clone()
		served = s.rolloutParams
		if err := s.syncRollout(); err != nil {
			return nil, err
		}
	}
	s.engine = model.NewEngine(served)
	return s, nil
}

// buildLearner builds the training graphs (policy, and the frozen reference when β > 0), the optimizer and
// the batch layout.
func (s *rlStage) buildLearner(rows, T int, why string) error {
	c, rc := s.params.Config, s.rc
	opts := model.GraphOptions{B: rows, T: T, Head: "policy"}
	if s.sparse {
		opts.DSA = &model.DSAOptions{Sparse: true}
		s.run.Log.Info("sparse-attention policy: rollout and learner use DeepSeek Sparse Attention", "stage", s.stage.Name, "why", why,
			"index_topk", c.IndexTopk, "keep_selection", rc.KeepSelection)
	}
	var err error
	if s.graph, err = model.NewGraph[float32](c, s.params.Data, opts); err != nil {
		return err
	}
	if rc.Beta > 0 {
		s.ref = s.params.Clone()
		if s.refGraph, err = model.NewGraph[float32](c, s.ref.Data, opts); err != nil {
			return fmt.Errorf("reference graph: %w", err)
		}
	}
	lay := rlLayout{maxPrompt: rc.MaxPromptTokens, topK: c.NumExpertsPerTok, keepRouting: rc.KeepRouting,
		keepSampling: rc.KeepSamplingMask, keepSelection: rc.KeepSelection}
	if s.sparse { // the indexers are frozen here: their loss is neither trained nor added to actor/loss
		lay.selectionLayers, lay.selectionK = c.NumHiddenLayers, s.graph.DSA.TopK
		for _, g := range []*model.Graph[float32]{s.graph, s.refGraph} {
			if g != nil {
				g.DSA.LossScale = 0
			}
		}
	}
	for l := range c.NumHiddenLayers {
		if c.IsMoE(l) {
			lay.moeLayers = append(lay.moeLayers, l)
		}
	}
	s.layout = lay
	s.batch = newRLBatch(rows, T, c, lay)
	s.groups, s.gradOf = trainedGroups(s.params, s.graph)
	o := s.stage.Optimizer
	s.opt = NewAdamW(s.groups, o.Beta1, o.Beta2, o.Eps, o.WeightDecay)
	return nil
}

// attentionExtraKey is the rl stage's entry in trainer_state.json's extra map naming its policy's attention
// ("dense" or "sparse"), so that a stage started from the checkpoint keeps it.
const attentionExtraKey = "attention"

func (s *rlStage) plan() plan {
	p := plan{steps: s.stage.Train.Steps, logEvery: 1, evalEvery: s.rc.EvalEvery, evalFirst: true,
		headline: []string{"reward/mean", "reward/accuracy", "response_length/mean", "actor/kl", "actor/pg_clipfrac", "timing_s/rollout", "timing_s/train"},
		progress: "reward/mean", rate: "rollout/tokens_per_s"}
	if s.distill != nil {
		p.headline = []string{"distill/kl", "reward/accuracy", "response_length/mean", "actor/pg_clipfrac", "timing_s/rollout", "timing_s/train"}
		p.progress = "distill/kl"
		if s.distill.exact {
			p.headline = slices.Insert(p.headline, 1, "distill/kl_exact")
		}
	}
	return p
}

// begin connects the transport (rl_bus.go) and starts the in-process workers, from the policy version
// restore set.
func (s *rlStage) begin(ctx context.Context, step int) error {
	if err := s.syncRollout(); err != nil { // the weights may have been loaded (resume) since newRLStage
		return err
	}
	s.ledger = openLedger(s.run.Dir)
	if s.rc.LogSamples > 0 && s.rollouts == nil {
		var err error
		if s.rollouts, err = openRolloutLog(s.run.Dir); err != nil {
			return err
		}
	}
	s.gate = rollout.NewGate(s.version, int64(s.rc.MaxStaleness), secs(s.rc.Bus.WaitS), s.run.Log)
	local, err := s.openTransport(ctx, step)
	if err != nil {
		return err
	}
	if local != nil {
		s.startWorkers(ctx, local)
	}
	return nil
}

// startWorkers runs rl.workers rollout workers in this process, on t, over the engine behind the gate.
func (s *rlStage) startWorkers(ctx context.Context, t rollout.WorkerTransport) {
	wctx, cancel := context.WithCancel(ctx)
	s.workerErrs = make(chan error, 64)
	done := make(chan struct{})
	sc := rollout.RLSamplerConfig(s.rc, s.sparse, s.layout.selectionK)
	n := s.rc.Workers
	for w := range n {
		worker := &rollout.Worker{Sampler: rollout.NewGroupSampler(s.engine, s.tok, s.family, fmt.Sprintf("w%d", w), sc),
			Weights: s.gate, Errors: s.workerErrs, Log: s.run.Log}
		if s.distill != nil && s.distill.scorer != nil {
			worker.Scorer = s.distill.scorer
		}
		go func() { _ = worker.Run(wctx, t); done <- struct{}{} }()
	}
	s.stopWorkers = func() {
		cancel()
		s.transport.Close() // wakes workers blocked on the transport
		for range n {
			<-done
		}
	}
}

// end stops the workers and closes the transport and the graphs.
func (s *rlStage) end(completed bool) {
	if s.stopWorkers != nil {
		s.stopWorkers()
		s.stopWorkers = nil
	}
	s.closeTransport(completed)
	if s.closeTools != nil {
		s.closeTools()
		s.closeTools = nil
	}
	if err := s.rollouts.close(); err != nil {
		s.run.Log.Warn("closing the rollout log", "stage", s.stage.Name, "err", err)
	}
	s.rollouts = nil
	s.graph.Close()
	if s.refGraph != nil {
		s.refGraph.Close()
	}
}

func (s *rlStage) checkpoint(int) (*checkpoints.Checkpoint, error) {
	att := configs.AttentionDense
	if s.sparse {
		att = configs.AttentionSparse
	}
	a, _ := json.Marshal(att)
	return &checkpoints.Checkpoint{Model: s.params.Config, Tensors: checkpoints.FromParams(s.params), Optimizer: optimizerTensors("", s.opt),
		State: checkpoints.TrainerState{PolicyVersion: s.version, StreamSeq: s.streamSeq(),
			Extra: map[string]json.RawMessage{attentionExtraKey: a}}}, nil
}

// saved acks the groups of the updates the checkpoint on disk now holds.
func (s *rlStage) saved(ctx context.Context) error {
	if err := s.transport.Commit(ctx, s.uncommitted); err != nil {
		return fmt.Errorf("acking the checkpointed groups: %w", err)
	}
	s.uncommitted = s.uncommitted[:0]
	return nil
}

func (s *rlStage) restore(ck *checkpoints.Checkpoint) error {
	if s.ref != nil {
		return fmt.Errorf("stage %s uses a reference model (rl.beta > 0), whose weights are the stage's initial ones; resume it from its init_from checkpoint instead", s.stage.Name)
	}
	if err := s.opt.LoadState(namedTensors(ck.Optimizer)); err != nil {
		return fmt.Errorf("optimizer state: %w", err)
	}
	s.version = ck.State.PolicyVersion
	return nil
}

// syncRollout gives the in-process rollout engine the current policy rounded to rl.rollout_dtype (nothing to
// do at float32: the engine reads the learner's weights).
func (s *rlStage) syncRollout() error {
	if s.rolloutParams == nil {
		return nil
	}
	return checkpoints.CopyRounded(s.rolloutParams, s.params, s.rolloutDType)
}

// seedOf derives a 64-bit seed from the run seed and a label.
func seedOf(seed int64, label string) uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%d/%s", seed, label)
	return h.Sum64()
}

// labeledRNG is the generator of stream stream of the run seed's label: the same draws whoever asks.
func labeledRNG(seed int64, label string, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seedOf(seed, label), stream))
}

// step is one GRPO step: collect the groups, compute their advantages, update on each mini-batch, advance
// the policy. ctx stops it only while it collects (errStepStopped: nothing changed, the groups it holds are
// not acked and come back to a resumed learner); from the update on it runs to its end.
func (s *rlStage) step(ctx context.Context, step int) (stepResult, error) {
	t0 := time.Now()
	mark := len(s.uncommitted)
	groups, zeroStd, err := s.collectHeld(ctx, step)
	if err != nil {
		s.uncommitted = s.uncommitted[:mark] // not applied: never acked
		if lerr := s.leaseErr(); lerr != nil {
			return stepResult{}, lerr
		}
		if ctx.Err() != nil {
			return stepResult{}, fmt.Errorf("%w: %w", errStepStopped, err)
		}
		return stepResult{}, err
	}
	ctx = context.WithoutCancel(ctx) // the step's own work must not fail because a stop signal came
	tRollout := time.Since(t0)
	t1 := time.Now()
	batch, err := s.advantages(groups)
	if err != nil {
		return stepResult{}, err
	}
	m := batch.metrics(s.version)
	if s.distill != nil {
		dm, err := distillMetrics(batch.trajs)
		if err != nil {
			return stepResult{}, err
		}
		maps.Copy(m, dm)
	}
	upd, err := s.update(step, batch)
	if err != nil {
		return stepResult{}, err
	}
	upd.addTo(m)
	if err := s.advancePolicy(); err != nil {
		return stepResult{}, err
	}
	m["timing_s/rollout"], m["timing_s/train"] = tRollout.Seconds(), time.Since(t1).Seconds()
	m["rollout/tokens_per_s"] = float64(batch.completionTokens) / tRollout.Seconds()
	m["rollout/groups_per_s"] = float64(len(groups)) / tRollout.Seconds()
	m["policy_version"] = float64(s.version)
	if s.tooLong > 0 {
		m["rollout/prompts_too_long"] = float64(s.tooLong)
	}
	if s.rc.DynamicSampling {
		m["rollout/dropped_zero_std"] = float64(zeroStd)
		m["rollout/groups"] = float64(len(groups))
	}
	for _, reason := range slices.Sorted(maps.Keys(s.drops)) {
		m["rollout/dropped_"+reason] = s.drops[reason]
	}
	m["rollout/dropped_stale"], m["rollout/dropped_failed"] = s.drops[dropStale], s.drops[dropFailed]
	if err := s.ledger.record(s.stage.Name, step+1, s.version, groups, s.stepDrops); err != nil {
		return stepResult{}, err
	}
	if err := s.logGroups(step+1, groups, batch); err != nil {
		return stepResult{}, err
	}
	if err := s.publishWeights(ctx, m); err != nil {
		return stepResult{}, err
	}
	s.busMetrics(step+1, m)
	s.stepDone()
	return stepResult{metrics: m, skipped: upd.skipped}, nil
}

// evaluate returns eval/<env>/accuracy: greedy accuracy on the first rl.eval_tasks held-out tasks (the
// same tasks at every evaluation), decoded by the in-process engine as the workers decode; for a mixture
// of families (rl.env mix), of each member. With rl.log_samples the first tasks' completions go to
// rollouts.jsonl.
func (s *rlStage) evaluate(ctx context.Context, step int) (map[string]float64, error) {
	n := s.rc.EvalTasks
	if n == 0 {
		return nil, nil
	}
	out := map[string]float64{}
	for i, fe := range evalFamilies(s.family, s.rc.Env) {
		tasks, _ := envs.EvalTasks(fe.family, labeledRNG(s.run.Config.Seed, "eval/"+fe.name, 2), data.SplitHeldOut, n)
		res, err := greedyEval(s.engine, s.tok, fe.family, tasks, evalDecoding{maxNewTokens: s.rc.MaxNewTokens, stop: ctx.Done(),
			sparse: s.sparse, sparseTopK: s.layout.selectionK, workers: s.rc.Workers, decodeBatch: s.rc.DecodeBatch,
			// the sampler of a tool environment's episodes validates its parameters even when decoding greedily
			sampling: rollout.SamplingParams{Temperature: s.rc.Temperature, TopP: s.rc.TopP, TopK: s.rc.TopK}})
		if err != nil {
			return nil, err
		}
		if i == 0 {
			if err := s.logEval(step, res.samples); err != nil {
				return nil, err
			}
		}
		out["eval/"+fe.name+"/accuracy"] = res.accuracy()
		for k, v := range res.toolStats() {
			out["eval/"+fe.name+"/"+k] = v
		}
	}
	return out, nil
}

// namedFamily is a family evaluated under a name.
type namedFamily struct {
	name   string
	family envs.Family
}

// evalFamilies are the families an evaluation reports: each member of a mixture, else the family itself
// under the configured name.
func evalFamilies(f envs.Family, name string) []namedFamily {
	if m, ok := f.(*envs.Mix); ok {
		out := make([]namedFamily, len(m.Members))
		for i, mf := range m.Members {
			out[i] = namedFamily{mf.Name(), mf}
		}
		return out
	}
	return []namedFamily{{name, f}}
}

// rl.go: the GRPO learner (stage kind rl), DeepSeek-V3.2 style (dsv32-spec.md §3.2). One step reads top to
// bottom (rlStage.step):
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
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
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

func familyOptions(st configs.Stage) envs.Options {
	rc := st.RL
	return envs.Options{HeldOut: st.Data.HeldOut, Params: rc.EnvParams,
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
	tok, err := data.NewTokenizer(params.Config.VocabSize)
	if err != nil {
		return nil, err
	}
	lc := grpoConfig(rc)
	if err := lc.Validate(); err != nil {
		return nil, fmt.Errorf("stages[%s].rl: %w", st.Name, err)
	}
	s := &rlStage{run: r, stage: st, rc: rc, params: params, family: fam, tok: tok, loss: lc, drops: map[string]float64{}}
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

// RLPolicyAttention says with which attention (configs.AttentionDense or AttentionSparse) the rl stage st's
// policy runs, and why: from the pipeline (configs.PolicyAttention) or, when the weights come from an
// init_from checkpoint, from that checkpoint's trainer state (kind dsa_sparse, or an rl checkpoint that
// records a sparse policy). Rollout workers in other processes need it to decode as the learner trains
// (rollout.GroupSampler.Sparse, and RecordSelection with rl.keep_selection).
func RLPolicyAttention(cfg *configs.Config, st configs.Stage) (string, string, error) {
	i := slices.IndexFunc(cfg.Stages, func(x configs.Stage) bool { return x.Name == st.Name })
	if i < 0 { // a stage built outside its config (tests): only its own init_from can tell
		cfg = &configs.Config{Stages: []configs.Stage{st}}
		i = 0
	}
	att, dir, why := cfg.PolicyAttention(i)
	if dir == "" {
		return att, why, nil
	}
	att, what, err := CheckpointAttention(dir)
	if err != nil {
		return "", "", fmt.Errorf("stages[%s]: reading the attention of the init_from checkpoint: %w", st.Name, err)
	}
	return att, why + " (" + what + ")", nil
}

// CheckpointAttention says with which attention (configs.AttentionDense or AttentionSparse) the policy of the
// checkpoint in dir runs, and what kind of checkpoint told: a dsa_sparse checkpoint is sparse, an rl checkpoint
// records its policy's attention in its trainer state, any other one (and a checkpoint made elsewhere, without
// trainer state) is dense.
func CheckpointAttention(dir string) (attention, what string, err error) {
	path := filepath.Join(dir, checkpoints.TrainerStateFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return configs.AttentionDense, "a checkpoint made elsewhere (no trainer state): dense attention", nil
	}
	if err != nil {
		return "", "", err
	}
	var ts checkpoints.TrainerState
	if err := json.Unmarshal(b, &ts); err != nil {
		return "", "", fmt.Errorf("%s: %w", path, err)
	}
	if ts.Kind == configs.KindDSASparse {
		return configs.AttentionSparse, "a dsa_sparse checkpoint", nil
	}
	if raw, ok := ts.Extra[attentionExtraKey]; ok {
		var a string
		if err := json.Unmarshal(raw, &a); err != nil || (a != configs.AttentionDense && a != configs.AttentionSparse) {
			return "", "", fmt.Errorf("%s: extra.%s is %s, want \"dense\" or \"sparse\"", path, attentionExtraKey, raw)
		}
		return a, fmt.Sprintf("an rl checkpoint of a %s policy", a), nil
	}
	return configs.AttentionDense, fmt.Sprintf("a %s checkpoint", ts.Kind), nil
}

func (s *rlStage) plan() plan {
	return plan{steps: s.stage.Train.Steps, logEvery: 1, evalEvery: s.rc.EvalEvery, evalFirst: true,
		headline: []string{"reward/mean", "reward/accuracy", "response_length/mean", "actor/kl", "actor/pg_clipfrac", "timing_s/rollout", "timing_s/train"},
		progress: "reward/mean", rate: "rollout/tokens_per_s"}
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

// Reasons a collected group is dropped rather than trained on (counted in rollout/dropped_<reason>).
const (
	dropFailed  = "failed"  // the worker could not sample it (or it was over the max payload)
	dropStale   = "stale"   // sampled with weights older than rl.max_staleness allows
	dropInvalid = "invalid" // from a policy version the learner has not made yet
	dropShape   = "shape"   // another group size, or longer than the learner's graph
	dropZeroStd = "zero_std"
)

// collect dispatches the step's prompts and collects their groups, ordered by id. With dynamic sampling,
// groups whose rewards are all equal are dropped (and counted) and replaced by new prompts, at most
// max_refill of them; a batch still short after that is topped up with dropped groups (their advantages are
// zero, so they add no policy gradient) rather than abort the run.
func (s *rlStage) collect(ctx context.Context, step int) (groups []*data.Group, zeroStd int, err error) {
	rc := s.rc
	s.stepDrops = map[string]string{}
	if s.rollouts != nil {
		s.tasks = map[string]envs.Task{}
	}
	next, refills := 0, 0
	var spare []*data.Group
	for len(groups) < rc.PromptsPerStep {
		n := rc.PromptsPerStep - len(groups)
		if next >= rc.PromptsPerStep {
			if n = min(n, rc.MaxRefill-refills); n <= 0 {
				break
			}
			refills += n
		}
		jobs, err := s.jobs(step, next, n)
		if err != nil {
			return nil, 0, err
		}
		if err := s.transport.Dispatch(ctx, step, jobs); err != nil {
			return nil, 0, err
		}
		next += n
		got, err := s.transport.Collect(ctx, n)
		if err != nil {
			return nil, 0, err
		}
		select {
		case e := <-s.workerErrs: // nil channel (no in-process workers): never ready
			return nil, 0, fmt.Errorf("rollout: %w", e)
		default:
		}
		slices.SortFunc(got, byGroupID)
		for _, g := range got {
			ok, err := s.admit(g)
			if err != nil {
				return nil, 0, err
			}
			if !ok {
				continue
			}
			if rc.DynamicSampling && allEqualRewards(g) {
				zeroStd++
				spare = append(spare, g)
				continue
			}
			groups = append(groups, g)
		}
	}
	for len(groups) < rc.PromptsPerStep && len(spare) > 0 {
		groups, spare = append(groups, spare[0]), spare[1:]
		zeroStd--
	}
	for _, g := range spare {
		s.stepDrops[g.GroupID] = dropZeroStd
	}
	if len(groups) == 0 {
		return nil, 0, fmt.Errorf("no usable group (every one failed or was stale); see the rollout log")
	}
	slices.SortFunc(groups, byGroupID)
	return groups, zeroStd, nil
}

func byGroupID(a, b *data.Group) int { return strings.Compare(a.GroupID, b.GroupID) }

func allEqualRewards(g *data.Group) bool {
	for _, t := range g.Trajectories {
		if t.Reward != g.Trajectories[0].Reward {
			return false
		}
	}
	return true
}

// jobs returns n of the step's prompts, numbered from first (refills continue the numbering). A task whose
// prompt is longer than rl.max_prompt_tokens is redrawn (deterministically) and counted.
func (s *rlStage) jobs(step, first, n int) ([]rollout.Job, error) {
	seed := s.run.Config.Seed
	out := make([]rollout.Job, n)
	for i := range out {
		id := rollout.GroupID{Stage: s.stage.Name, Step: step, Index: first + i}.String()
		for attempt := 0; ; attempt++ {
			if attempt == 100 {
				return nil, fmt.Errorf("stages[%s].rl.max_prompt_tokens: %d is too small: 100 tasks in a row had longer prompts", s.stage.Name, s.rc.MaxPromptTokens)
			}
			task := s.family.Sample(labeledRNG(seed, fmt.Sprintf("task/%s/%d", id, attempt), 1), data.SplitTrain)
			prompt, err := rollout.RenderPrompt(s.tok, task)
			if err != nil {
				return nil, fmt.Errorf("task %s: %w", task.ID, err)
			}
			if len(prompt) > s.rc.MaxPromptTokens {
				s.tooLong++
				continue
			}
			out[i] = rollout.Job{GroupID: id, Task: task, Version: s.version, Seed: seedOf(seed, "sample/"+id)}
			if s.tasks != nil {
				s.tasks[id] = task
			}
			break
		}
	}
	return out, nil
}

// admit takes a collected group (its records checked by the transport, data.Group.Validate): it is recorded
// as handled (so that a checkpoint acks it), checked against the stage — its shape against the config, its
// policy version and staleness — and said to be trainable or dropped and counted. A group the stage's replay
// cannot use (experts or selections of another model layout) is a configuration error.
func (s *rlStage) admit(g *data.Group) (bool, error) {
	s.uncommitted = append(s.uncommitted, g.GroupID)
	reason, why, err := s.check(g)
	if err != nil || reason == "" {
		return err == nil, err
	}
	s.drops[reason]++
	s.stepDrops[g.GroupID] = reason
	if reason != dropFailed {
		s.run.Log.Warn("dropped a group", "stage", s.stage.Name, "group", g.GroupID, "reason", reason, "why", why)
	}
	return false, nil
}

// check returns why group g cannot be trained on ("" when it can), or an error when it reveals a
// configuration error.
func (s *rlStage) check(g *data.Group) (reason, why string, err error) {
	if len(g.Trajectories) == 0 {
		return dropFailed, "", nil
	}
	if len(g.Trajectories) != s.rc.GroupSize {
		return dropShape, fmt.Sprintf("%d completions, rl.group_size is %d (a worker started with another config?)", len(g.Trajectories), s.rc.GroupSize), nil
	}
	lag := int64(0)
	for i := range g.Trajectories {
		tr := &g.Trajectories[i]
		if tr.PolicyVersion > s.version {
			return dropInvalid, fmt.Sprintf("trajectory %d: policy version %d is newer than the learner's %d", i, tr.PolicyVersion, s.version), nil
		}
		if lp, lc := len(tr.PromptTokens), len(tr.CompletionTokens); lp > s.rc.MaxPromptTokens || lp+lc-1 > s.batch.T {
			return dropShape, fmt.Sprintf("trajectory %d: prompt of %d tokens and completion of %d exceed the graph length %d (rl.max_prompt_tokens %d)", i, lp, lc, s.batch.T, s.rc.MaxPromptTokens), nil
		}
		if s.layout.keepRouting && len(s.layout.moeLayers) > 0 && (tr.MoELayers != len(s.layout.moeLayers) || tr.TopK != s.layout.topK) {
			return "", "", fmt.Errorf("group %s: rl.keep_routing is on but the trajectory records experts of %d MoE layers × %d per token, the model has %d × %d (was it sampled by another model?)",
				g.GroupID, tr.MoELayers, tr.TopK, len(s.layout.moeLayers), s.layout.topK)
		}
		if s.layout.keepSelection && (tr.DSALayers != s.layout.selectionLayers || tr.DSAK != s.layout.selectionK) {
			return "", "", fmt.Errorf("group %s: rl.keep_selection is on but the trajectory's dsa_topk has %d layers × %d keys, want %d × %d (was it sampled by a worker decoding densely, or with another index_topk?)",
				g.GroupID, tr.DSALayers, tr.DSAK, s.layout.selectionLayers, s.layout.selectionK)
		}
		lag = max(lag, s.version-tr.PolicyVersion)
	}
	if lag > int64(s.rc.MaxStaleness) {
		return dropStale, fmt.Sprintf("sampled %d versions ago, rl.max_staleness is %d", lag, s.rc.MaxStaleness), nil
	}
	return "", "", nil
}

// groupBatch is a step's groups flattened, with their advantages and rollout statistics.
type groupBatch struct {
	trajs            []*data.Trajectory
	adv              []float64 // [trajectories]
	stats            grpo.AdvantageStats
	completionTokens int
	groups           int
}

// advantages computes R − mean(R) per group (grpo.Config.Advantages) over groups sorted by id.
func (s *rlStage) advantages(groups []*data.Group) (*groupBatch, error) {
	b := &groupBatch{groups: len(groups)}
	var rewards []float64
	for _, g := range groups {
		for i := range g.Trajectories {
			tr := &g.Trajectories[i]
			b.trajs = append(b.trajs, tr)
			rewards = append(rewards, float64(tr.Reward))
			b.completionTokens += len(tr.CompletionTokens)
		}
	}
	var err error
	b.adv, b.stats, err = s.loss.Advantages(rewards, s.rc.GroupSize)
	return b, err
}

// metrics are the batch's reward, length and staleness metrics (learner at policy version).
func (b *groupBatch) metrics(version int64) map[string]float64 {
	var respLen, clipped, correct, stale, staleMax float64
	for _, tr := range b.trajs {
		respLen += float64(len(tr.CompletionTokens))
		if tr.FinishReason == "length" {
			clipped++
		}
		correct += float64(tr.RewardParts["correct"])
		lag := float64(version - tr.PolicyVersion)
		stale += lag
		staleMax = math.Max(staleMax, lag)
	}
	n := float64(len(b.trajs))
	return map[string]float64{
		"reward/mean": b.stats.RewardMean, "reward/std": b.stats.RewardStd, "reward/frac_zero_std": b.stats.FracZeroStd,
		"reward/accuracy": correct / n, "response_length/mean": respLen / n, "response_length/clip_ratio": clipped / n,
		"staleness/mean": stale / n, "staleness/max": staleMax,
	}
}

// updateResult sums a step's mini-batch updates.
type updateResult struct {
	grpo        grpo.Metrics // merged over the mini-batches
	mismatch    float64      // rollout/logp_mismatch of the first mini-batch (same policy version as the sampler)
	updates     int          // mini-batches run
	skipped     int          // of those, skipped for a non-finite loss or gradient norm
	loss, gnorm float64      // sums over the mini-batches
	entropy     float64      // sum over the loss tokens
	tokens      int          // loss positions
	lr          float64      // of the last applied update (NaN: none)
}

// addTo adds the update's metrics to m: grpo.Metrics' names, the surrogate and KL terms and the gradient
// norm as means over the mini-batches, entropy per loss token.
func (u updateResult) addTo(m map[string]float64) {
	for k, v := range u.grpo.Map() {
		m[k] = v
	}
	n := float64(max(u.updates, 1))
	m["actor/pg_loss"], m["actor/kl_loss"] = u.grpo.PGLoss/n, u.grpo.KLLoss/n
	m["rollout/logp_mismatch"] = u.mismatch
	m["actor/loss"], m["grad_norm"] = u.loss/n, u.gnorm/n
	m["actor/entropy"] = u.entropy / float64(max(u.tokens, 1))
	if !math.IsNaN(u.lr) {
		m["lr"] = u.lr
	}
}

// update runs the optimizer steps of one batch: whole groups per mini-batch, ceil(groups / mini_batches)
// of them (the last mini-batches may be shorter).
func (s *rlStage) update(step int, b *groupBatch) (updateResult, error) {
	G, mbs := s.rc.GroupSize, s.rc.MiniBatches
	u := updateResult{lr: math.NaN()}
	gpm := (b.groups + mbs - 1) / mbs
	for mb := range mbs {
		lo, hi := min(mb*gpm, b.groups)*G, min((mb+1)*gpm, b.groups)*G
		if lo == hi {
			break
		}
		if err := s.batch.lay(b.trajs[lo:hi], b.adv[lo:hi], s.layout); err != nil {
			return u, err
		}
		ref, err := s.referenceLogp(s.batch)
		if err != nil {
			return u, fmt.Errorf("reference pass: %w", err)
		}
		pass, err := s.policyPass(s.batch, ref)
		if err != nil {
			return u, err
		}
		u.updates++
		u.grpo.Merge(pass.result.Metrics)
		if mb == 0 {
			u.mismatch = pass.mismatch
		}
		u.loss, u.entropy, u.tokens = u.loss+pass.loss, u.entropy+pass.entropy, u.tokens+len(s.batch.LossPos)
		norm, lr, applied := s.applyGradients(step, pass.loss)
		u.gnorm += norm
		if !applied {
			u.skipped++
			continue
		}
		u.lr = lr
	}
	return u, nil
}

// referenceLogp returns ln π_ref at b's loss positions from the frozen reference (nil when β = 0): the
// reference graph replays the sampler's experts, kept sets and selections as the policy's does.
func (s *rlStage) referenceLogp(b *RLBatch) ([]float64, error) {
	if s.refGraph == nil {
		return nil, nil
	}
	rec := &logpRecorder{batch: b, dlogp: make([]float64, b.Rows*b.T)}
	b.replay(s.refGraph, s.rc.Temperature, s.layout.moeLayers)
	s.refGraph.Policy.Loss = rec.loss
	if _, err := s.refGraph.Run(b.Input); err != nil {
		return nil, err
	}
	return rec.logp, nil
}

// logpRecorder is the reference pass's policy loss: it records ln π at the loss positions and returns a zero
// gradient (nothing is trained).
type logpRecorder struct {
	batch *RLBatch
	dlogp []float64
	logp  []float64
}

func (r *logpRecorder) loss(all []float64) (float64, []float64, error) {
	r.logp = r.batch.atLoss(nil, all)
	return 0, r.dlogp, nil
}

// policyOutcome is what one policy pass gives.
type policyOutcome struct {
	loss     float64     // the graph's loss (the GRPO loss; the frozen indexers add nothing)
	result   grpo.Result // grpo.Loss's result
	mismatch float64     // mean |ln π_θ − ln π_old| over the loss tokens
	entropy  float64     // sum of the kept-set entropy over the loss positions
}

// policyPass runs the training graph on b with the sampler's experts, kept sets, selections and temperature
// replayed. Its policy head computes ln π_θ of every sampled token, hands it to grpo.Loss (objective) and
// chains the returned ∂L/∂logp through the network in the same pass, leaving the gradient in the graph.
func (s *rlStage) policyPass(b *RLBatch, logpRef []float64) (policyOutcome, error) {
	norm, err := grpo.NormalizerOf(b.Layout)
	if err != nil {
		return policyOutcome{}, err
	}
	obj := &objective{cfg: s.loss, batch: b, logpRef: logpRef, norm: norm, dlogp: make([]float64, b.Rows*b.T)}
	b.replay(s.graph, s.rc.Temperature, s.layout.moeLayers)
	s.graph.Policy.Loss = obj.loss
	for _, g := range s.groups {
		clear(g.Grad)
	}
	lossV, err := s.graph.Run(b.Input)
	if err != nil {
		return policyOutcome{}, err
	}
	out := policyOutcome{loss: lossV, result: obj.result, mismatch: obj.mismatch()}
	for _, p := range b.LossPos {
		out.entropy += float64(s.graph.Policy.Entropy[p])
	}
	return out, nil
}

// objective is the GRPO loss as the policy head's loss: ln π_θ at the loss positions in, the loss and
// ∂L/∂logp at every position out (grpo.Loss, dsv32-spec.md §3.2 Eq. 5–9).
type objective struct {
	cfg     grpo.Config
	batch   *RLBatch
	logpRef []float64 // nil when β = 0
	norm    grpo.Normalizer
	dlogp   []float64 // [Rows·T]
	logp    []float64 // ln π_θ at the loss positions, after the pass
	result  grpo.Result
}

func (o *objective) loss(all []float64) (float64, []float64, error) {
	b := o.batch
	o.logp = b.atLoss(nil, all)
	var err error
	if o.result, err = grpo.Loss(o.cfg, &grpo.Batch{Layout: b.Layout, Logp: o.logp, LogpOld: b.LogpOld, LogpRef: o.logpRef, Adv: b.Adv}, o.norm); err != nil {
		return 0, nil, err
	}
	clear(o.dlogp)
	for k, p := range b.LossPos {
		o.dlogp[p] = o.result.DLossDLogp[k]
	}
	return o.result.Loss, o.dlogp, nil
}

// mismatch is the mean |ln π_θ − ln π_old| over the trained tokens: at the sampler's policy version, the
// training–inference mismatch.
func (o *objective) mismatch() float64 {
	var d, n float64
	for k, lp := range o.logp {
		if o.batch.Layout.LossMask[k] == 1 {
			d += math.Abs(lp - o.batch.LogpOld[k])
			n++
		}
	}
	return d / math.Max(n, 1)
}

// applyGradients reads the policy pass's gradient and, when it and the pass's loss are finite, clips it,
// steps AdamW at the schedule's rate and moves the MoE balance biases (dsv32-spec.md §5.2). It returns the
// gradient norm, the rate, and whether the update was applied.
func (s *rlStage) applyGradients(step int, loss float64) (norm, lr float64, applied bool) {
	for k, gi := range s.gradOf {
		copy(s.groups[k].Grad, s.graph.Grad(gi))
	}
	norm = GlobalNorm(s.groups)
	if bad(loss) || bad(norm) {
		return norm, 0, false
	}
	if clip := s.stage.Optimizer.GradClip; clip > 0 {
		ClipGrads(s.groups, clip)
	}
	sc := s.stage.Schedule
	lr = LR(sc.Kind, s.stage.Optimizer.LR, step, sc.WarmupSteps, s.stage.Train.Steps, sc.MinLRRatio)
	s.opt.Update(lr)
	for _, l := range s.layout.moeLayers {
		model.UpdateBias(s.params.Get(model.LayerPrefix(l)+"mlp.gate.e_score_correction_bias"), s.graph.Routing[l].Load, s.params.Config.BiasUpdateSpeed)
	}
	return norm, lr, true
}

// advancePolicy makes the updated weights the next policy version for the in-process workers.
func (s *rlStage) advancePolicy() error {
	s.version++
	return s.gate.Swap(s.version, s.syncRollout)
}

// evaluate returns eval/<env>/accuracy: greedy accuracy on the first rl.eval_tasks held-out tasks (the
// same tasks at every evaluation), decoded by the in-process engine as the workers decode. With
// rl.log_samples the first tasks' completions go to rollouts.jsonl.
func (s *rlStage) evaluate(ctx context.Context, step int) (map[string]float64, error) {
	n := s.rc.EvalTasks
	if n == 0 {
		return nil, nil
	}
	tasks, _ := envs.EvalTasks(s.family, labeledRNG(s.run.Config.Seed, "eval/"+s.rc.Env, 2), data.SplitHeldOut, n)
	res, err := greedyEval(s.engine, s.tok, s.family, tasks, evalDecoding{maxNewTokens: s.rc.MaxNewTokens, stop: ctx.Done(),
		sparse: s.sparse, sparseTopK: s.layout.selectionK, workers: s.rc.Workers})
	if err != nil {
		return nil, err
	}
	if err := s.logEval(step, res.samples); err != nil {
		return nil, err
	}
	return map[string]float64{"eval/" + s.rc.Env + "/accuracy": res.accuracy()}, nil
}

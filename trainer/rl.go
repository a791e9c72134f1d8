// rl.go: the GRPO learner (stage kind rl), DeepSeek-V3.2 style (dsv32-spec.md §3.2). Each step:
//
//  1. draw prompts_per_step training tasks (deterministically from the seed and the step) and dispatch them
//     as jobs through the Transport; rollout workers sample G completions per prompt with the current
//     policy version, recording π_old, the kept sets and the experts they chose;
//  2. collect the groups, order them by group id (so a seeded run does not depend on worker timing), and
//     compute advantages R_i − mean(R) per group;
//  3. per mini-batch: recompute log π_θ with the training graph — MoE routes forced to the sampled ones
//     (Keep Routing), softmax renormalised over the kept sets (Keep Sampling Mask) at the sampling
//     temperature — and, when β > 0, log π_ref with a frozen copy of the stage's initial weights; the GRPO
//     loss (package grpo: clipped ratio to π_old, unbiased KL, off-policy sequence masking, aggregation) gives
//     ∂L/∂logp, which the policy head chains into the network; clip, AdamW, MoE bias balancing; the policy
//     version advances;
//  4. log the verl-style metrics, evaluate greedy accuracy on held-out tasks, checkpoint.
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
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"math/rand/v2"

	"github.com/sparrow-rl/sparrow/checkpoints"
	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/envs"
	"github.com/sparrow-rl/sparrow/grpo"
	"github.com/sparrow-rl/sparrow/model"
	"github.com/sparrow-rl/sparrow/rollout"
)

type rlStage struct {
	run    *Run
	stage  configs.Stage
	rc     configs.RL
	params *model.Params
	ref    *model.Params // nil when β = 0
	family envs.Family
	tok    *data.Tokenizer
	loss   grpo.Config

	graph, refGraph *model.Graph[float32]
	opt             *AdamW
	groups          []ParamGroup
	gradOf          []int

	transport rollout.Transport
	samplers  []*rollout.GroupSampler
	// rl.rollout_dtype other than float32: the in-process engine decodes with rolloutParams, the policy's
	// weights rounded to rolloutDType, refreshed at every policy version (syncRollout)
	rolloutParams *model.Params
	rolloutDType  checkpoints.DType
	version       atomic.Int64
	step          int
	skipped       int
	tooLong       int // tasks redrawn because their prompt exceeded rl.max_prompt_tokens
	moeLayers     []int
	bus           busState // the NATS side (rl_bus.go)
	sparse        bool     // the policy runs DeepSeek Sparse Attention (rollout and learner)
	dsaK          int      // keys per query of the sparse attention

	rows, T int // graph shape
	in      model.StepInput
	forced  [][]int32 // per decoder layer [rows·T·K] (nil for dense layers)
	sel     [][]int32 // Keep Selection: per decoder layer [rows·T·dsaK] recorded key positions
	keptOff []int32
	keptIDs []int32
	lossPos []int // flat positions (row·T + t) of the loss tokens of the mini-batch
	layout  grpo.Layout
	logpOld []float64
	logpRef []float64
	adv     []float64
	dlogp   []float64
	lpBuf   []float64
}

func familyOptions(st configs.Stage) envs.Options {
	rc := st.RL
	return envs.Options{HeldOut: st.Data.HeldOut, Params: rc.EnvParams,
		Reward: envs.RewardOptions{Correct: 1, Format: rc.FormatReward, LengthPenalty: rc.LengthWeight, LengthBudget: rc.LengthBudget}}
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
	lc := grpo.Config{EpsLow: rc.EpsLow, EpsHigh: rc.EpsHigh, DualClipC: rc.DualClip, Beta: rc.Beta, KL: grpo.KLKind(rc.KL),
		Delta: rc.Delta, Agg: grpo.AggMode(rc.Agg), MaxLen: rc.MaxNewTokens, StdNormalize: rc.StdNormalize, StdEps: 1e-6}
	if rc.Beta == 0 {
		lc.KL = grpo.KLNone // no reference model is kept: the KL is neither trained nor measured
	}
	if err := lc.Validate(); err != nil {
		return nil, fmt.Errorf("stages[%s].rl: %w", st.Name, err)
	}
	s := &rlStage{run: r, stage: st, rc: rc, params: params, family: fam, tok: tok, loss: lc}
	groupsPerMB := rc.PromptsPerStep / rc.MiniBatches
	s.rows, s.T = groupsPerMB*rc.GroupSize, rc.MaxPromptTokens+rc.MaxNewTokens
	if s.T > params.Config.MaxPositionEmbeddings {
		return nil, fmt.Errorf("stages[%s].rl: max_prompt_tokens + max_new_tokens = %d exceeds model.max_position_embeddings %d", st.Name, s.T, params.Config.MaxPositionEmbeddings)
	}
	attention, why, err := RLPolicyAttention(r.Config, st)
	if err != nil {
		return nil, err
	}
	s.sparse = attention == configs.AttentionSparse
	if rc.KeepSelection && !s.sparse {
		return nil, fmt.Errorf("stages[%s].rl.keep_selection: true needs a DeepSeek Sparse Attention policy, but this stage's policy is dense: %s", st.Name, why)
	}
	opts := model.GraphOptions{B: s.rows, T: s.T, Head: "policy"}
	if s.sparse {
		opts.DSA = &model.DSAOptions{Sparse: true}
		r.Log.Info("sparse-attention policy: rollout and learner use DeepSeek Sparse Attention", "stage", st.Name, "why", why,
			"index_topk", params.Config.IndexTopk, "keep_selection", rc.KeepSelection)
	}
	if s.graph, err = model.NewGraph[float32](params.Config, params.Data, opts); err != nil {
		return nil, fmt.Errorf("stage %s: %w", st.Name, err)
	}
	if rc.Beta > 0 {
		s.ref = params.Clone()
		if s.refGraph, err = model.NewGraph[float32](params.Config, s.ref.Data, opts); err != nil {
			return nil, fmt.Errorf("stage %s: reference graph: %w", st.Name, err)
		}
	}
	if s.sparse { // the indexers are frozen here: their loss is neither trained nor added to actor/loss
		s.dsaK = s.graph.DSA.TopK
		for _, g := range []*model.Graph[float32]{s.graph, s.refGraph} {
			if g != nil {
				g.DSA.LossScale = 0
			}
		}
	}
	s.groups, s.gradOf = trainedGroups(params, s.graph)
	o := st.Optimizer
	s.opt = NewAdamW(s.groups, o.Beta1, o.Beta2, o.Eps, o.WeightDecay)
	c := params.Config
	N, K := s.rows*s.T, c.NumExpertsPerTok
	s.in = model.StepInput{Tokens: make([]int32, N), Targets: make([]int32, N), Weights: make([]float32, N), Lengths: make([]int32, s.rows), Scale: 1}
	s.forced = make([][]int32, c.NumHiddenLayers)
	for l := 0; l < c.NumHiddenLayers; l++ {
		if c.IsMoE(l) {
			s.moeLayers = append(s.moeLayers, l)
			s.forced[l] = make([]int32, N*K)
		}
	}
	if rc.KeepSelection {
		s.sel = make([][]int32, c.NumHiddenLayers)
		for l := range s.sel {
			s.sel[l] = make([]int32, N*s.dsaK)
		}
	}
	s.keptOff = make([]int32, N+1)
	s.dlogp = make([]float64, N)
	// rollout workers: each its own engine and sessions over the shared weights
	s.transport = rollout.NewInProc(rc.PromptsPerStep * 2)
	if s.rolloutDType, err = checkpoints.RolloutDType(rc.RolloutDtype); err != nil {
		return nil, fmt.Errorf("stages[%s]: %w", st.Name, err)
	}
	served := params
	if s.rolloutDType != checkpoints.F32 {
		s.rolloutParams = params.Clone()
		if err := s.syncRollout(); err != nil {
			return nil, err
		}
		served = s.rolloutParams
	}
	eng := model.NewEngine(served)
	for w := 0; w < rc.Workers; w++ {
		s.samplers = append(s.samplers, &rollout.GroupSampler{Engine: eng, Tok: tok, Family: fam,
			Params:    rollout.SamplingParams{Temperature: rc.Temperature, TopP: rc.TopP, TopK: rc.TopK},
			GroupSize: rc.GroupSize, MaxNewTokens: rc.MaxNewTokens, WorkerID: fmt.Sprintf("w%d", w),
			Sparse: s.sparse, SparseTopK: s.dsaK, RecordSelection: rc.KeepSelection})
	}
	return s, nil
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

func (s *rlStage) close() {
	s.transport.Close()
	s.graph.Close()
	if s.refGraph != nil {
		s.refGraph.Close()
	}
}

// rlCursor is the RL stage's part of trainer_state.json.
type rlCursor struct {
	Step    int   `json:"step"`
	Version int64 `json:"policy_version"`
}

func (s *rlStage) save() (string, error) {
	cur, _ := json.Marshal(rlCursor{Step: s.step, Version: s.version.Load()})
	ck := &checkpoints.Checkpoint{Model: s.params.Config, Tensors: checkpoints.FromParams(s.params), Optimizer: optimizerTensors("", s.opt),
		State: checkpoints.TrainerState{Stage: s.stage.Name, Kind: s.stage.Kind, Step: s.step, StageSteps: s.step,
			PolicyVersion: s.version.Load(), SkippedSteps: s.skipped, DataCursor: cur, ConfigHash: s.run.Config.Hash()}}
	s.busSaveState(&ck.State)
	att := configs.AttentionDense
	if s.sparse {
		att = configs.AttentionSparse
	}
	ck.State.Extra[attentionExtraKey], _ = json.Marshal(att)
	dir, err := s.run.saveCheckpoint(ck)
	if err != nil {
		return dir, err
	}
	return dir, s.busCommit() // groups are acked only once a checkpoint holds their update
}

// syncRollout gives the in-process rollout engine the current policy rounded to rl.rollout_dtype (nothing to
// do at float32: the engine reads the learner's weights).
func (s *rlStage) syncRollout() error {
	if s.rolloutParams == nil {
		return nil
	}
	return checkpoints.CopyRounded(s.rolloutParams, s.params, s.rolloutDType)
}

func (s *rlStage) restore(ck *checkpoints.Checkpoint) error {
	if err := s.opt.LoadState(namedTensors(ck.Optimizer)); err != nil {
		return fmt.Errorf("resume: optimizer state: %w", err)
	}
	if s.ref != nil {
		return fmt.Errorf("resume: stage %s uses a reference model (rl.beta > 0), whose weights are the stage's initial ones; resume it from its init_from checkpoint instead", s.stage.Name)
	}
	s.step, s.skipped = ck.State.StageSteps, ck.State.SkippedSteps
	s.version.Store(ck.State.PolicyVersion)
	return s.busRestore(ck.State)
}

// seedOf derives a 64-bit seed from the run seed and a label.
func seedOf(seed int64, label string) uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%d/%s", seed, label)
	return h.Sum64()
}

// jobs returns n of the step's prompts, numbered from first (refills continue the numbering).
func (s *rlStage) jobs(first, n int) ([]rollout.Job, error) {
	out := make([]rollout.Job, n)
	for i := range out {
		id := fmt.Sprintf("%s-%06d-%03d", s.stage.Name, s.step, first+i)
		// a task whose prompt is longer than rl.max_prompt_tokens is redrawn (deterministically) and counted
		for attempt := 0; ; attempt++ {
			if attempt == 100 {
				return nil, fmt.Errorf("stages[%s].rl.max_prompt_tokens: %d is too small: 100 tasks in a row had longer prompts", s.stage.Name, s.rc.MaxPromptTokens)
			}
			rng := rand.New(rand.NewPCG(seedOf(s.run.Config.Seed, fmt.Sprintf("task/%s/%d", id, attempt)), 1))
			task := s.family.Sample(rng, data.SplitTrain)
			prompt, err := rollout.RenderPrompt(s.tok, task)
			if err != nil {
				return nil, fmt.Errorf("task %s: %w", task.ID, err)
			}
			if len(prompt) > s.rc.MaxPromptTokens {
				s.tooLong++
				continue
			}
			out[i] = rollout.Job{GroupID: id, Task: task, Version: s.version.Load(), Seed: seedOf(s.run.Config.Seed, "sample/"+id)}
			break
		}
	}
	return out, nil
}

// fill lays the trajectories of one mini-batch into the graph inputs and the loss layout.
func (s *rlStage) fill(trajs []*data.Trajectory, adv []float64) error {
	T, K := s.T, s.params.Config.NumExpertsPerTok
	c := s.params.Config
	clear(s.in.Weights)
	s.lossPos = s.lossPos[:0]
	s.layout = grpo.Layout{NumSeqs: len(trajs), Seq: s.layout.Seq[:0], LossMask: s.layout.LossMask[:0]}
	s.logpOld, s.adv = s.logpOld[:0], append(s.adv[:0], adv...)
	s.keptIDs = s.keptIDs[:0]
	pos := 0
	for r, tr := range trajs {
		if err := tr.Validate(c.VocabSize); err != nil {
			return err
		}
		lp, lc := len(tr.PromptTokens), len(tr.CompletionTokens)
		L := lp + lc - 1
		if lp > s.rc.MaxPromptTokens || L > T {
			return fmt.Errorf("group %s: prompt of %d tokens and completion of %d exceed the graph length %d (rl.max_prompt_tokens %d)", tr.GroupID, lp, lc, T, s.rc.MaxPromptTokens)
		}
		row := s.in.Tokens[r*T : (r+1)*T]
		tgt := s.in.Targets[r*T : (r+1)*T]
		for t := 0; t < T; t++ {
			row[t], tgt[t] = data.PAD, data.PAD
			if t < L {
				if t < lp {
					row[t] = tr.PromptTokens[t]
				} else {
					row[t] = tr.CompletionTokens[t-lp]
				}
				if t+1 < lp {
					tgt[t] = tr.PromptTokens[t+1]
				} else {
					tgt[t] = tr.CompletionTokens[t+1-lp]
				}
			}
		}
		s.in.Lengths[r] = int32(L)
		for m, l := range s.moeLayers {
			f := s.forced[l][r*T*K : (r+1)*T*K]
			for t := 0; t < T; t++ {
				for k := 0; k < K; k++ {
					if t < L && s.rc.KeepRouting && tr.MoELayers == len(s.moeLayers) && tr.TopK == K {
						f[t*K+k] = int32(tr.ExpertIDs[(t*len(s.moeLayers)+m)*K+k])
					} else {
						f[t*K+k] = int32(k)
					}
				}
			}
		}
		if s.sel != nil {
			if err := s.fillSelection(r, tr, L); err != nil {
				return err
			}
		}
		for t := 0; t < T; t++ {
			s.keptOff[pos] = int32(len(s.keptIDs))
			i := t - (lp - 1) // completion token predicted at t
			if t < L && i >= 0 && i < lc {
				if s.rc.KeepSamplingMask {
					s.keptIDs = append(s.keptIDs, tr.KeptIDs[tr.KeptOffsets[i]:tr.KeptOffsets[i+1]]...)
				}
				s.lossPos = append(s.lossPos, pos)
				s.layout.Seq = append(s.layout.Seq, r)
				s.layout.LossMask = append(s.layout.LossMask, tr.LossMask[i])
				s.logpOld = append(s.logpOld, float64(tr.LogpOld[i]))
				s.in.Weights[pos] = float32(tr.LossMask[i])
			}
			pos++
		}
	}
	for r := len(trajs); r < s.rows; r++ { // unused rows (never when groups fill the batch)
		s.in.Lengths[r] = 0
		if s.sel != nil {
			if err := s.fillSelection(r, nil, 0); err != nil {
				return err
			}
		}
		for t := 0; t < T; t++ {
			s.keptOff[pos] = int32(len(s.keptIDs))
			pos++
		}
	}
	s.keptOff[pos] = int32(len(s.keptIDs))
	if !s.rc.KeepRouting {
		for _, l := range s.moeLayers {
			s.graph.Routing[l].Forced = nil
		}
	}
	return nil
}

// fillSelection lays the recorded DSA selections of trajectory tr (nil for an unused row) into row r of the
// forced selections, over its first L positions. Padded positions (t ≥ L), whose outputs no loss reads,
// attend to the first min(max(L, 1), k) positions, as the indexer's top-k lets a padded query see the valid
// prefix so that its row stays finite.
func (s *rlStage) fillSelection(r int, tr *data.Trajectory, L int) error {
	K, T, layers := s.dsaK, s.T, len(s.sel)
	if tr != nil && (tr.DSALayers != layers || tr.DSAK != K) {
		return fmt.Errorf("group %s: rl.keep_selection is on but the trajectory's dsa_topk has %d layers × %d keys, want %d × %d (was it sampled by a worker decoding densely, or with another index_topk?)",
			tr.GroupID, tr.DSALayers, tr.DSAK, layers, K)
	}
	pad := min(max(L, 1), K)
	for l, sel := range s.sel {
		row := sel[r*T*K : (r+1)*T*K]
		for t := 0; t < T; t++ {
			dst := row[t*K : (t+1)*K]
			if t < L {
				copy(dst, tr.DSATopK[(t*layers+l)*K:(t*layers+l+1)*K])
				continue
			}
			for j := range dst {
				dst[j] = -1
				if j < pad {
					dst[j] = int32(j)
				}
			}
		}
	}
	return nil
}

func (s *rlStage) setSide(g *model.Graph[float32], forced bool) {
	g.Policy.Temperature = s.rc.Temperature
	g.Policy.KeptOffsets, g.Policy.KeptIDs = s.keptOff, s.keptIDs
	if g.DSA != nil {
		for l, ly := range g.DSA.Layers {
			ly.Forced = nil
			if forced && s.sel != nil {
				ly.Forced = s.sel[l]
			}
		}
	}
	for _, l := range s.moeLayers {
		if forced && s.rc.KeepRouting {
			g.Routing[l].Forced = s.forced[l]
		} else {
			g.Routing[l].Forced = nil
		}
	}
}

// atLoss copies the per-position values at the loss positions.
func (s *rlStage) atLoss(all []float64) []float64 {
	s.lpBuf = s.lpBuf[:0]
	for _, p := range s.lossPos {
		s.lpBuf = append(s.lpBuf, all[p])
	}
	return s.lpBuf
}

type rlMetrics struct {
	sum   map[string]float64
	count map[string]float64
}

func (m *rlMetrics) add(k string, v, n float64) {
	if m.sum == nil {
		m.sum, m.count = map[string]float64{}, map[string]float64{}
	}
	m.sum[k] += v
	m.count[k] += n
}

func (m *rlMetrics) mean(out map[string]float64) {
	for k, v := range m.sum {
		if m.count[k] > 0 {
			out[k] = v / m.count[k]
		}
	}
}

// trainOn runs the optimizer steps of one batch of groups (sorted by id).
func (s *rlStage) trainOn(groups []*data.Group) (map[string]float64, error) {
	rc := s.rc
	out := map[string]float64{}
	var rewards []float64
	var trajs []*data.Trajectory
	var respLen, clipped, correct float64
	stale := 0.0
	staleMax := 0.0
	for _, g := range groups {
		if len(g.Trajectories) != rc.GroupSize {
			return nil, fmt.Errorf("group %s has %d completions, want %d (a worker failed; see the log)", g.GroupID, len(g.Trajectories), rc.GroupSize)
		}
		for i := range g.Trajectories {
			tr := &g.Trajectories[i]
			trajs = append(trajs, tr)
			rewards = append(rewards, float64(tr.Reward))
			respLen += float64(len(tr.CompletionTokens))
			if tr.FinishReason == "length" {
				clipped++
			}
			correct += float64(tr.RewardParts["correct"])
			lag := float64(s.version.Load() - tr.PolicyVersion)
			stale += lag
			staleMax = math.Max(staleMax, lag)
		}
	}
	adv, st, err := s.loss.Advantages(rewards, rc.GroupSize)
	if err != nil {
		return nil, err
	}
	n := float64(len(trajs))
	out["reward/mean"], out["reward/std"], out["reward/frac_zero_std"] = st.RewardMean, st.RewardStd, st.FracZeroStd
	out["reward/accuracy"] = correct / n
	out["response_length/mean"], out["response_length/clip_ratio"] = respLen/n, clipped/n
	out["staleness/mean"], out["staleness/max"] = stale/n, staleMax
	var m rlMetrics
	// whole groups per mini-batch: ceil(groups / mini_batches), the last mini-batches may be shorter
	gpm := (len(groups) + rc.MiniBatches - 1) / rc.MiniBatches
	for mb := 0; mb < rc.MiniBatches; mb++ {
		lo, hi := min(mb*gpm, len(groups))*rc.GroupSize, min((mb+1)*gpm, len(groups))*rc.GroupSize
		if lo == hi {
			break
		}
		part := trajs[lo:hi]
		if err := s.fill(part, adv[lo:hi]); err != nil {
			return nil, err
		}
		norm, err := grpo.NormalizerOf(s.layout)
		if err != nil {
			return nil, err
		}
		// π_ref
		s.logpRef = s.logpRef[:0]
		if s.refGraph != nil {
			s.setSide(s.refGraph, true)
			s.refGraph.Policy.Loss = func(lp []float64) (float64, []float64, error) {
				s.logpRef = append(s.logpRef[:0], s.atLoss(lp)...)
				clear(s.dlogp)
				return 0, s.dlogp, nil
			}
			if _, err := s.refGraph.Run(s.in); err != nil {
				return nil, fmt.Errorf("reference pass: %w", err)
			}
		}
		var res grpo.Result
		s.setSide(s.graph, true)
		s.graph.Policy.Loss = func(lp []float64) (float64, []float64, error) {
			b := &grpo.Batch{Layout: s.layout, Logp: append([]float64(nil), s.atLoss(lp)...), LogpOld: s.logpOld, Adv: s.adv}
			if s.refGraph != nil {
				b.LogpRef = s.logpRef
			}
			var err error
			if res, err = grpo.Loss(s.loss, b, norm); err != nil {
				return 0, nil, err
			}
			clear(s.dlogp)
			for k, p := range s.lossPos {
				s.dlogp[p] = res.DLossDLogp[k]
			}
			if mb == 0 { // same policy version as the sampler: the training–inference mismatch
				var d, cnt float64
				for k := range b.Logp {
					if s.layout.LossMask[k] == 1 {
						d += math.Abs(b.Logp[k] - s.logpOld[k])
						cnt++
					}
				}
				out["rollout/logp_mismatch"] = d / math.Max(cnt, 1)
			}
			return res.Loss, s.dlogp, nil
		}
		for _, g := range s.groups {
			clear(g.Grad)
		}
		lossV, err := s.graph.Run(s.in)
		if err != nil {
			return nil, err
		}
		mt := res.Metrics
		m.add("actor/loss", lossV, 1)
		m.add("actor/pg_loss", mt.PGLoss, 1)
		m.add("actor/kl", mt.KLSum, float64(mt.Tokens))
		m.add("actor/pg_clipfrac", float64(mt.ClipHigh+mt.ClipLow), float64(max(mt.PGTokens, 1)))
		m.add("actor/opsm_frac", float64(mt.Masked), float64(max(mt.Seqs, 1)))
		m.add("rollout/is_ratio_mean", mt.RatioSum, float64(max(mt.Tokens, 1)))
		var ent float64
		for _, p := range s.lossPos {
			ent += float64(s.graph.Policy.Entropy[p])
		}
		m.add("actor/entropy", ent, float64(max(len(s.lossPos), 1)))
		for k, gi := range s.gradOf {
			copy(s.groups[k].Grad, s.graph.Grad(gi))
		}
		norm2 := GlobalNorm(s.groups)
		m.add("grad_norm", norm2, 1)
		if math.IsNaN(lossV) || math.IsInf(lossV, 0) || math.IsNaN(norm2) || math.IsInf(norm2, 0) {
			s.skipped++
			s.run.Log.Warn("skipped an RL update with a non-finite loss or gradient norm", "stage", s.stage.Name, "step", s.step, "skipped_total", s.skipped)
			continue
		}
		if clip := s.stage.Optimizer.GradClip; clip > 0 {
			ClipGrads(s.groups, clip)
		}
		sc := s.stage.Schedule
		lr := LR(sc.Kind, s.stage.Optimizer.LR, s.step, sc.WarmupSteps, s.stage.Train.Steps, sc.MinLRRatio)
		s.opt.Update(lr)
		out["lr"] = lr
		for _, l := range s.moeLayers {
			model.UpdateBias(s.params.Get(model.LayerPrefix(l)+"mlp.gate.e_score_correction_bias"), s.graph.Routing[l].Load, s.params.Config.BiasUpdateSpeed)
		}
	}
	m.mean(out)
	if s.skipped > 0 {
		out["skipped_steps"] = float64(s.skipped)
	}
	return out, nil
}

// gather dispatches the step's prompts and collects their groups. With dynamic sampling, groups whose
// rewards are all equal are dropped (and counted) and replaced by new prompts, at most max_refill of them;
// a batch still short after that is trained as it is.
func (s *rlStage) gather(ctx context.Context, errCh <-chan error) (groups []*data.Group, dropped int, err error) {
	rc := s.rc
	next := 0
	want := rc.PromptsPerStep
	refills := 0
	var spare []*data.Group
	for len(groups) < want {
		n := want - len(groups)
		if next >= rc.PromptsPerStep {
			n = min(n, rc.MaxRefill-refills)
			if n <= 0 {
				break
			}
			refills += n
		}
		jobs, err := s.jobs(next, n)
		if err != nil {
			return nil, dropped, err
		}
		if err := s.transport.Dispatch(ctx, jobs); err != nil {
			return nil, dropped, err
		}
		next += n
		got, err := s.transport.Collect(ctx, n)
		if err != nil {
			return nil, dropped, err
		}
		if errCh != nil {
			select {
			case e := <-errCh:
				return nil, dropped, fmt.Errorf("stage %s: rollout: %w", s.stage.Name, e)
			default:
			}
		}
		for _, g := range got {
			if !s.admit(g) { // failed or stale: dropped and counted (rl_bus.go)
				continue
			}
			if rc.DynamicSampling && zeroStd(g) {
				dropped++
				spare = append(spare, g)
				continue
			}
			groups = append(groups, g)
		}
	}
	// the refill budget is spent: top the batch up with dropped groups (their advantages are zero, so they
	// add no policy gradient) rather than abort the run
	for len(groups) < want && len(spare) > 0 {
		groups, spare = append(groups, spare[0]), spare[1:]
		dropped--
	}
	if len(groups) == 0 {
		return nil, dropped, fmt.Errorf("stage %s step %d: no usable group (every one failed or was stale); see the rollout log", s.stage.Name, s.step)
	}
	return groups, dropped, nil
}

func zeroStd(g *data.Group) bool {
	for _, t := range g.Trajectories {
		if t.Reward != g.Trajectories[0].Reward {
			return false
		}
	}
	return true
}

// evaluate returns greedy accuracy on the first n held-out tasks (the same tasks at every evaluation).
func (s *rlStage) evaluate(n int) (float64, error) {
	if n == 0 {
		return math.NaN(), nil
	}
	rng := rand.New(rand.NewPCG(seedOf(s.run.Config.Seed, "eval/"+s.rc.Env), 2))
	tasks, _ := envs.EvalTasks(s.family, rng, data.SplitHeldOut, n)
	var correct atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, len(s.samplers))
	for w, gs := range s.samplers {
		wg.Add(1)
		go func(w int, gs *rollout.GroupSampler) {
			defer wg.Done()
			for i := w; i < n; i += len(s.samplers) {
				text, finish, err := gs.Greedy(tasks[i])
				if err != nil {
					errs[w] = err
					return
				}
				if s.family.Verify(tasks[i], text, finish).Correct {
					correct.Add(1)
				}
			}
		}(w, gs)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	return float64(correct.Load()) / float64(n), nil
}

func (s *rlStage) runLoop(ctx context.Context) error {
	r := s.run
	rc := s.rc
	steps := s.stage.Train.Steps
	log := r.Log.With("stage", s.stage.Name)
	pb := NewProgress(r.Config.Run.Progress, s.stage.Name, steps)
	defer pb.Finish()
	if err := s.openBus(ctx); err != nil {
		return err
	}
	defer func() { s.closeBus(s.step >= steps) }()
	if err := s.syncRollout(); err != nil { // the weights may have been loaded (resume) since newRLStage
		return err
	}
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	errCh := make(chan error, 64)
	for _, gs := range s.localSamplers() {
		w := &rollout.Worker{Sampler: gs, Version: s.version.Load, Errors: errCh}
		wg.Add(1)
		go func() { defer wg.Done(); _ = w.Run(wctx, s.transport) }()
	}
	defer func() { cancel(); s.transport.Close(); wg.Wait() }()
	accKey := "eval/" + rc.Env + "/accuracy"
	evalNow := func() error {
		acc, err := s.evaluate(rc.EvalTasks)
		if err != nil {
			return fmt.Errorf("stage %s: eval: %w", s.stage.Name, err)
		}
		if !math.IsNaN(acc) {
			log.Info("eval", "step", s.step, accKey, acc)
			return r.Metrics.Log(s.stage.Name, s.step, map[string]float64{accKey: acc})
		}
		return nil
	}
	if s.step == 0 {
		if err := evalNow(); err != nil {
			return err
		}
	}
	every := r.Config.Checkpoint.Every
	lastSaved := -1
	for s.step < steps {
		if ctx.Err() != nil {
			if lastSaved != s.step {
				if _, err := s.save(); err != nil {
					return err
				}
			}
			return ErrInterrupted
		}
		t0 := time.Now()
		groups, dropped, err := s.gather(ctx, errCh)
		if err != nil {
			if ctx.Err() != nil {
				continue
			}
			return err
		}
		slices.SortFunc(groups, func(a, b *data.Group) int {
			switch {
			case a.GroupID < b.GroupID:
				return -1
			case a.GroupID > b.GroupID:
				return 1
			}
			return 0
		})
		tRoll := time.Since(t0)
		t1 := time.Now()
		m, err := s.trainOn(groups)
		if err != nil {
			return fmt.Errorf("stage %s step %d: %w", s.stage.Name, s.step, err)
		}
		if err := s.syncRollout(); err != nil {
			return err
		}
		s.version.Add(1)
		s.step++
		var toks float64
		for _, g := range groups {
			for _, tr := range g.Trajectories {
				toks += float64(len(tr.CompletionTokens))
			}
		}
		m["timing_s/rollout"], m["timing_s/train"] = tRoll.Seconds(), time.Since(t1).Seconds()
		if s.tooLong > 0 {
			m["rollout/prompts_too_long"] = float64(s.tooLong)
		}
		if rc.DynamicSampling {
			m["rollout/dropped_zero_std"] = float64(dropped)
			m["rollout/groups"] = float64(len(groups))
		}
		m["rollout/tokens_per_s"] = toks / tRoll.Seconds()
		m["policy_version"] = float64(s.version.Load())
		if err := s.busStep(ctx, m); err != nil {
			return err
		}
		if err := r.Metrics.Log(s.stage.Name, s.step, m); err != nil {
			return err
		}
		pb.Update(s.step, m["actor/loss"], m["rollout/tokens_per_s"])
		if !pb.Enabled() {
			log.Info("step", "step", s.step, "reward", round4(m["reward/mean"]), "accuracy", round4(m["reward/accuracy"]),
				"len", round4(m["response_length/mean"]), "kl", m["actor/kl"], "clipfrac", round4(m["actor/pg_clipfrac"]),
				"rollout_s", round4(tRoll.Seconds()), "train_s", round4(m["timing_s/train"]))
		}
		if (rc.EvalEvery > 0 && s.step%rc.EvalEvery == 0) || s.step == steps {
			if err := evalNow(); err != nil {
				return err
			}
		}
		if (every > 0 && s.step%every == 0) || s.step == steps {
			if _, err := s.save(); err != nil {
				return err
			}
			lastSaved = s.step
		}
	}
	return nil
}

// rl_update.go: the rl stage's update on a batch of groups (dsv32-spec.md §3.2): the advantages per group,
// then per mini-batch the frozen reference's log-probabilities (β > 0), the policy pass whose head hands
// log π_θ to grpo.Loss (Eq. 5–9) and chains ∂L/∂logp back through the network in the same graph run, and the
// optimizer step; then the new policy version for the rollout engines.

package trainer

import (
	"fmt"
	"math"

	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/grpo"
	"github.com/sparrow-rl/sparrow/model"
	"github.com/sparrow-rl/sparrow/rollout"
)

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
	if err == nil && s.distill != nil { // distillation: the reward's share of every token's advantage
		for i := range b.adv {
			b.adv[i] *= s.distill.rewardWeight
		}
	}
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
	m := map[string]float64{
		"reward/mean": b.stats.RewardMean, "reward/std": b.stats.RewardStd, "reward/frac_zero_std": b.stats.FracZeroStd,
		"reward/accuracy": correct / n, "response_length/mean": respLen / n, "response_length/clip_ratio": clipped / n,
		"staleness/mean": stale / n, "staleness/max": staleMax,
	}
	agentMetrics(m, b.trajs)
	return m
}

// agentMetrics adds the tool-episode statistics of multi-turn trajectories (rollout's reward parts):
// agent/tool_calls and agent/turns per episode, agent/malformed_rate (refused calls per call attempted),
// agent/tool_error_rate and agent/no_call_rate. Single-turn batches add nothing.
func agentMetrics(m map[string]float64, trajs []*data.Trajectory) {
	if len(trajs) == 0 {
		return
	}
	if _, ok := trajs[0].RewardParts[rollout.PartTurns]; !ok {
		return
	}
	var calls, malformed, toolErrs, turns, noCall float64
	for _, tr := range trajs {
		p := tr.RewardParts
		calls += float64(p[rollout.PartToolCalls])
		malformed += float64(p[rollout.PartMalformed])
		toolErrs += float64(p[rollout.PartToolError])
		turns += float64(p[rollout.PartTurns])
		if p[rollout.PartToolCalls] == 0 {
			noCall++
		}
	}
	n := float64(len(trajs))
	m["agent/tool_calls"], m["agent/turns"], m["agent/no_call_rate"] = calls/n, turns/n, noCall/n
	m["agent/malformed_rate"], m["agent/tool_error_rate"] = 0, 0
	if calls+malformed > 0 {
		m["agent/malformed_rate"] = malformed / (calls + malformed)
	}
	if calls > 0 {
		m["agent/tool_error_rate"] = toolErrs / calls
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
	// klExact sums the exact kept-set KL over the loss tokens per task family (distill.kl exact/both)
	klExact map[string]grpo.ReverseKL
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
	if u.klExact != nil {
		var all grpo.ReverseKL
		for env, k := range u.klExact {
			m["distill/"+env+"/kl_exact"] = k.Mean()
			all.Sum, all.Tokens = all.Sum+k.Sum, all.Tokens+k.Tokens
		}
		m["distill/kl_exact"] = all.Mean()
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
		if err := s.distillAdvantages(s.batch); err != nil {
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
		if kl := s.graph.Policy.KeptKL; kl != nil {
			u.addExactKL(kl.KL, s.batch, b.trajs[lo:hi])
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
	if s.graph.Policy.KeptKL, err = s.exactKL(b, norm); err != nil {
		return policyOutcome{}, err
	}
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
	if o.result, err = grpo.Loss(o.cfg, &grpo.Batch{Layout: b.Layout, Logp: o.logp, LogpOld: b.LogpOld, LogpRef: o.logpRef, Adv: b.Adv, TokenAdv: b.TokenAdv}, o.norm); err != nil {
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

// distillAdvantages sets b.TokenAdv to the on-policy distillation advantages −λ·(ℓ_old − ℓ_T) of a
// distill stage with the sampled-token KL (grpo.DistillAdvantages); nil for an rl stage and for the exact
// KL alone.
func (s *rlStage) distillAdvantages(b *RLBatch) error {
	if s.distill == nil || !s.distill.sampled {
		b.TokenAdv = nil
		return nil
	}
	adv, err := grpo.DistillAdvantages(b.Layout, b.LogpOld, b.LogpTeacher, s.distill.klCoef)
	if err != nil {
		return fmt.Errorf("distillation advantages: %w", err)
	}
	b.TokenAdv = adv
	return nil
}

// exactKL is the policy head's exact-KL term of a distill stage with distill.kl exact or both (nil
// otherwise): at each loss position the weight λ·w_t, w_t the GRPO loss's token aggregation weight over the
// whole batch (grpo.Aggregator with rl.agg and norm), and the teacher over the position's set, so the loss
// gains λ·Σ_t w_t·KL_t (grpo.ExactKL, grpo/distill_exact.go).
func (s *rlStage) exactKL(b *RLBatch, norm grpo.Normalizer) (*model.KeptKL, error) {
	if s.distill == nil || !s.distill.exact {
		return nil, nil
	}
	w, err := grpo.Aggregator{Mode: s.loss.Agg, Norm: norm, MaxLen: s.loss.MaxLen}.Weights(b.Layout)
	if err != nil {
		return nil, fmt.Errorf("exact KL: %w", err)
	}
	clear(b.KLWeights)
	for k, p := range b.LossPos {
		b.KLWeights[p] = s.distill.klCoef * w[k]
	}
	return &model.KeptKL{Weights: b.KLWeights, TeacherOffsets: b.TeacherKeptOffsets, TeacherLogp: b.TeacherKeptLogp, Divergence: grpo.ExactKL}, nil
}

// addExactKL adds the policy pass's exact KL per position kl [Rows·T] at b's trained loss tokens to u's sums
// by the task family of their trajectory (trajs: the mini-batch's, in row order).
func (u *updateResult) addExactKL(kl []float64, b *RLBatch, trajs []*data.Trajectory) {
	if u.klExact == nil {
		u.klExact = map[string]grpo.ReverseKL{}
	}
	for k, p := range b.LossPos {
		if b.Layout.LossMask[k] == 0 {
			continue
		}
		env := trajs[b.Layout.Seq[k]].Env
		e := u.klExact[env]
		e.Sum, e.Tokens = e.Sum+kl[p], e.Tokens+1
		u.klExact[env] = e
	}
}

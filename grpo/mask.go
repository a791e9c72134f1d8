// The token layout of a micro-batch (Layout: sequence index and loss mask per
// token) with its input checks, and Off-Policy Sequence Masking (DeepSeek-V3.2
// Eq. 9): a sequence whose advantage is negative and whose mean log-ratio
// ln(π_old/π_θ) over its loss tokens exceeds δ is dropped from the surrogate —
// far-off-policy negatives mislead more than they teach. The decision is one per
// sequence and covers all its tokens; it is a step function of the
// log-probabilities, so it is treated as a constant in the gradient (as the
// peers do). π_old is the sampler's log-probability, so the log-ratio captures
// both mini-batch staleness and inference/training mismatch.

package grpo

import (
	"fmt"
	"math"
)

// Layout describes the tokens of one micro-batch: the tokens of NumSeqs
// sequences concatenated in one flat slice of length T. A sequence must lie in
// a single micro-batch (its per-sequence means are taken locally).
type Layout struct {
	Seq      []int   // [T] sequence of each token, in [0, NumSeqs); need not be contiguous
	LossMask []uint8 // [T] 1 = trained token, 0 = not (prompt, tool result, padding)
	NumSeqs  int     // number of sequences, including any without loss tokens
}

// validate checks the shapes and values of the layout.
func (l Layout) validate() error {
	if l.NumSeqs < 0 {
		return fmt.Errorf("grpo: layout: num_seqs %d < 0", l.NumSeqs)
	}
	if len(l.LossMask) != len(l.Seq) {
		return fmt.Errorf("grpo: layout: loss_mask has %d tokens, seq has %d", len(l.LossMask), len(l.Seq))
	}
	for t, s := range l.Seq {
		if s < 0 || s >= l.NumSeqs {
			return fmt.Errorf("grpo: layout: seq[%d] = %d: outside [0, %d)", t, s, l.NumSeqs)
		}
		if m := l.LossMask[t]; m > 1 {
			return fmt.Errorf("grpo: layout: loss_mask[%d] = %d: want 0 or 1", t, m)
		}
	}
	return nil
}

// seqTokens returns the number of loss tokens of each sequence.
func (l Layout) seqTokens() []int {
	n := make([]int, l.NumSeqs)
	for t, s := range l.Seq {
		n[s] += int(l.LossMask[t])
	}
	return n
}

// checkTokens fails when xs does not have one value per token or a value at a
// loss token is not finite; values at LossMask 0 are not read.
func (l Layout) checkTokens(name string, xs []float64) error {
	if len(xs) != len(l.Seq) {
		return fmt.Errorf("grpo: %s has %d values for %d tokens", name, len(xs), len(l.Seq))
	}
	for t, x := range xs {
		if l.LossMask[t] == 1 && (math.IsNaN(x) || math.IsInf(x, 0)) {
			return fmt.Errorf("grpo: %s[%d] (sequence %d) = %v: not finite", name, t, l.Seq[t], x)
		}
	}
	return nil
}

// checkSeqs fails when adv does not have one finite value per sequence.
func (l Layout) checkSeqs(name string, adv []float64) error {
	if len(adv) != l.NumSeqs {
		return fmt.Errorf("grpo: %s has %d values for %d sequences", name, len(adv), l.NumSeqs)
	}
	for i, a := range adv {
		if math.IsNaN(a) || math.IsInf(a, 0) {
			return fmt.Errorf("grpo: %s[%d] = %v: not finite", name, i, a)
		}
	}
	return nil
}

// opsmEnabled reports whether δ turns masking on: 0 and +Inf disable it.
func opsmEnabled(delta float64) bool { return delta != 0 && !math.IsInf(delta, 1) }

// checkDelta fails for a δ that is neither a disabling value nor > 0.
func checkDelta(delta float64) error {
	if math.IsNaN(delta) || delta < 0 {
		return fmt.Errorf("grpo: opsm delta %v: must be > 0, or 0 / +Inf to disable", delta)
	}
	return nil
}

// OffPolicyMask returns, per sequence, keep[i] = false when adv[i] < 0 and the
// mean of logpOld − logp over the sequence's loss tokens is > delta (Eq. 9),
// and the fraction of masked sequences among those with at least one loss
// token (actor/opsm_frac). Sequences without loss tokens are kept. delta 0 or
// +Inf disables masking (all kept, fraction 0).
func OffPolicyMask(l Layout, logp, logpOld, adv []float64, delta float64) (keep []bool, frac float64, err error) {
	if err := l.validate(); err != nil {
		return nil, 0, err
	}
	if err := checkDelta(delta); err != nil {
		return nil, 0, err
	}
	if err := l.checkTokens("logp", logp); err != nil {
		return nil, 0, err
	}
	if err := l.checkTokens("logp_old", logpOld); err != nil {
		return nil, 0, err
	}
	if err := l.checkSeqs("adv", adv); err != nil {
		return nil, 0, err
	}
	keep, masked, seqs := offPolicyMask(l, logp, logpOld, adv, delta)
	if seqs > 0 {
		frac = float64(masked) / float64(seqs)
	}
	return keep, frac, nil
}

// offPolicyMask is OffPolicyMask on checked inputs; it also returns the count
// of masked sequences and of sequences with loss tokens.
func offPolicyMask(l Layout, logp, logpOld, adv []float64, delta float64) (keep []bool, masked, seqs int) {
	keep = make([]bool, l.NumSeqs)
	n := l.seqTokens()
	sum := make([]float64, l.NumSeqs)
	for t, s := range l.Seq {
		if l.LossMask[t] == 1 {
			sum[s] += logpOld[t] - logp[t]
		}
	}
	for i := range keep {
		keep[i] = true
		if n[i] == 0 {
			continue
		}
		seqs++
		if opsmEnabled(delta) && adv[i] < 0 && sum[i]/float64(n[i]) > delta {
			keep[i] = false
			masked++
		}
	}
	return keep, masked, seqs
}

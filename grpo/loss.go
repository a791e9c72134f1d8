// The whole GRPO loss of DeepSeek-V3.2 (Eq. 8, negated to be minimised) on one
// micro-batch, with its gradient with respect to every token's log-probability.
// Per loss token t of sequence i, with w_t the aggregation weight (agg.go), M_i
// the off-policy sequence mask (mask.go), s_t the clipped surrogate (ratio.go)
// and D̂_t the KL estimate (kl.go):
//
//	L        = Σ_t w_t · ( M_i·s_t + β·D̂_t )
//	∂L/∂ℓ_t  = w_t · ( M_i·∂s_t/∂ℓ_t + β·∂D̂_t/∂ℓ_t ),   0 where LossMask is 0
//
// M multiplies only the surrogate, not the KL term, as Eq. 8 is written; M is a
// constant in the gradient. Summing L and concatenating the gradients over the
// micro-batches of a batch (same Normalizer) gives the whole-batch values.

package grpo

import (
	"fmt"
	"math"
)

// Config holds the hyper-parameters of the loss. The paper publishes none of
// ε, β, δ (dsv32-spec.md §3.2); DefaultConfig gives the peers' usual values.
type Config struct {
	EpsLow    float64 // lower clip: ρ ≥ 1 − EpsLow for A < 0
	EpsHigh   float64 // upper clip: ρ ≤ 1 + EpsHigh for A > 0 (DAPO clip-higher when > EpsLow)
	DualClipC float64 // dual clip c > 1 for A < 0; 0 = off
	Beta      float64 // KL coefficient β >= 0 (0 computes the KL metric but adds no gradient)
	KL        KLKind  // none | k1 | k2 | k3 | unbiased
	// Delta is the OPSM threshold δ > 0 on the mean ln(π_old/π_θ) of a
	// negative-advantage sequence; 0 or +Inf disables masking.
	Delta        float64
	Agg          AggMode // seq-mean-token-mean | token-mean | seq-mean-token-sum | seq-mean-token-sum-norm
	MaxLen       int     // the constant of seq-mean-token-sum-norm (the generation length limit)
	StdNormalize bool    // divide advantages by the group's sample std (off in the paper)
	StdEps       float64 // added to the std when StdNormalize (verl: 1e-6)
}

// DefaultConfig is the DeepSeek-V3.2 recipe with the peers' values where the
// paper is silent: clip 0.2/0.28 (DAPO clip-higher), dual clip 3 (verl), the
// unbiased KL with β = 0.001, OPSM δ = 0.5 (TRL's suggested start), the
// per-sequence token mean of Eq. 8, advantages not divided by the std.
func DefaultConfig() Config {
	return Config{
		EpsLow: 0.2, EpsHigh: 0.28, DualClipC: 3,
		Beta: 0.001, KL: KLUnbiased,
		Delta: 0.5,
		Agg:   AggSeqMeanTokenMean, MaxLen: 0,
		StdNormalize: false, StdEps: 1e-6,
	}
}

// Validate checks every field.
func (c Config) Validate() error {
	if err := (Clip{c.EpsLow, c.EpsHigh, c.DualClipC}).Validate(); err != nil {
		return err
	}
	if !(c.Beta >= 0) || math.IsInf(c.Beta, 0) {
		return fmt.Errorf("grpo: beta %v: must be finite and >= 0", c.Beta)
	}
	if _, err := ParseKL(string(c.KL)); err != nil {
		return err
	}
	if err := checkDelta(c.Delta); err != nil {
		return err
	}
	if _, err := ParseAgg(string(c.Agg)); err != nil {
		return err
	}
	if c.Agg == AggSeqMeanTokenSumNorm && c.MaxLen <= 0 {
		return fmt.Errorf("grpo: agg %s needs max_len > 0, got %d", c.Agg, c.MaxLen)
	}
	if c.MaxLen < 0 {
		return fmt.Errorf("grpo: max_len %d < 0", c.MaxLen)
	}
	if !(c.StdEps >= 0) || math.IsInf(c.StdEps, 0) {
		return fmt.Errorf("grpo: std_eps %v: must be finite and >= 0", c.StdEps)
	}
	return nil
}

// Advantages is GroupAdvantages with the config's StdNormalize and StdEps.
func (c Config) Advantages(rewards []float64, groupSize int) ([]float64, AdvantageStats, error) {
	return GroupAdvantages(rewards, groupSize, c.StdNormalize, c.StdEps)
}

// Batch is one micro-batch of sequences, flattened per token (see Layout).
type Batch struct {
	Layout
	Logp    []float64 // [T] ln π_θ of the sampled token (current policy, kept-set renormalised)
	LogpOld []float64 // [T] ln π_old, the sampler's log-probability
	LogpRef []float64 // [T] ln π_ref; may be nil when KL is none
	Adv     []float64 // [NumSeqs] advantage Â_i of each sequence
	// TokenAdv, when not nil, is a per-token advantage added to its sequence's: token t is trained with
	// Â_{Seq[t]} + TokenAdv[t] ([T]; on-policy distillation's −λ·(ℓ_old − ℓ_T), DistillAdvantages).
	// Off-policy sequence masking still decides on the sequence advantage Â_i alone.
	TokenAdv []float64
}

// Result is the loss of one micro-batch.
type Result struct {
	Loss       float64   // L = −J for this micro-batch (globally normalised: add over micro-batches)
	DLossDLogp []float64 // [T] ∂L/∂logp per token; 0 where LossMask is 0
	Keep       []bool    // [NumSeqs] OPSM decision M_i (true = in the surrogate)
	Metrics    Metrics
}

// Metrics holds sums and counts that add over micro-batches (Merge) and turn
// into the named metrics with Map.
type Metrics struct {
	PGLoss float64 // Σ_t w_t·M_i·s_t: the surrogate part of Loss
	KLLoss float64 // Σ_t w_t·D̂_t: the aggregated KL estimate before β (0 when KL is none)

	Tokens   int // loss tokens
	PGTokens int // loss tokens of sequences kept by OPSM (the clip fractions' denominator)
	ClipHigh int // kept tokens with A > 0 and ρ > 1+ε_high
	ClipLow  int // kept tokens with A < 0 and ρ < 1−ε_low
	DualClip int // kept tokens with A < 0 and ρ > c

	Seqs   int // sequences with at least one loss token
	Masked int // of those, masked by OPSM

	KLSum          float64 // Σ_t D̂_t over loss tokens
	RatioSum       float64 // Σ_t ρ_t over loss tokens
	RatioMin       float64 // min ρ over loss tokens (meaningful when Tokens > 0)
	RatioMax       float64 // max ρ over loss tokens (meaningful when Tokens > 0)
	LogRatioSum    float64 // Σ_t (ℓ_old − ℓ) over loss tokens (verl ppo_kl)
	AbsLogRatioSum float64 // Σ_t |ℓ − ℓ_old| over loss tokens
}

// Merge adds the sums and counts of o into m.
func (m *Metrics) Merge(o Metrics) {
	if o.Tokens > 0 {
		if m.Tokens == 0 || o.RatioMin < m.RatioMin {
			m.RatioMin = o.RatioMin
		}
		if m.Tokens == 0 || o.RatioMax > m.RatioMax {
			m.RatioMax = o.RatioMax
		}
	}
	m.PGLoss += o.PGLoss
	m.KLLoss += o.KLLoss
	m.Tokens += o.Tokens
	m.PGTokens += o.PGTokens
	m.ClipHigh += o.ClipHigh
	m.ClipLow += o.ClipLow
	m.DualClip += o.DualClip
	m.Seqs += o.Seqs
	m.Masked += o.Masked
	m.KLSum += o.KLSum
	m.RatioSum += o.RatioSum
	m.LogRatioSum += o.LogRatioSum
	m.AbsLogRatioSum += o.AbsLogRatioSum
}

// Map returns the named metrics (verl/TRL names, architecture.md):
//
//	actor/pg_loss            surrogate part of the loss
//	actor/kl_loss            aggregated KL estimate (before β)
//	actor/kl                 token mean of the KL estimate
//	actor/pg_clipfrac        share of kept tokens on a clipped branch (high or low; verl pg_clipfrac)
//	actor/pg_clipfrac_high   … on the upper bound (A > 0)
//	actor/pg_clipfrac_low    … on the lower bound (A < 0)
//	actor/pg_clipfrac_dual   … capped by the dual clip (verl calls it pg_clipfrac_lower)
//	actor/ppo_kl             token mean of ln(π_old/π_θ)
//	actor/opsm_frac          share of sequences masked by OPSM
//	rollout/is_ratio_mean    token mean of ρ = π_θ/π_old (and _min, _max)
//	rollout/logp_mismatch    token mean of |ln π_θ − ln π_old|; the architecture's
//	                         mismatch metric when θ and old are the same policy version
//
// Ratios over empty denominators are left out.
func (m Metrics) Map() map[string]float64 {
	out := map[string]float64{
		"actor/pg_loss": m.PGLoss,
		"actor/kl_loss": m.KLLoss,
	}
	if m.Tokens > 0 {
		n := float64(m.Tokens)
		out["actor/kl"] = m.KLSum / n
		out["actor/ppo_kl"] = m.LogRatioSum / n
		out["rollout/is_ratio_mean"] = m.RatioSum / n
		out["rollout/is_ratio_min"] = m.RatioMin
		out["rollout/is_ratio_max"] = m.RatioMax
		out["rollout/logp_mismatch"] = m.AbsLogRatioSum / n
	}
	if m.PGTokens > 0 {
		n := float64(m.PGTokens)
		out["actor/pg_clipfrac"] = float64(m.ClipHigh+m.ClipLow) / n
		out["actor/pg_clipfrac_high"] = float64(m.ClipHigh) / n
		out["actor/pg_clipfrac_low"] = float64(m.ClipLow) / n
		out["actor/pg_clipfrac_dual"] = float64(m.DualClip) / n
	}
	if m.Seqs > 0 {
		out["actor/opsm_frac"] = float64(m.Masked) / float64(m.Seqs)
	}
	return out
}

// Loss computes the loss of micro-batch b and its per-token gradient, with
// norm the normaliser of the whole batch b belongs to (NormalizerOf over all
// its micro-batches; NormalizerOf(b.Layout) when b is the whole batch).
//
// Errors: an invalid config, shapes that disagree, a non-finite input at a
// loss token or advantage, a normaliser that cannot be b's, and a non-finite
// loss or gradient (e.g. an overflowing ratio) — never a silent NaN.
func Loss(cfg Config, b *Batch, norm Normalizer) (Result, error) {
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	if err := b.validate(); err != nil {
		return Result{}, err
	}
	if err := b.checkTokens("logp", b.Logp); err != nil {
		return Result{}, err
	}
	if err := b.checkTokens("logp_old", b.LogpOld); err != nil {
		return Result{}, err
	}
	if cfg.KL != KLNone {
		if err := b.checkTokens("logp_ref", b.LogpRef); err != nil {
			return Result{}, fmt.Errorf("%w (kl %s needs the reference log-probabilities)", err, cfg.KL)
		}
	}
	if err := b.checkSeqs("adv", b.Adv); err != nil {
		return Result{}, err
	}
	if b.TokenAdv != nil {
		if err := b.checkTokens("token_adv", b.TokenAdv); err != nil {
			return Result{}, err
		}
	}
	w, err := Aggregator{Mode: cfg.Agg, Norm: norm, MaxLen: cfg.MaxLen}.Weights(b.Layout)
	if err != nil {
		return Result{}, err
	}
	keep, masked, seqs := offPolicyMask(b.Layout, b.Logp, b.LogpOld, b.Adv, cfg.Delta)
	clip := Clip{EpsLow: cfg.EpsLow, EpsHigh: cfg.EpsHigh, DualClipC: cfg.DualClipC}

	res := Result{DLossDLogp: make([]float64, len(b.Seq)), Keep: keep}
	m := &res.Metrics
	m.Seqs, m.Masked = seqs, masked
	for t, i := range b.Seq {
		if b.LossMask[t] == 0 {
			continue
		}
		logp, logpOld := b.Logp[t], b.LogpOld[t]
		adv := b.Adv[i]
		if b.TokenAdv != nil {
			adv += b.TokenAdv[t]
		}
		s, ds, rho, state := Surrogate(logp, logpOld, adv, clip)
		var kl, dkl float64
		if cfg.KL != KLNone {
			kl, dkl = cfg.KL.Term(logp, logpOld, b.LogpRef[t])
		}
		var pg, dpg float64
		if keep[i] {
			pg, dpg = s, ds
			m.PGTokens++
			switch state {
			case ClippedHigh:
				m.ClipHigh++
			case ClippedLow:
				m.ClipLow++
			case DualClipped:
				m.DualClip++
			}
		}
		loss := w[t] * (pg + cfg.Beta*kl)
		grad := w[t] * (dpg + cfg.Beta*dkl)
		if math.IsNaN(loss) || math.IsInf(loss, 0) || math.IsNaN(grad) || math.IsInf(grad, 0) {
			return Result{}, fmt.Errorf("grpo: token %d (sequence %d): loss term %v, gradient %v not finite (logp %v, logp_old %v, ratio %v, kl %v)",
				t, i, loss, grad, logp, logpOld, rho, kl)
		}
		res.Loss += loss
		res.DLossDLogp[t] = grad
		m.PGLoss += w[t] * pg
		m.KLLoss += w[t] * kl

		if m.Tokens == 0 || rho < m.RatioMin {
			m.RatioMin = rho
		}
		if m.Tokens == 0 || rho > m.RatioMax {
			m.RatioMax = rho
		}
		m.Tokens++
		m.KLSum += kl
		m.RatioSum += rho
		m.LogRatioSum += logpOld - logp
		m.AbsLogRatioSum += math.Abs(logp - logpOld)
	}
	if math.IsNaN(res.Loss) || math.IsInf(res.Loss, 0) {
		return Result{}, fmt.Errorf("grpo: loss %v not finite", res.Loss)
	}
	return res, nil
}

// distill.go: on-policy distillation as a per-token advantage (Agarwal et al. 2024, "On-Policy Distillation
// of Language Models: Learning from Self-Generated Mistakes", arXiv:2306.13649; Thinking Machines 2025,
// "On-Policy Distillation", whose Tinker recipe uses exactly this form; multi-teacher on-policy distillation
// routes each prompt to the teacher of its domain, as DeepSeek-V3.2 §3 merges its specialists).
//
// The student π_θ samples y ~ π_old (= π_θ at sampling) and minimises the per-token reverse KL to the
// teacher π_T:
//
//	KL_t = E_{y_t ~ π_θ}[ ln π_θ(y_t) − ln π_T(y_t) ]
//	∇KL_t = E[ (ln π_θ(y_t) − ln π_T(y_t)) · ∇ln π_θ(y_t) ]        (score function; E[∇ln π_θ] = 0)
//
// so the sampled-token estimator k1 = ℓ_old − ℓ_T, negated and scaled, is a per-token advantage
//
//	Â_t^distill = −λ · (ℓ_old,t − ℓ_T,t)                              (DistillAdvantages)
//
// trained through the same clipped importance-weighted surrogate as GRPO (Loss with Batch.TokenAdv): at
// ρ = 1 the loss gradient is ∂L/∂ℓ_t = −w_t·Â_t = w_t·λ·(ℓ_old,t − ℓ_T,t), the aggregated reverse-KL
// gradient. With the verifier's reward mixed in (reward weight α), token t of sequence i is trained with
// α·(R_i − mean R) + Â_t^distill. No discounting: each token's advantage is its own KL term, as in Tinker.

package grpo

import (
	"fmt"
	"math"
)

// DistillAdvantages returns Â_t = −coef·(logpOld_t − logpTeacher_t) for every loss token of l ([T]; 0 at
// tokens with LossMask 0, which are not read). Errors: shapes, a non-finite log-probability at a loss token,
// a coefficient that is not finite and ≥ 0.
func DistillAdvantages(l Layout, logpOld, logpTeacher []float64, coef float64) ([]float64, error) {
	if err := l.validate(); err != nil {
		return nil, err
	}
	if !(coef >= 0) || math.IsInf(coef, 1) {
		return nil, fmt.Errorf("grpo: distillation coefficient %v: want a finite value ≥ 0", coef)
	}
	if err := l.checkTokens("logp_old", logpOld); err != nil {
		return nil, err
	}
	if err := l.checkTokens("logp_teacher", logpTeacher); err != nil {
		return nil, err
	}
	adv := make([]float64, len(l.Seq))
	for t := range l.Seq {
		if l.LossMask[t] == 1 {
			adv[t] = -coef * (logpOld[t] - logpTeacher[t])
		}
	}
	return adv, nil
}

// ReverseKL is the sampled-token estimate of the reverse KL to the teacher: Sum = Σ_t (ℓ_old,t − ℓ_T,t)
// over the loss tokens, Tokens their number; Sum/Tokens is the per-token KL(π_old ‖ π_T) estimate
// (distill/<env>/kl).
type ReverseKL struct {
	Sum    float64
	Tokens int
}

// Mean is Sum/Tokens (0 without tokens).
func (k ReverseKL) Mean() float64 {
	if k.Tokens == 0 {
		return 0
	}
	return k.Sum / float64(k.Tokens)
}

// SampledReverseKL adds up ℓ_old − ℓ_T over the loss tokens of l.
func SampledReverseKL(l Layout, logpOld, logpTeacher []float64) (ReverseKL, error) {
	if err := l.validate(); err != nil {
		return ReverseKL{}, err
	}
	if err := l.checkTokens("logp_old", logpOld); err != nil {
		return ReverseKL{}, err
	}
	if err := l.checkTokens("logp_teacher", logpTeacher); err != nil {
		return ReverseKL{}, err
	}
	var k ReverseKL
	for t := range l.Seq {
		if l.LossMask[t] == 1 {
			k.Sum += logpOld[t] - logpTeacher[t]
			k.Tokens++
		}
	}
	return k, nil
}

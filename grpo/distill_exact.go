// distill_exact.go: the exact reverse KL to the teacher over the kept set, the alternative to the
// sampled-token estimator of distill.go. Generalized knowledge distillation (Agarwal et al. 2024,
// arXiv:2306.13649, §3 and Eq. 2) trains on the student's own samples with the full token-level divergence
// D(p‖q) = Σ_v p_v ln(p_v/q_v) at every position instead of a one-sample estimate of it. DeepSeek-V3.2's
// Keep Sampling Mask (dsv32-spec.md §3.2) makes the sampler's distribution at token t the renormalised top-p
// kept set K_t, and the learner's π_θ is renormalised over the same K_t; the divergence is taken there:
//
//	p = softmax over K_t of the student's scaled logits z (z = logits / τ, τ the sampling temperature)
//	q = the teacher's distribution (temperature 1) renormalised over K_t
//	KL_t = Σ_{v∈K_t} p_v (ln p_v − ln q_v)
//	∂KL_t/∂z_v = p_v (ln p_v − ln q_v − KL_t)   for v ∈ K_t, 0 elsewhere
//
// (∂ln p_u/∂z_v = δ_uv − p_v, so ∂KL/∂z_v = Σ_u p_u(δ_uv − p_v)(ln p_u − ln q_u + 1) = p_v(d_v − KL_t) with
// d = ln p − ln q.) When Keep Sampling Mask is off or top_p = 1 the set is the whole vocabulary and KL_t is
// the full reverse KL(π_θ ‖ π_T) at the position. With a smaller kept set it differs from what the sampled
// estimator of distill.go estimates, E_{y~p}[ln p(y) − ln π_T(y)] with the teacher over the whole
// vocabulary, by −ln π_T(K_t) ≥ 0: the exact term measures only how the student's kept mass is distributed,
// not how much mass the teacher puts outside the kept set.
//
// It is a loss term on the learner's logits, not an advantage: the learner adds λ·Σ_t w_t·KL_t with w_t
// the GRPO loss's token aggregation weights (agg.go: per-sequence token mean by default), so it weighs
// tokens exactly as the sampled-token advantage's gradient does, and model's policy head calls ExactKL per
// loss position (model.KeptKL).

package grpo

import (
	"fmt"
	"math"
)

// ExactKL returns KL_t = Σ_v p_v (ln p_v − ln q_v) over one position's set (the kept set, or the whole
// vocabulary) and writes ∂KL_t/∂z into dz. z [|K|] are the student's scaled logits over the set, logq [|K|]
// the teacher's log-probabilities of the same ids, renormalised here over the set (log-probabilities over
// the whole vocabulary give the same result as ones already renormalised). Errors: lengths, an empty set, a
// non-finite value.
func ExactKL(z, logq, dz []float64) (float64, error) {
	n := len(z)
	if n == 0 || len(logq) != n || len(dz) != n {
		return 0, fmt.Errorf("grpo: exact KL: %d logits, %d teacher log-probabilities, %d gradients: want the same number > 0", n, len(logq), len(dz))
	}
	zMax, qMax := math.Inf(-1), math.Inf(-1)
	for i := range n {
		if math.IsNaN(z[i]) || math.IsInf(z[i], 0) {
			return 0, fmt.Errorf("grpo: exact KL: logit %d is %v", i, z[i])
		}
		if math.IsNaN(logq[i]) || math.IsInf(logq[i], 0) {
			return 0, fmt.Errorf("grpo: exact KL: teacher log-probability %d is %v, want a finite value", i, logq[i])
		}
		zMax, qMax = math.Max(zMax, z[i]), math.Max(qMax, logq[i])
	}
	// the two log-partition functions over the set; dz holds exp(z_v − max z) until the gradient
	var zSum, qSum float64
	for i := range n {
		dz[i] = math.Exp(z[i] - zMax)
		zSum += dz[i]
		qSum += math.Exp(logq[i] - qMax)
	}
	zLSE, qLSE := zMax+math.Log(zSum), qMax+math.Log(qSum)
	// KL_t = Σ p_v d_v with d_v = ln p_v − ln q_v, then ∂KL_t/∂z_v = p_v (d_v − KL_t)
	var kl float64
	for i := range n {
		dz[i] /= zSum // p_v
		kl += dz[i] * ((z[i] - zLSE) - (logq[i] - qLSE))
	}
	for i := range n {
		dz[i] *= (z[i] - zLSE) - (logq[i] - qLSE) - kl
	}
	return kl, nil
}

// Per-token KL estimators between the current policy π_θ and the frozen
// reference π_ref at the sampled token, each with its derivative with respect to
// ℓ = ln π_θ (π_old and π_ref are constants). With d = ℓ − ℓ_ref, u = π_ref/π_θ
// = e^{−d} and ρ = π_θ/π_old = e^{ℓ−ℓ_old}:
//
//	k1       = d                              ∂/∂ℓ = 1
//	k2       = ½·d²                           ∂/∂ℓ = d
//	k3       = u − ln u − 1 = e^{−d} + d − 1  ∂/∂ℓ = 1 − u
//	unbiased = ρ·(u − ln u − 1)    (Eq. 7)    ∂/∂ℓ = ρ·k3 + ρ·(1 − u) = ρ·(−ln u) = ρ·d
//
// In the last line ρ depends on ℓ (∂ρ/∂ℓ = ρ), and the product rule makes the
// u-terms cancel, leaving the spec's ρ·(ℓ − ℓ_ref) — bounded where k3's 1 − u
// runs to −∞ for π_θ ≪ π_ref. Because tokens are drawn from π_old,
// E_{π_old}[ρ·k3] = E_{π_θ}[k3] = KL(π_θ‖π_ref): the importance weight makes both
// the estimate and its gradient unbiased (kl_test.go checks this exactly over a
// small vocabulary). k1, k2, k3 are the verl names kl, mse, low_var_kl, without
// verl's ±10 clamp. The KL enters the loss as β·D̂ (DeepSeek), never the reward.

package grpo

import (
	"fmt"
	"math"
)

// KLKind names a KL estimator.
type KLKind string

const (
	KLNone     KLKind = "none"     // no KL term
	KLK1       KLKind = "k1"       // ℓ − ℓ_ref
	KLK2       KLKind = "k2"       // ½(ℓ − ℓ_ref)²
	KLK3       KLKind = "k3"       // u − ln u − 1
	KLUnbiased KLKind = "unbiased" // ρ·(u − ln u − 1), Eq. 7
)

// ParseKL checks a KL estimator name.
func ParseKL(s string) (KLKind, error) {
	switch k := KLKind(s); k {
	case KLNone, KLK1, KLK2, KLK3, KLUnbiased:
		return k, nil
	}
	return "", fmt.Errorf("grpo: kl %q: want one of none, k1, k2, k3, unbiased", s)
}

// Term returns the estimate D̂ at one token and ∂D̂/∂logp. logpOld is read only
// by KLUnbiased, logpRef by every kind but KLNone (which returns 0, 0). It
// panics on a kind ParseKL rejects.
func (k KLKind) Term(logp, logpOld, logpRef float64) (est, dLogp float64) {
	d := logp - logpRef
	switch k {
	case KLNone:
		return 0, 0
	case KLK1:
		return d, 1
	case KLK2:
		return 0.5 * d * d, d
	case KLK3:
		return k3(d), -math.Expm1(-d) // 1 − u
	case KLUnbiased:
		rho := math.Exp(logp - logpOld)
		return rho * k3(d), rho * d
	}
	panic(fmt.Sprintf("grpo: unknown KL estimator %q", string(k)))
}

// k3 is u − ln u − 1 = e^{−d} − 1 + d. For |d| < 0.01 the difference cancels
// almost every digit, so it sums the Taylor series d²/2 − d³/6 + … − d⁷/5040
// instead (truncation below 1e-16 relative there); above, expm1(−d) + d loses at
// most ~1e-14 relative.
func k3(d float64) float64 {
	if math.Abs(d) < 0.01 {
		// Horner form of Σ_{n=2..7} (−d)^n / n!
		return d * d * (1.0/2 - d*(1.0/6-d*(1.0/24-d*(1.0/120-d*(1.0/720-d/5040)))))
	}
	return math.Expm1(-d) + d
}

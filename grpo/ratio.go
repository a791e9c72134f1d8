// Importance ratios and the PPO clipped surrogate of GRPO (DeepSeek-V3.2 Eqs. 6
// and 8), with the asymmetric "clip-higher" bounds of DAPO (ε_low, ε_high) and the
// optional dual clip of verl (clip_ratio_c, arXiv:1912.09729). Per token, with
// ρ = exp(ℓ − ℓ_old) and advantage A, the loss to minimise is
//
//	s = max(−A·ρ, −A·clip(ρ, 1−ε_low, 1+ε_high))          (= −min(ρA, clip(ρ)A))
//	s = min(s, −A·c)   when A < 0 and the dual clip c > 1 is on
//
// which is piecewise linear in ρ:
//
//	A > 0: ρ > 1+ε_high → s = −A(1+ε_high), ∂s/∂ℓ = 0      (clipped high)
//	       otherwise    → s = −Aρ,          ∂s/∂ℓ = −Aρ
//	A < 0: ρ < 1−ε_low  → s = −A(1−ε_low),  ∂s/∂ℓ = 0      (clipped low)
//	       ρ > c        → s = −A·c,          ∂s/∂ℓ = 0      (dual clip)
//	       otherwise    → s = −Aρ,          ∂s/∂ℓ = −Aρ
//	A = 0:                s = 0,             ∂s/∂ℓ = 0
//
// At a kink (ρ exactly on a bound) the unclipped branch is taken, as verl's
// strict comparisons count it.

package grpo

import (
	"fmt"
	"math"
)

// Clip holds the trust-region bounds of the surrogate.
type Clip struct {
	EpsLow  float64 // lower bound 1 − EpsLow on ρ for A < 0; >= 0
	EpsHigh float64 // upper bound 1 + EpsHigh on ρ for A > 0; >= 0
	// DualClipC caps the loss of an A < 0 token at −A·DualClipC; 0 disables,
	// otherwise it must be > 1 (verl clip_ratio_c, default 3).
	DualClipC float64
}

// Validate checks the bounds.
func (c Clip) Validate() error {
	if !(c.EpsLow >= 0) || math.IsInf(c.EpsLow, 0) {
		return fmt.Errorf("grpo: eps_low %v: must be finite and >= 0", c.EpsLow)
	}
	if !(c.EpsHigh >= 0) || math.IsInf(c.EpsHigh, 0) {
		return fmt.Errorf("grpo: eps_high %v: must be finite and >= 0", c.EpsHigh)
	}
	if c.DualClipC != 0 && !(c.DualClipC > 1) || math.IsInf(c.DualClipC, 0) {
		return fmt.Errorf("grpo: dual_clip_c %v: must be 0 (off) or a finite value > 1", c.DualClipC)
	}
	return nil
}

// ClipState says which branch of the surrogate is active for a token.
type ClipState uint8

const (
	Unclipped   ClipState = iota // s = −Aρ, gradient flows
	ClippedHigh                  // A > 0 and ρ > 1+ε_high
	ClippedLow                   // A < 0 and ρ < 1−ε_low
	DualClipped                  // A < 0 and ρ > c
)

// Ratio returns the importance ratio ρ = π_θ/π_old = exp(logp − logpOld) (Eq. 6).
func Ratio(logp, logpOld float64) float64 { return math.Exp(logp - logpOld) }

// Surrogate returns the clipped surrogate loss s of one token (the negated
// objective term, to minimise), its derivative with respect to logp, the ratio
// ρ and the active branch. logp is ln π_θ, logpOld ln π_old, adv the advantage.
func Surrogate(logp, logpOld, adv float64, c Clip) (s, dLogp, rho float64, state ClipState) {
	rho = Ratio(logp, logpOld)
	switch {
	case adv > 0 && rho > 1+c.EpsHigh:
		return -adv * (1 + c.EpsHigh), 0, rho, ClippedHigh
	case adv < 0 && rho < 1-c.EpsLow:
		return -adv * (1 - c.EpsLow), 0, rho, ClippedLow
	case adv < 0 && c.DualClipC > 0 && rho > c.DualClipC:
		return -adv * c.DualClipC, 0, rho, DualClipped
	case adv == 0:
		return 0, 0, rho, Unclipped
	}
	return -adv * rho, -adv * rho, rho, Unclipped
}

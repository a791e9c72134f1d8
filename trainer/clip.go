// Global-norm gradient clipping in the manner of torch.nn.utils.clip_grad_norm_:
// the L2 norm over the gradients of every non-frozen parameter group, summed in
// float64 sequentially in group then element order (deterministic), and, when it
// exceeds maxNorm, every gradient scaled by maxNorm/(norm+1e-6). A non-finite
// norm leaves the gradients untouched: the caller skips such a step (see
// AllFinite) instead of applying it.

package trainer

import "math"

// clipEps is added to the norm in the clip coefficient, as PyTorch does, so
// that the clipped norm lands just under maxNorm.
const clipEps = 1e-6

// GlobalNorm returns the L2 norm of the gradients of all non-frozen groups,
// accumulated in float64 in a fixed order.
func GlobalNorm(groups []ParamGroup) float64 {
	var sum float64
	for gi := range groups {
		if groups[gi].Frozen {
			continue
		}
		for _, g := range groups[gi].Grad {
			x := float64(g)
			sum += x * x
		}
	}
	return math.Sqrt(sum)
}

// ClipGrads computes the global norm and, when it is finite and above maxNorm
// (maxNorm > 0), scales the gradients of the non-frozen groups by
// maxNorm/(norm+1e-6). It returns the norm before clipping and whether the
// gradients were scaled. maxNorm ≤ 0 disables clipping.
func ClipGrads(groups []ParamGroup, maxNorm float64) (norm float64, clipped bool) {
	norm = GlobalNorm(groups)
	if maxNorm <= 0 || math.IsNaN(norm) || math.IsInf(norm, 0) || norm <= maxNorm {
		return norm, false
	}
	scale := maxNorm / (norm + clipEps)
	for gi := range groups {
		if groups[gi].Frozen {
			continue
		}
		grad := groups[gi].Grad
		for i, g := range grad {
			grad[i] = float32(float64(g) * scale)
		}
	}
	return norm, true
}

// AllFinite reports whether every gradient of every non-frozen group is finite
// (neither NaN nor ±Inf).
func AllFinite(groups []ParamGroup) bool {
	for gi := range groups {
		if groups[gi].Frozen {
			continue
		}
		for _, g := range groups[gi].Grad {
			// g−g is NaN exactly when g is NaN or ±Inf.
			if g-g != 0 {
				return false
			}
		}
	}
	return true
}

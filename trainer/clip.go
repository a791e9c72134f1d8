// Global-norm gradient clipping in the manner of torch.nn.utils.clip_grad_norm_:
// the L2 norm over the gradients of every non-frozen parameter group, summed in
// float64 (deterministic: fixed chunks of normChunk elements per group, each
// summed with four interleaved accumulators, the chunk sums added in group then
// chunk order, whatever the number of kernel workers that compute them), and,
// when it exceeds maxNorm, every gradient scaled by maxNorm/(norm+1e-6). A
// non-finite norm leaves the gradients untouched: the caller skips such a step
// (see AllFinite) instead of applying it.

package trainer

import (
	"math"

	"github.com/sparrow-rl/sparrow/internal/kernels"
)

// clipEps is added to the norm in the clip coefficient, as PyTorch does, so
// that the clipped norm lands just under maxNorm.
const clipEps = 1e-6

// normChunk is the number of gradient elements of one work item of GlobalNorm
// and ClipGrads.
const normChunk = 1 << 14

// gradChunk is one work item: elements [lo, hi) of group g's gradient.
type gradChunk struct{ g, lo, hi int }

// gradChunks lists the chunks of the non-frozen groups in group then element
// order.
func gradChunks(groups []ParamGroup) []gradChunk {
	var cs []gradChunk
	for gi := range groups {
		if groups[gi].Frozen {
			continue
		}
		n := len(groups[gi].Grad)
		for lo := 0; lo < n; lo += normChunk {
			cs = append(cs, gradChunk{gi, lo, min(lo+normChunk, n)})
		}
	}
	return cs
}

// GlobalNorm returns the L2 norm of the gradients of all non-frozen groups,
// accumulated in float64 in a fixed order.
func GlobalNorm(groups []ParamGroup) float64 {
	cs := gradChunks(groups)
	part := make([]float64, len(cs))
	kernels.For(len(cs), 2*normChunk, func(c int) {
		part[c] = sumSquares(groups[cs[c].g].Grad[cs[c].lo:cs[c].hi])
	})
	var sum float64
	for _, p := range part {
		sum += p
	}
	return math.Sqrt(sum)
}

// sumSquares returns Σ x² in float64, with four accumulators over the
// elements i mod 4, added as (s0+s1)+(s2+s3).
func sumSquares(x []float32) float64 {
	var s0, s1, s2, s3 float64
	n4 := len(x) &^ 3
	for i := 0; i < n4; i += 4 {
		a, b, c, d := float64(x[i]), float64(x[i+1]), float64(x[i+2]), float64(x[i+3])
		s0 += a * a
		s1 += b * b
		s2 += c * c
		s3 += d * d
	}
	for _, v := range x[n4:] {
		s0 += float64(v) * float64(v)
	}
	return (s0 + s1) + (s2 + s3)
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
	cs := gradChunks(groups)
	kernels.For(len(cs), 2*normChunk, func(c int) {
		grad := groups[cs[c].g].Grad[cs[c].lo:cs[c].hi]
		for i, g := range grad {
			grad[i] = float32(float64(g) * scale)
		}
	})
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

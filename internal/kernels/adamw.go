// adamw.go: the element update of AdamW (Loshchilov & Hutter, decoupled weight decay; PyTorch's torch.optim.AdamW
// with bias correction), float32 state updated in float64 arithmetic:
//
//	m ← β1·m + (1−β1)·g,  v ← β2·v + (1−β2)·g²
//	θ ← θ·(1 − lr·λ) − (lr/(1−β1^t))·m / (sqrt(v)/sqrt(1−β2^t) + ε)
//
// On amd64 with AVX2 the float32 tensors run the assembly of package simd four elements at a time, with the
// same operations in the same order (no fused multiply-add), so the bits are those of the Go loop.

package kernels

import (
	"math"
	"unsafe"

	"github.com/sparrow-rl/sparrow/internal/kernels/simd"
)

// AdamWCoef are the constants of one tensor's update at one step.
type AdamWCoef struct {
	B1, B2, Eps float64
	BC2Sqrt     float64 // sqrt(1 − β2^t)
	StepSize    float64 // lr/(1 − β1^t)
	Decay       float64 // 1 − lr·λ (1 without weight decay)
}

// adamwASM selects the assembly; tests switch it off to compare against the Go loop.
var adamwASM = simd.Available

// AdamW applies one update to val, m and v from grad (all of val's length).
func AdamW(c AdamWCoef, val, grad, m, v []float32) {
	n := len(val)
	if n == 0 {
		return
	}
	_, _, _ = grad[n-1], m[n-1], v[n-1]
	if n4 := n &^ 3; adamwASM && n4 > 0 {
		k := [8]float64{c.B1, 1 - c.B1, c.B2, 1 - c.B2, c.BC2Sqrt, c.Eps, c.StepSize, c.Decay}
		simd.AdamW(unsafe.SliceData(val), unsafe.SliceData(grad), unsafe.SliceData(m), unsafe.SliceData(v), n4, &k)
		val, grad, m, v = val[n4:], grad[n4:n], m[n4:n], v[n4:n]
	}
	adamwGo(c, val, grad, m, v)
}

// adamwGo is the Go loop of AdamW.
func adamwGo(c AdamWCoef, val, grad, m, v []float32) {
	if len(val) == 0 {
		return
	}
	_, _, _ = grad[len(val)-1], m[len(val)-1], v[len(val)-1]
	b1, b2 := c.B1, c.B2
	for i := range val {
		gr := float64(grad[i])
		mi := float32(b1*float64(m[i]) + (1-b1)*gr)
		vi := float32(b2*float64(v[i]) + (1-b2)*gr*gr)
		m[i], v[i] = mi, vi
		p := float64(val[i]) * c.Decay
		denom := math.Sqrt(float64(vi))/c.BC2Sqrt + c.Eps
		val[i] = float32(p - c.StepSize*float64(mi)/denom)
	}
}

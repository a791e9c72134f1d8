// softmax.go: a softmax row for the hot loops of sparse attention. The float32 version exponentiates with the
// AVX2 polynomial of package simd (relative error about 2e-7, the precision of float32 itself), and takes the
// row maximum and the normalisation there too; float64 and
// CPUs without AVX2 use SoftmaxRow.

package kernels

import (
	"math"
	"unsafe"

	"github.com/sparrow-rl/sparrow/internal/kernels/simd"
)

// SoftmaxRowFast replaces x with softmax(x), like SoftmaxRow (−Inf entries get 0; an all-masked row becomes
// zeros), in float32 arithmetic with a vectorised exp when available.
func SoftmaxRowFast[T Float](x []T) {
	xf, ok := any(x).([]float32)
	if !ok || !gatherASM || len(x) < 8 {
		SoftmaxRow(x)
		return
	}
	n8 := len(xf) &^ 7
	m := simd.Max(unsafe.SliceData(xf), n8)
	for _, v := range xf[n8:] {
		m = max(m, v)
	}
	if math.IsInf(float64(m), -1) {
		clear(xf)
		return
	}
	s := simd.ExpSub(unsafe.SliceData(xf), n8, m)
	for i := n8; i < len(xf); i++ {
		e := float32(math.Exp(float64(xf[i] - m)))
		xf[i] = e
		s += e
	}
	inv := 1 / s
	simd.Scale(unsafe.SliceData(xf), n8, inv)
	for i := n8; i < len(xf); i++ {
		xf[i] *= inv
	}
}

// SoftmaxGradRow turns one row's ∂L/∂P into scale·∂L/∂S in place, for P = softmax(S) over the row:
// d[j] = (p[j]·(d[j] − Σ p⊙d))·scale, the sum as Dot takes it (float32 rows of 8 or more in simd.SoftmaxGrad,
// the same bits as the Go loop).
func SoftmaxGradRow[T Float](p, d []T, scale T) {
	d = d[:len(p)]
	s := Dot(p, d)
	if pf, ok := any(p).([]float32); ok && gatherASM && len(p) >= 8 {
		n8 := len(pf) &^ 7
		simd.SoftmaxGrad(unsafe.SliceData(any(d).([]float32)), unsafe.SliceData(pf), n8, float32(s), float32(scale))
		p, d = p[n8:], d[n8:]
	}
	for j := range p {
		d[j] = p[j] * (d[j] - s) * scale
	}
}

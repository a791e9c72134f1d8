// activation.go: softmax rows, SiLU and the SwiGLU gate h = SiLU(a)⊙u (Shazeer 2020), with their derivatives.
// The SwiGLU kernels take σ(a) from SigmoidVec, which exponentiates float32 rows with the AVX2 polynomial of
// package simd (relative error about 2e-7, the precision of float32 itself); float64 (the gradient checks)
// and CPUs without AVX2 use math.Exp.

package kernels

import (
	"math"
	"unsafe"

	"github.com/sparrow-rl/sparrow/internal/kernels/simd"
)

// Sigmoid is 1/(1+e^−x).
func Sigmoid[T Float](x T) T { return T(1 / (1 + math.Exp(-float64(x)))) }

// SigmoidVec sets s[i] = σ(a[i]) = 1/(1+e^−a[i]) for i < len(a); s and a may be the same slice. The float32
// assembly clamps −a at 87 (σ(a) for a < −87 is 1.6e-38 instead of a smaller subnormal) and turns a NaN into
// 0 or 1; SwiGLU multiplies by a, which carries the NaN on.
func SigmoidVec[T Float](s, a []T) {
	s = s[:len(a)]
	sf, ok := any(s).([]float32)
	if !ok || !gatherASM || len(a) < 8 {
		for i, x := range a {
			s[i] = Sigmoid(x)
		}
		return
	}
	af := any(a).([]float32)
	n8 := len(af) &^ 7
	simd.Sigmoid(unsafe.SliceData(sf), unsafe.SliceData(af), n8)
	for i := n8; i < len(af); i++ {
		sf[i] = Sigmoid(af[i])
	}
}

// SwiGLU computes h = SiLU(a)⊙u elementwise (h must not alias a or u). float32 rows of 8 or more run in one
// pass of the assembly (simd.SwiGLU: SigmoidVec's σ and this loop's products, the same bits).
func SwiGLU[T Float](h, a, u []T) {
	u = u[:len(a)]
	h = h[:len(a)]
	if af, ok := any(a).([]float32); ok && gatherASM && len(a) >= 8 {
		n8 := len(af) &^ 7
		simd.SwiGLU(unsafe.SliceData(any(h).([]float32)), unsafe.SliceData(af), unsafe.SliceData(any(u).([]float32)), n8)
		a, h, u = a[n8:], h[n8:], u[n8:]
	}
	SigmoidVec(h, a)
	for i, x := range a {
		h[i] = x * h[i] * u[i]
	}
}

// SwiGLUBackward computes da = dh⊙u⊙SiLU'(a) and du = dh⊙SiLU(a) (overwriting da, du; neither may alias the
// inputs), with SiLU'(a) = σ(a)(1 + a(1 − σ(a))). float32 rows of 8 or more run in one pass of the assembly
// (simd.SwiGLUBackward, the same bits as this loop after SigmoidVec).
func SwiGLUBackward[T Float](da, du, dh, a, u []T) {
	da, du, dh, u = da[:len(a)], du[:len(a)], dh[:len(a)], u[:len(a)]
	if af, ok := any(a).([]float32); ok && gatherASM && len(a) >= 8 {
		n8 := len(af) &^ 7
		simd.SwiGLUBackward(unsafe.SliceData(any(da).([]float32)), unsafe.SliceData(any(du).([]float32)),
			unsafe.SliceData(any(dh).([]float32)), unsafe.SliceData(af), unsafe.SliceData(any(u).([]float32)), n8)
		da, du, dh, a, u = da[n8:], du[n8:], dh[n8:], a[n8:], u[n8:]
	}
	SigmoidVec(da, a)
	for i, x := range a {
		s := da[i]
		du[i] = dh[i] * x * s
		da[i] = dh[i] * u[i] * s * (1 + x*(1-s))
	}
}

// SoftmaxRow replaces x with softmax(x) over its entries; entries equal to −Inf get probability 0.
// It returns log Σ exp(x) (the log-partition), −Inf for an all-masked row (which is then set to zeros).
func SoftmaxRow[T Float](x []T) float64 {
	m := math.Inf(-1)
	for _, v := range x {
		if float64(v) > m {
			m = float64(v)
		}
	}
	if math.IsInf(m, -1) {
		clear(x)
		return m
	}
	var s float64
	for i, v := range x {
		e := math.Exp(float64(v) - m)
		x[i] = T(e)
		s += e
	}
	inv := T(1 / s)
	for i := range x {
		x[i] *= inv
	}
	return m + math.Log(s)
}

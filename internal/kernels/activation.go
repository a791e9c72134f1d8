// activation.go: softmax rows, SiLU and the SwiGLU gate h = SiLU(a)⊙u (Shazeer 2020), with their derivatives.

package kernels

import "math"

// Sigmoid is 1/(1+e^−x).
func Sigmoid[T Float](x T) T { return T(1 / (1 + math.Exp(-float64(x)))) }

// SwiGLU computes h = SiLU(a)⊙u elementwise.
func SwiGLU[T Float](h, a, u []T) {
	u = u[:len(a)]
	h = h[:len(a)]
	for i, x := range a {
		h[i] = x * Sigmoid(x) * u[i]
	}
}

// SwiGLUBackward computes da = dh⊙u⊙SiLU'(a) and du = dh⊙SiLU(a) (overwriting da, du),
// with SiLU'(a) = σ(a)(1 + a(1 − σ(a))).
func SwiGLUBackward[T Float](da, du, dh, a, u []T) {
	for i, x := range a {
		s := Sigmoid(x)
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

package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestDotAndSoftmaxGradBits: Dot and SoftmaxGradRow on float32 (the assembly: four accumulators as SSE lanes,
// the 8-wide elementwise pass) give the bits of their Go loops, for lengths around the 4- and 8-wide steps.
func TestDotAndSoftmaxGradBits(t *testing.T) {
	if !gatherASM {
		t.Skip("no AVX2/FMA: the Go loops are the reference")
	}
	defer func(prev bool) { gatherASM = prev }(gatherASM)
	rng := rand.New(rand.NewPCG(31, 32))
	for _, n := range []int{0, 1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 64, 255, 256} {
		p, d := make([]float32, n), make([]float32, n)
		for i := range p {
			p[i] = float32(rng.Float64())
			d[i] = float32(rng.NormFloat64() * math.Pow(10, float64(rng.IntN(5)-2)))
		}
		gatherASM = false
		dotRef := Dot(p, d)
		gradRef := append([]float32(nil), d...)
		SoftmaxGradRow(p, gradRef, 0.125)
		gatherASM = true
		if got := Dot(p, d); math.Float32bits(got) != math.Float32bits(dotRef) {
			t.Fatalf("n=%d: Dot = %v, Go loop %v", n, got, dotRef)
		}
		grad := append([]float32(nil), d...)
		SoftmaxGradRow(p, grad, 0.125)
		same(t, "SoftmaxGradRow", grad, gradRef)
	}
}

// TestSoftmaxGradRowFiniteDifference: with P = softmax(S) and L = Σ c⊙P, SoftmaxGradRow(P, c, τ) is τ·∂L/∂S
// (float64 central differences); and one row by hand: P = [½, ½], c = [1, 0] gives ∂L/∂S = [¼, −¼].
func TestSoftmaxGradRowFiniteDifference(t *testing.T) {
	p, d := []float64{0.5, 0.5}, []float64{1, 0}
	SoftmaxGradRow(p, d, 1)
	if d[0] != 0.25 || d[1] != -0.25 {
		t.Fatalf("by hand: %v, want [0.25 -0.25]", d)
	}
	rng := rand.New(rand.NewPCG(33, 34))
	const n, tau, h = 11, 0.5, 1e-6
	S, c := make([]float64, n), make([]float64, n)
	for i := range S {
		S[i], c[i] = rng.NormFloat64(), rng.NormFloat64()
	}
	loss := func() float64 {
		P := append([]float64(nil), S...)
		SoftmaxRow(P)
		var l float64
		for i := range P {
			l += c[i] * P[i]
		}
		return l
	}
	P := append([]float64(nil), S...)
	SoftmaxRow(P)
	g := append([]float64(nil), c...)
	SoftmaxGradRow(P, g, tau)
	for i := range S {
		old := S[i]
		S[i] = old + h
		lp := loss()
		S[i] = old - h
		lm := loss()
		S[i] = old
		if fd := tau * (lp - lm) / (2 * h); math.Abs(fd-g[i]) > 1e-8 {
			t.Fatalf("dS[%d] = %v, finite difference %v", i, g[i], fd)
		}
	}
}

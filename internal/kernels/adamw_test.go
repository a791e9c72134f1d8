// adamw_test.go: the AdamW element update against hand-computed values, and the AVX2 assembly against the Go
// loop bit for bit (lengths around the 4-wide blocks, zero, tiny, huge and non-finite gradients, weight decay
// on and off, early and late bias corrections).

package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestAdamWGolden(t *testing.T) {
	// t = 1, lr = 0.1, β1 = 0.9, β2 = 0.99, λ = 0.5, ε = 1e-8, θ = 2, g = 0.5, m = v = 0:
	// m = 0.05, v = 0.0025, bc2 = sqrt(0.01) = 0.1, step = 0.1/0.1 = 1, decay = 1 − 0.05 = 0.95
	// θ = 2·0.95 − 1·0.05/(sqrt(0.0025)/0.1 + 1e-8) = 1.9 − 0.05/0.50000001 = 1.80000000200
	c := AdamWCoef{B1: 0.9, B2: 0.99, Eps: 1e-8, BC2Sqrt: math.Sqrt(1 - 0.99), StepSize: 0.1 / (1 - 0.9), Decay: 1 - 0.1*0.5}
	for _, asm := range []bool{false, true} {
		if asm && !adamwASM {
			continue
		}
		prev := adamwASM
		adamwASM = asm
		val, grad, m, v := []float32{2, 2, 2, 2, 2}, []float32{0.5, 0.5, 0.5, 0.5, 0.5}, make([]float32, 5), make([]float32, 5)
		AdamW(c, val, grad, m, v)
		adamwASM = prev
		for i := range val {
			if math.Abs(float64(val[i])-1.800000002) > 1e-6 || m[i] != float32(0.05) || v[i] != float32(0.0025) {
				t.Fatalf("asm=%v element %d: θ %v m %v v %v, want 1.8 0.05 0.0025", asm, i, val[i], m[i], v[i])
			}
		}
	}
}

func TestAdamWASMAgainstGo(t *testing.T) {
	if !adamwASM {
		t.Skip("no AVX2: the assembly is not used on this CPU")
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for _, c := range []struct {
		name string
		n    int
		coef AdamWCoef
	}{
		{"first step with decay", 37, AdamWCoef{B1: 0.9, B2: 0.95, Eps: 1e-8, BC2Sqrt: math.Sqrt(1 - 0.95), StepSize: 3e-3 / (1 - 0.9), Decay: 1 - 3e-3*0.1}},
		{"late step no decay", 64, AdamWCoef{B1: 0.9, B2: 0.999, Eps: 1e-6, BC2Sqrt: math.Sqrt(1 - math.Pow(0.999, 500)), StepSize: 1e-4 / (1 - math.Pow(0.9, 500)), Decay: 1}},
		{"shorter than a block", 3, AdamWCoef{B1: 0.5, B2: 0.5, Eps: 1e-3, BC2Sqrt: 0.5, StepSize: 0.2, Decay: 0.9}},
		{"large", 1 << 12, AdamWCoef{B1: 0.8, B2: 0.9, Eps: 0, BC2Sqrt: 0.3, StepSize: 1, Decay: 0.99}},
	} {
		t.Run(c.name, func(t *testing.T) {
			val, grad, m, v := make([]float32, c.n), make([]float32, c.n), make([]float32, c.n), make([]float32, c.n)
			for i := range val {
				val[i] = float32(rng.NormFloat64())
				grad[i] = float32(rng.NormFloat64() * math.Pow(10, float64(rng.IntN(12)-8)))
				m[i] = float32(rng.NormFloat64() * 1e-3)
				v[i] = float32(math.Abs(rng.NormFloat64()) * 1e-6)
			}
			special := []float32{0, -0, 1e-38, 1e38, float32(math.Inf(1)), float32(math.NaN())}
			for i := 0; i < len(special) && i < c.n; i++ {
				grad[(i*7)%c.n] = special[i]
			}
			wv, wg, wm, wvv := append([]float32(nil), val...), append([]float32(nil), grad...), append([]float32(nil), m...), append([]float32(nil), v...)
			adamwGo(c.coef, wv, wg, wm, wvv)
			AdamW(c.coef, val, grad, m, v)
			for i := range val {
				if math.Float32bits(val[i]) != math.Float32bits(wv[i]) || math.Float32bits(m[i]) != math.Float32bits(wm[i]) || math.Float32bits(v[i]) != math.Float32bits(wvv[i]) {
					t.Fatalf("element %d (g %g): asm θ %g m %g v %g, Go θ %g m %g v %g", i, grad[i], val[i], m[i], v[i], wv[i], wm[i], wvv[i])
				}
			}
		})
	}
}

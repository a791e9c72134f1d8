// relu_test.go: golden values of the ReLU·weight kernels of the indexer and the assembly against the Go loops.
package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestReluGolden: hand-computed values (float64, Go path).
func TestReluGolden(t *testing.T) {
	x := []float64{-1, 2, 0, 3}
	y := make([]float64, 4)
	ReluScale(y, x, 2) // (0, 4, 0, 6)
	ReluAxpy(y, x, 1)  // (0, 6, 0, 9)
	if want := []float64{0, 6, 0, 9}; !equalF64(y, want) {
		t.Fatalf("ReluScale+ReluAxpy = %v, want %v", y, want)
	}
	z := []float64{-1, 2, 0, 3}
	g := []float64{5, 1, 7, -2}
	s := ReluBackward(z, g, 0.5) // Σ g·relu(z) = 2 − 6 = −4; dz = (0, 0.5, 0, −1)
	if want := []float64{0, 0.5, 0, -1}; s != -4 || !equalF64(z, want) {
		t.Fatalf("ReluBackward = %v, %v; want -4, %v", s, z, want)
	}
}

func equalF64(a, b []float64) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return len(a) == len(b)
}

// TestReluASMAgainstGo: the float32 assembly against the Go loops, for lengths around the 8- and 32-wide
// steps (the tails run in Go), with exact zeros in the input.
func TestReluASMAgainstGo(t *testing.T) {
	if !gatherASM {
		t.Skip("no AVX2+FMA: the assembly is not used on this CPU")
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{1, 7, 8, 9, 31, 32, 33, 100, 257} {
		x, g, y0 := make([]float32, n), make([]float32, n), make([]float32, n)
		for i := range x {
			x[i], g[i], y0[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64()), float32(rng.NormFloat64())
			if i%5 == 0 {
				x[i] = 0
			}
		}
		run := func(asm bool) (ys, ya, z []float32, s float32) {
			gatherASM = asm
			defer func() { gatherASM = true }()
			ys, ya, z = make([]float32, n), append([]float32(nil), y0...), append([]float32(nil), x...)
			ReluScale(ys, x, 1.5)
			ReluAxpy(ya, x, -0.7)
			s = ReluBackward(z, g, 0.3)
			return
		}
		ys1, ya1, z1, s1 := run(true)
		ys0, ya0, z0, s0 := run(false)
		if math.Abs(float64(s1-s0)) > 1e-4*(1+math.Abs(float64(s0))) {
			t.Fatalf("n=%d ReluBackward sum: assembly %v, Go %v", n, s1, s0)
		}
		for name, p := range map[string][2][]float32{"ReluScale": {ys1, ys0}, "ReluAxpy": {ya1, ya0}, "ReluBackward": {z1, z0}} {
			for i := range p[0] {
				if math.Abs(float64(p[0][i]-p[1][i])) > 1e-5*(1+math.Abs(float64(p[1][i]))) {
					t.Fatalf("n=%d %s[%d]: assembly %v, Go %v", n, name, i, p[0][i], p[1][i])
				}
			}
		}
	}
}

// gather_shared_test.go: golden values of the shared-row kernels (every head reads the same gathered row), and
// the AVX2 assembly against the Go loops for head counts with and without a remainder past the blocks of 4.
package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestGatherSharedGolden: 2 heads over the rows (1,2) (3,4) (5,6), hand-computed (Go path).
func TestGatherSharedGolden(t *testing.T) {
	base := []float64{1, 2, 3, 4, 5, 6}
	idx := []int32{2, 0}
	x := []float64{1, -1, 0, 2} // head 0 (1,−1), head 1 (0,2)
	out := make([]float64, 2*3)
	GatherDotShared(out, 3, x, 2, base, 2, idx, 2, nil) // h0: 2·(5−6), 2·(1−2); h1: 2·12, 2·4
	if want := []float64{-2, -2, 0, 24, 8, 0}; !equal(out, want) {
		t.Fatalf("GatherDotShared = %v, want %v", out, want)
	}
	y := []float64{1, 1, 0, 0}
	a := []float64{1, 2, 0.5, -1}              // head 0: (1, 2), head 1: (0.5, −1)
	GatherAxpyShared(y, 2, a, 2, base, 2, idx) // h0: (1,1)+(5,6)+2·(1,2); h1: 0.5·(5,6) − (1,2)
	if want := []float64{8, 11, 1.5, 1}; !equal(y, want) {
		t.Fatalf("GatherAxpyShared = %v, want %v", y, want)
	}
	b := append([]float64(nil), base...)
	ScatterAxpyShared(b, 2, idx, a, 2, x, 2) // row 2 += 1·(1,−1) + 0.5·(0,2); row 0 += 2·(1,−1) − (0,2)
	if want := []float64{3, -2, 3, 4, 6, 6}; !equal(b, want) {
		t.Fatalf("ScatterAxpyShared = %v, want %v", b, want)
	}
}

func equal(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestGatherSharedASMAgainstGo: the float32 assembly against the Go loops (heads 4, 8 and 6 = a block of 4 plus
// 2 in Go; widths 16 and 160 in a wider stride; repeated indices in the scatter).
func TestGatherSharedASMAgainstGo(t *testing.T) {
	if !gatherASM {
		t.Skip("no AVX2+FMA: the assembly is not used on this CPU")
	}
	rng := rand.New(rand.NewPCG(7, 8))
	randv := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return v
	}
	for _, c := range []struct{ heads, n, stride, rows, m int }{{4, 16, 16, 5, 3}, {8, 160, 160, 300, 256}, {6, 32, 48, 20, 9}, {8, 128, 160, 40, 1}} {
		base := randv(c.rows * c.stride)
		x, a := randv(c.heads*c.n), randv(c.heads*(c.m+3))
		lda, ldo := c.m+3, c.m+1
		pf := randv(c.rows * c.stride) // prefetched only: must not change anything
		idx := make([]int32, c.m)
		for i := range idx {
			idx[i] = int32(rng.IntN(c.rows))
		}
		run := func(asm bool) (dot, y, sc []float32) {
			gatherASM = asm
			defer func() { gatherASM = true }()
			dot = make([]float32, c.heads*ldo)
			GatherDotShared(dot, ldo, x, c.heads, base, c.stride, idx, 0.5, pf)
			y = make([]float32, c.heads*c.n)
			for i := range y {
				y[i] = float32(i%7) - 3
			}
			GatherAxpyShared(y, c.heads, a, lda, base, c.stride, idx)
			sc = append([]float32(nil), base...)
			ScatterAxpyShared(sc, c.stride, idx, a, lda, x, c.heads)
			return
		}
		d1, y1, s1 := run(true)
		d0, y0, s0 := run(false)
		for _, p := range []struct {
			name string
			a, b []float32
		}{{"dot", d1, d0}, {"axpy", y1, y0}, {"scatter", s1, s0}} {
			for i := range p.a {
				if math.Abs(float64(p.a[i]-p.b[i])) > 1e-4*(1+math.Abs(float64(p.b[i]))) {
					t.Fatalf("heads %d n %d: %s[%d] assembly %v, Go %v", c.heads, c.n, p.name, i, p.a[i], p.b[i])
				}
			}
		}
	}
}

package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestGemmAgainstNaive checks every transpose combination, with and without row splitting, against a naive
// triple loop.
func TestGemmAgainstNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	saved := rowSplit
	defer func() { rowSplit = saved }()
	for _, split := range []bool{false, true} {
		rowSplit = split
		for _, tr := range [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}} {
			m, n, k := 130, 70, 300 // big enough to split
			a := make([]float64, m*k)
			b := make([]float64, k*n)
			for i := range a {
				a[i] = rng.NormFloat64()
			}
			for i := range b {
				b[i] = rng.NormFloat64()
			}
			c := make([]float64, m*n)
			for i := range c {
				c[i] = 1
			}
			lda, ldb := k, n
			if tr[0] {
				lda = m
			}
			if tr[1] {
				ldb = k
			}
			Gemm(tr[0], tr[1], m, n, k, 2, a, lda, b, ldb, 0.5, c, n)
			for i := 0; i < m; i++ {
				for j := 0; j < n; j++ {
					var s float64
					for p := 0; p < k; p++ {
						av := a[i*k+p]
						if tr[0] {
							av = a[p*m+i]
						}
						bv := b[p*n+j]
						if tr[1] {
							bv = b[j*k+p]
						}
						s += av * bv
					}
					if want := 2*s + 0.5; math.Abs(c[i*n+j]-want) > 1e-9 {
						t.Fatalf("split=%v trans=%v: c[%d,%d] = %v, want %v", split, tr, i, j, c[i*n+j], want)
					}
				}
			}
		}
	}
}

// TestDotGolden: Dot on hand-computed sums, with lengths below, at and past the four accumulators' block.
func TestDotGolden(t *testing.T) {
	for _, c := range []struct {
		x, y []float64
		want float64
	}{
		{nil, nil, 0},
		{[]float64{2}, []float64{3}, 6},
		{[]float64{1, 2, 3, 4}, []float64{5, 6, 7, 8}, 5 + 12 + 21 + 32},
		{[]float64{1, 2, 3, 4, 5, 6, 7}, []float64{1, -1, 1, -1, 1, -1, 2}, 1 - 2 + 3 - 4 + 5 - 6 + 14},
		{[]float64{0.5, 0.25, 1, 2, 4, 8, 16, 32, 64}, []float64{2, 4, 1, 0.5, 0.25, 0.125, 1, 1, 1}, 1 + 1 + 1 + 1 + 1 + 1 + 16 + 32 + 64},
	} {
		if got := Dot(c.x, c.y); got != c.want {
			t.Errorf("Dot(%v, %v) = %v, want %v", c.x, c.y, got, c.want)
		}
		if got := Dot(f32(c.x), f32(c.y)); got != float32(c.want) {
			t.Errorf("float32 Dot(%v, %v) = %v, want %v", c.x, c.y, got, c.want)
		}
	}
}

func f32(x []float64) []float32 {
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = float32(v)
	}
	return out
}

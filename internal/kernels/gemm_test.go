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

package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// TestLinearRows: LinearRows equals a float64 reference within float32 rounding for every row count and
// shape (those the row-dot kernels take and others), accumulating or not, into a column block of a wider y;
// and with the row-dot kernels a row's result is the same bits whatever the row count and the row's place.
func TestLinearRows(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, sh := range [][2]int{{8, 4}, {64, 12}, {256, 300}, {24, 8}, {10, 6}, {16, 5}} {
		in, out := sh[0], sh[1]
		const ldy, pad = 311, 5
		ldx := in + pad
		w := make([]float32, out*in)
		for i := range w {
			w[i] = float32(rng.NormFloat64())
		}
		for _, m := range []int{1, 2, 3, 4, 5, 8, 9} {
			for _, acc := range []bool{false, true} {
				t.Run(fmt.Sprintf("in=%d/out=%d/m=%d/acc=%v", in, out, m, acc), func(t *testing.T) {
					x := make([]float32, m*ldx)
					for i := range x {
						x[i] = float32(rng.NormFloat64())
					}
					y := make([]float32, m*ldy)
					for i := range y {
						y[i] = float32(rng.NormFloat64())
					}
					y0 := append([]float32(nil), y...)
					LinearRows(y[3:], ldy, x, ldx, w, m, in, out, acc)
					for r := 0; r < m; r++ {
						for j := 0; j < ldy; j++ {
							got := y[r*ldy+j]
							if j < 3 || j >= 3+out {
								if got != y0[r*ldy+j] {
									t.Fatalf("row %d column %d outside the block changed", r, j)
								}
								continue
							}
							var ref, mag float64
							for p := 0; p < in; p++ {
								v := float64(x[r*ldx+p]) * float64(w[(j-3)*in+p])
								ref, mag = ref+v, mag+math.Abs(v)
							}
							if acc {
								ref += float64(y0[r*ldy+j])
								mag += math.Abs(float64(y0[r*ldy+j]))
							}
							if math.Abs(float64(got)-ref) > 1e-6*mag+1e-7 {
								t.Fatalf("row %d column %d: %v, float64 reference %v", r, j-3, got, ref)
							}
						}
					}
					if !RowsInvariant(in, out) {
						return
					}
					// each row alone gives the same bits
					for r := 0; r < m; r++ {
						one := append([]float32(nil), y0[r*ldy+3:r*ldy+3+out]...)
						LinearRows(one, out, x[r*ldx:r*ldx+in], in, w, 1, in, out, acc)
						for j := range one {
							if one[j] != y[r*ldy+3+j] {
								t.Fatalf("row %d column %d: %v alone, %v among %d rows", r, j, one[j], y[r*ldy+3+j], m)
							}
						}
					}
				})
			}
		}
	}
}

// dotRowsRef is the row-dot kernels' arithmetic in Go: 8 lanes, lane l accumulating a[p]·b[p] for p ≡ l (mod 8)
// in order with fused multiply-adds, reduced as HSUM does, ((l0+l4)+(l1+l5)) + ((l2+l6)+(l3+l7)), then added to
// c when acc.
func dotRowsRef(a, b []float32, c float32, acc bool) float32 {
	var l [8]float32
	for p := range a {
		l[p%8] = float32(math.FMA(float64(a[p]), float64(b[p]), float64(l[p%8])))
	}
	s := ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]))
	if acc {
		s += c
	}
	return s
}

// TestDotRowsKernels: DotRows4x2, DotRows2x4 and DotRows1x4 (through LinearRows with 4, 2 and 1 rows, and 3
// rows for 2x4 followed by 1x4 on the same W block) equal the Go reference of their accumulation order bit for
// bit, so an output does not depend on the tile it is computed in.
func TestDotRowsKernels(t *testing.T) {
	if !RowsInvariant(8, 4) {
		t.Skip("no AVX2/FMA: LinearRows calls BLAS, whose order is its own")
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for _, k := range []int{8, 64, 256} {
		for _, n := range []int{4, 12, 300} {
			for _, m := range []int{1, 2, 3, 4, 8} {
				for _, acc := range []bool{false, true} {
					x, w, y := make([]float32, m*k), make([]float32, n*k), make([]float32, m*n)
					for _, v := range [][]float32{x, w, y} {
						for i := range v {
							v[i] = float32(rng.NormFloat64())
						}
					}
					y0 := append([]float32(nil), y...)
					LinearRows(y, n, x, k, w, m, k, n, acc)
					for i := range m {
						for j := range n {
							want := dotRowsRef(x[i*k:(i+1)*k], w[j*k:(j+1)*k], y0[i*n+j], acc)
							if y[i*n+j] != want {
								t.Fatalf("k=%d n=%d m=%d acc=%v: y[%d][%d] = %v, reference %v", k, n, m, acc, i, j, y[i*n+j], want)
							}
						}
					}
				}
			}
		}
	}
}

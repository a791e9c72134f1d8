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

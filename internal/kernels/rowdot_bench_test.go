package kernels

import (
	"fmt"
	"testing"
)

// BenchmarkLinearRows: a [m, 256]·[256, 256]ᵀ product over a pool of weight matrices (1: hot in L1/L2; 96:
// 24 MB, about the decode model's weights), GFLOP/s per call.
func BenchmarkLinearRows(b *testing.B) {
	const in, out = 256, 256
	for _, pool := range []int{1, 8, 96} {
		ws := make([][]float32, pool)
		for i := range ws {
			ws[i] = make([]float32, in*out)
			for j := range ws[i] {
				ws[i][j] = float32(j%7) * 0.1
			}
		}
		for _, m := range []int{1, 2, 4, 8} {
			x := make([]float32, m*in)
			y := make([]float32, m*out)
			b.Run(fmt.Sprintf("pool=%d/m=%d", pool, m), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					LinearRows(y, out, x, in, ws[i%pool], m, in, out, false)
				}
				b.ReportMetric(float64(2*m*in*out)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

// softmax_test.go: the vectorised float32 softmax against the float64 SoftmaxRow.
package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestSoftmaxRowFast against the float64 SoftmaxRow, for lengths around the 8-wide step, wide ranges (entries
// far below the maximum underflow to 0) and −Inf entries.
func TestSoftmaxRowFast(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, c := range []struct {
		n     int
		scale float64
	}{{1, 1}, {7, 1}, {8, 3}, {13, 10}, {64, 1}, {256, 5}, {257, 40}} {
		x := make([]float32, c.n)
		for i := range x {
			x[i] = float32(rng.NormFloat64() * c.scale)
			if i%11 == 3 {
				x[i] = float32(math.Inf(-1))
			}
		}
		ref := make([]float64, c.n)
		for i, v := range x {
			ref[i] = float64(v)
		}
		SoftmaxRow(ref)
		SoftmaxRowFast(x)
		for i := range x {
			if d := math.Abs(float64(x[i]) - ref[i]); d > 1e-6*ref[i]+1e-30 && d > 2e-7 {
				t.Fatalf("n=%d scale=%v [%d]: fast %v, reference %v", c.n, c.scale, i, x[i], ref[i])
			}
		}
	}
	// golden: softmax(0, ln 3) = (1/4, 3/4) over 8 + 1 entries with −Inf padding
	x := []float32{0, float32(math.Log(3)), float32(math.Inf(-1)), float32(math.Inf(-1)), float32(math.Inf(-1)), float32(math.Inf(-1)), float32(math.Inf(-1)), float32(math.Inf(-1)), float32(math.Inf(-1))}
	SoftmaxRowFast(x)
	if math.Abs(float64(x[0])-0.25) > 1e-7 || math.Abs(float64(x[1])-0.75) > 1e-7 || x[2] != 0 || x[8] != 0 {
		t.Fatalf("softmax(0, ln 3, −Inf…) = %v, want (0.25, 0.75, 0…)", x)
	}
}

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

// TestSoftmaxRowFastMaxAnywhere puts a dominant entry (20 above the rest) at every position of rows of 16 and
// 19 entries, in the vectorised part and in the tail, and a row whose only finite entry is in the tail: the
// maximum search of the assembly and of the tail loop must both find it.
func TestSoftmaxRowFastMaxAnywhere(t *testing.T) {
	for _, n := range []int{16, 19} {
		for j := 0; j < n; j++ {
			x := make([]float32, n)
			x[j] = 20
			SoftmaxRowFast(x)
			want := 1 / (1 + float64(n-1)*math.Exp(-20))
			if math.Abs(float64(x[j])-want) > 1e-7 {
				t.Fatalf("n=%d max at %d: p = %v, want %v", n, j, x[j], want)
			}
		}
	}
	x := make([]float32, 19)
	for i := range x {
		x[i] = float32(math.Inf(-1))
	}
	x[17] = -3
	SoftmaxRowFast(x)
	if x[17] != 1 || x[0] != 0 || x[18] != 0 {
		t.Fatalf("one finite entry in the tail: %v", x)
	}
}

// attention_test.go: tests of the attention benchmark (attention.go): the log-log slope of exact power laws,
// and a short run whose fields are consistent with each other.

package bench

import (
	"math"
	"testing"
)

// TestLogLogSlope: exact power laws give their exponent.
func TestLogLogSlope(t *testing.T) {
	x := []float64{512, 1024, 2048, 4096}
	for _, c := range []struct{ p, want float64 }{{1, 1}, {2, 2}, {0.5, 0.5}} {
		y := make([]float64, len(x))
		for i, v := range x {
			y[i] = 3 * math.Pow(v, c.p)
		}
		if got := LogLogSlope(x, y); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("slope of 3·x^%v = %v, want %v", c.p, got, c.want)
		}
	}
}

// TestBenchAttentionSmall: a short run fills every field consistently (dsa = indexer + sparse, the ratios).
func TestBenchAttentionSmall(t *testing.T) {
	r, err := BenchAttention(DefaultAttentionBenchShape(), 96, 32, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if r.Length != 96 || r.TopK != 32 || r.DenseMs <= 0 || r.SparseMs <= 0 || r.IndexerMs <= 0 || r.DenseDecUs <= 0 || r.DSADecUs <= 0 {
		t.Fatalf("incomplete result %+v", r)
	}
	if math.Abs(r.DSAMs-(r.IndexerMs+r.SparseMs)) > 1e-9 || math.Abs(r.Ratio-r.DSAMs/r.DenseMs) > 1e-12 || math.Abs(r.DecodeRatio-r.DSADecUs/r.DenseDecUs) > 1e-12 {
		t.Fatalf("inconsistent result %+v", r)
	}
	if r.DenseCPUMs > 0 && (r.DSACPUMs <= 0 || r.SparseCPUMs > r.DSACPUMs || math.Abs(r.CPURatio-r.DSACPUMs/r.DenseCPUMs) > 1e-12) {
		t.Fatalf("inconsistent CPU times %+v", r)
	}
	if r.DSADecKiB <= r.DenseDecKiB || r.DenseMemMiB <= 0 || r.DSAMemMiB <= 0 {
		t.Fatalf("memory fields %+v", r)
	}
}

// TestUpperMedian: the attention benchmark's median takes the upper middle value of an even count (it is not
// median's mean of the two), and leaves its input alone.
func TestUpperMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{{[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 3}, {[]float64{2, 1}, 2}} {
		in := append([]float64(nil), tc.in...)
		if got := upperMedian(tc.in); got != tc.want {
			t.Errorf("upperMedian(%v) = %v, want %v", tc.in, got, tc.want)
		}
		for i := range in {
			if in[i] != tc.in[i] {
				t.Errorf("upperMedian reordered its input %v", tc.in)
			}
		}
	}
}

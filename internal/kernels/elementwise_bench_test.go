package kernels

import "testing"

// BenchmarkRMSNorm, BenchmarkRMSNormBackward, BenchmarkSwiGLU, BenchmarkSwiGLUBackward: the non-GEMM kernels
// of the training step at one shard's shapes of the issue-19 configuration (1,024 rows of 256; the dense
// FFN's 1,024 × 768 activations), on one worker as the shards run them.
func benchRows(n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(i%13)*0.1 - 0.6
	}
	return v
}

func BenchmarkRMSNorm(b *testing.B) {
	const n, w = 1024, 256
	defer HoldSerial()()
	x, g, y, rstd := benchRows(n*w), benchRows(w), make([]float32, n*w), make([]float32, n)
	for b.Loop() {
		RMSNorm(y, rstd, x, n, w, w, 0, g, 1e-6)
	}
}

func BenchmarkRMSNormBackward(b *testing.B) {
	const n, w = 1024, 256
	defer HoldSerial()()
	x, g, dy, y, rstd := benchRows(n*w), benchRows(w), benchRows(n*w), make([]float32, n*w), make([]float32, n)
	RMSNorm(y, rstd, x, n, w, w, 0, g, 1e-6)
	dx, dg := make([]float32, n*w), make([]float32, w)
	for b.Loop() {
		RMSNormBackward(dx, dg, dy, x, rstd, n, w, w, 0, g)
	}
}

func BenchmarkSwiGLU(b *testing.B) {
	const n = 1024 * 768
	a, u, h := benchRows(n), benchRows(n), make([]float32, n)
	for b.Loop() {
		SwiGLU(h, a, u)
	}
}

func BenchmarkSwiGLUBackward(b *testing.B) {
	const n = 1024 * 768
	a, u, dh, da, du := benchRows(n), benchRows(n), benchRows(n), make([]float32, n), make([]float32, n)
	for b.Loop() {
		SwiGLUBackward(da, du, dh, a, u)
	}
}

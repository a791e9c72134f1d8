//go:build !amd64

// adamw_other.go: no assembly on architectures other than amd64 (Available is false).

package simd

// AdamW has no assembly on this architecture: Available is false, so package kernels runs its Go loop instead and never calls this.
func AdamW(val, grad, m, v *float32, n int, c *[8]float64) {
	panic("simd: no assembly on this architecture")
}

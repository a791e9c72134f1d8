//go:build !amd64

package simd

// DotRows4x2 has no assembly on this architecture: Available is false, so package kernels never calls it.
func DotRows4x2(c *float32, ldc int, a *float32, lda int, b *float32, ldb int, n, k int, acc int) {
	panic("simd: no assembly on this architecture")
}

// DotRows1x4 has no assembly on this architecture: Available is false, so package kernels never calls it.
func DotRows1x4(c *float32, a *float32, b *float32, ldb int, n, k int, acc int) {
	panic("simd: no assembly on this architecture")
}

// DotRows2x4 has no assembly on this architecture: Available is false, so package kernels never calls it.
func DotRows2x4(c *float32, ldc int, a *float32, lda int, b *float32, ldb int, n, k int, acc int) {
	panic("simd: no assembly on this architecture")
}

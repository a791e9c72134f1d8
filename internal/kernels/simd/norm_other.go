//go:build !amd64

// norm_other.go: no assembly on architectures other than amd64 (Available is false).

package simd

// ScaleMul has no assembly on this architecture: Available is false, so package kernels runs its Go loop instead and never calls this.
func ScaleMul(y, x, gw *float32, n int, rs float32) { panic("simd: no assembly on this architecture") }

// DotMul4 has no assembly on this architecture: Available is false, so package kernels runs its Go loop instead and never calls this.
func DotMul4(a, b, c *float32, n int) float32 { panic("simd: no assembly on this architecture") }

// RMSNormDx has no assembly on this architecture: Available is false, so package kernels runs its Go loop instead and never calls this.
func RMSNormDx(dx, gw, dy, x *float32, n int, rs, c float32) {
	panic("simd: no assembly on this architecture")
}

// MulMulAcc has no assembly on this architecture: Available is false, so package kernels runs its Go loop instead and never calls this.
func MulMulAcc(acc, d, x *float32, n int, rs float32) {
	panic("simd: no assembly on this architecture")
}

// DotLanes4 has no assembly on this architecture: Available is false, so package kernels runs its Go loop instead and never calls this.
func DotLanes4(a, b *float32, n int, lanes *[4]float32) {
	panic("simd: no assembly on this architecture")
}

// SoftmaxGrad has no assembly on this architecture: Available is false, so package kernels runs its Go loop instead and never calls this.
func SoftmaxGrad(d, p *float32, n int, s, scale float32) {
	panic("simd: no assembly on this architecture")
}

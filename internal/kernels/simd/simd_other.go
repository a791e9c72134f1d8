//go:build !amd64

// simd_other.go: on architectures other than amd64 there is no assembly; Available is false and the
// functions must not be called.

package simd

// Available is false here.
var Available = false

// GatherDot has no assembly on this architecture: Available is false, so package kernels runs its Go loop instead and never calls this.
func GatherDot(out, x *float32, n int, base *float32, stride int, idx *int32, m int, alpha float32) {
	panic("simd: no assembly on this architecture")
}

// GatherAxpy has no assembly on this architecture: Available is false, so package kernels runs its Go loop instead and never calls this.
func GatherAxpy(y *float32, n int, a, base *float32, stride int, idx *int32, m int) {
	panic("simd: no assembly on this architecture")
}

// ScatterAxpy has no assembly on this architecture: Available is false, so package kernels runs its Go loop instead and never calls this.
func ScatterAxpy(base *float32, stride int, idx *int32, a *float32, m int, x *float32, n int) {
	panic("simd: no assembly on this architecture")
}

// ReluScale has no assembly on this architecture: Available is false, so package kernels runs its Go loop instead and never calls this.
func ReluScale(y, x *float32, n int, a float32) { panic("simd: no assembly on this architecture") }

// ReluAxpy has no assembly on this architecture: Available is false, so package kernels runs its Go loop instead and never calls this.
func ReluAxpy(y, x *float32, n int, a float32) { panic("simd: no assembly on this architecture") }

// ReluBackward has no assembly on this architecture: Available is false, so package kernels runs its Go loop instead and never calls this.
func ReluBackward(dst, grad *float32, n int, w float32) float32 {
	panic("simd: no assembly on this architecture")
}

// ExpSub has no assembly on this architecture: Available is false, so package kernels runs its Go loop instead and never calls this.
func ExpSub(x *float32, n int, m float32) float32 { panic("simd: no assembly on this architecture") }

// GatherDotHeads has no assembly on this architecture: Available is false, so package kernels runs its Go loop instead and never calls this.
func GatherDotHeads(out *float32, ldob int, x *float32, n, hg int, base *float32, stride int, idx *int32, m int, alpha float32) {
	panic("simd: no assembly on this architecture")
}

// GatherAxpyHeads has no assembly on this architecture: Available is false, so package kernels runs its Go loop instead and never calls this.
func GatherAxpyHeads(y *float32, n, hg int, a *float32, ldab int, base *float32, stride int, idx *int32, m int) {
	panic("simd: no assembly on this architecture")
}

// ScatterAxpyHeads has no assembly on this architecture: Available is false, so package kernels runs its Go loop instead and never calls this.
func ScatterAxpyHeads(base *float32, stride int, idx *int32, m int, a *float32, ldab int, x *float32, n, hg int) {
	panic("simd: no assembly on this architecture")
}

// Sigmoid has no assembly on this architecture: Available is false, so package kernels runs its Go loop instead and never calls this.
func Sigmoid(s, x *float32, n int) { panic("simd: no assembly on this architecture") }

// Max has no assembly on this architecture: Available is false, so package kernels runs its Go loop instead and never calls this.
func Max(x *float32, n int) float32 { panic("simd: no assembly on this architecture") }

// Scale has no assembly on this architecture: Available is false, so package kernels runs its Go loop instead and never calls this.
func Scale(x *float32, n int, a float32) { panic("simd: no assembly on this architecture") }

// Axpy has no assembly on this architecture: Available is false, so package kernels runs its Go loop instead and never calls this.
func Axpy(y, x *float32, n int, a float32) { panic("simd: no assembly on this architecture") }

// SwiGLU has no assembly on this architecture: Available is false, so package kernels runs its Go loop instead and never calls this.
func SwiGLU(h, a, u *float32, n int) { panic("simd: no assembly on this architecture") }

// SwiGLUBackward has no assembly on this architecture: Available is false, so package kernels runs its Go loop instead and never calls this.
func SwiGLUBackward(da, du, dh, a, u *float32, n int) {
	panic("simd: no assembly on this architecture")
}

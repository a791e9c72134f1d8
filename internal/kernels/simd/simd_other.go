//go:build !amd64

// Package simd: on architectures other than amd64 there is no assembly; Available is false and the
// functions must not be called.
package simd

// Available is false here.
var Available = false

// GatherDot is not implemented on this architecture.
func GatherDot(out, x *float32, n int, base *float32, stride int, idx *int32, m int, alpha float32) {
	panic("simd: no assembly on this architecture")
}

// GatherAxpy is not implemented on this architecture.
func GatherAxpy(y *float32, n int, a, base *float32, stride int, idx *int32, m int) {
	panic("simd: no assembly on this architecture")
}

// ScatterAxpy is not implemented on this architecture.
func ScatterAxpy(base *float32, stride int, idx *int32, a *float32, m int, x *float32, n int) {
	panic("simd: no assembly on this architecture")
}

// ReluScale is not implemented on this architecture.
func ReluScale(y, x *float32, n int, a float32) { panic("simd: no assembly on this architecture") }

// ReluAxpy is not implemented on this architecture.
func ReluAxpy(y, x *float32, n int, a float32) { panic("simd: no assembly on this architecture") }

// ReluBackward is not implemented on this architecture.
func ReluBackward(dst, grad *float32, n int, w float32) float32 {
	panic("simd: no assembly on this architecture")
}

// ExpSub is not implemented on this architecture.
func ExpSub(x *float32, n int, m float32) float32 { panic("simd: no assembly on this architecture") }

// GatherDotHeads is not implemented on this architecture.
func GatherDotHeads(out *float32, ldob int, x *float32, n, hg int, base *float32, stride int, idx *int32, m int, alpha float32) {
	panic("simd: no assembly on this architecture")
}

// GatherAxpyHeads is not implemented on this architecture.
func GatherAxpyHeads(y *float32, n, hg int, a *float32, ldab int, base *float32, stride int, idx *int32, m int) {
	panic("simd: no assembly on this architecture")
}

// ScatterAxpyHeads is not implemented on this architecture.
func ScatterAxpyHeads(base *float32, stride int, idx *int32, m int, a *float32, ldab int, x *float32, n, hg int) {
	panic("simd: no assembly on this architecture")
}

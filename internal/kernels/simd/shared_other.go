//go:build !amd64

// shared_other.go: the shared-row kernels have no assembly outside amd64; Available is false there and these
// must not be called.

package simd

// GatherDotShared has no assembly on this architecture: Available is false, so package kernels runs its Go loop instead and never calls this.
func GatherDotShared(out *float32, ldob int, x *float32, n, hg int, base *float32, stride int, idx *int32, m int, alpha float32, pf *float32) {
	panic("simd: no assembly on this architecture")
}

// GatherAxpyShared has no assembly on this architecture: Available is false, so package kernels runs its Go loop instead and never calls this.
func GatherAxpyShared(y *float32, n, hg int, a *float32, ldab int, base *float32, stride int, idx *int32, m int) {
	panic("simd: no assembly on this architecture")
}

// ScatterAxpyShared has no assembly on this architecture: Available is false, so package kernels runs its Go loop instead and never calls this.
func ScatterAxpyShared(base *float32, stride int, idx *int32, m int, a *float32, ldab int, x *float32, n, hg int) {
	panic("simd: no assembly on this architecture")
}

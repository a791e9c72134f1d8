// gather_shared.go: gathered kernels for several heads that all read ONE shared row per selected token, the
// inner loops of sparse attention in the absorbed MQA mode (dsv32-spec.md §1.3: every head attends to the same
// latent entry [c_kv ; k_rope] of a key). Per-head operands are laid out [heads, n] (x, y) or [heads, ld]
// (out, a); a row r of base is base[r·stride : r·stride+n]. A gathered row is read (or updated) once for a
// block of heads. On amd64 with AVX2 and FMA, float32 runs in assembly (simd/shared_amd64.s) for blocks of 4
// heads when n is a multiple of 16; the other heads and every other case run the single-head kernels of
// gather.go.

package kernels

import (
	"unsafe"

	"github.com/sparrow-rl/sparrow/internal/kernels/simd"
)

// sharedASM says whether heads [0, 4·⌊heads/4⌋) of a float32 call with row width n run in assembly.
func sharedASM[T Float](n, heads int) (int, bool) {
	var z T
	if _, ok := any(z).(float32); !ok || !gatherASM || n%16 != 0 || n == 0 || heads < 4 {
		return 0, false
	}
	return heads &^ 3, true
}

// GatherDotShared sets out[h·ldo + i] = alpha · x_h·(row idx[i] of base) for h < heads, i < len(idx), where
// x_h = x[h·n:(h+1)·n], n = len(x)/heads, and every head reads the same row base[r·stride : r·stride+n].
// pf, when not nil, is a table with base's stride whose rows idx a later kernel will update: the assembly
// prefetches them (and the whole rows of base) ahead of use; results do not depend on it.
func GatherDotShared[T Float](out []T, ldo int, x []T, heads int, base []T, stride int, idx []int32, alpha T, pf []T) {
	n, m := headWidth(len(x), heads), len(idx)
	if m == 0 {
		return
	}
	checkRows(base, stride, n, idx)
	_ = out[(heads-1)*ldo+m-1]
	h0 := 0
	if hb, ok := sharedASM[T](n, heads); ok {
		var p *float32 // a prefetch never faults, so pf needs no bounds check
		if len(pf) > 0 {
			p = (*float32)(unsafe.Pointer(unsafe.SliceData(pf)))
		}
		simd.GatherDotShared((*float32)(unsafe.Pointer(unsafe.SliceData(out))), ldo*4, (*float32)(unsafe.Pointer(unsafe.SliceData(x))), n, hb,
			(*float32)(unsafe.Pointer(unsafe.SliceData(base))), stride, unsafe.SliceData(idx), m, float32(alpha), p)
		h0 = hb
	}
	for h := h0; h < heads; h++ {
		GatherDot(out[h*ldo:h*ldo+m], x[h*n:(h+1)*n], base, stride, idx, alpha)
	}
}

// GatherAxpyShared accumulates y_h += Σ_i a[h·lda + i]·(row idx[i] of base) for h < heads (y_h =
// y[h·n:(h+1)·n], n = len(y)/heads, one shared row per i as in GatherDotShared).
func GatherAxpyShared[T Float](y []T, heads int, a []T, lda int, base []T, stride int, idx []int32) {
	n, m := headWidth(len(y), heads), len(idx)
	if m == 0 {
		return
	}
	checkRows(base, stride, n, idx)
	_ = a[(heads-1)*lda+m-1]
	h0 := 0
	if hb, ok := sharedASM[T](n, heads); ok {
		simd.GatherAxpyShared((*float32)(unsafe.Pointer(unsafe.SliceData(y))), n, hb, (*float32)(unsafe.Pointer(unsafe.SliceData(a))), lda*4,
			(*float32)(unsafe.Pointer(unsafe.SliceData(base))), stride, unsafe.SliceData(idx), m)
		h0 = hb
	}
	for h := h0; h < heads; h++ {
		GatherAxpy(y[h*n:(h+1)*n], a[h*lda:h*lda+m], base, stride, idx)
	}
}

// ScatterAxpyShared accumulates (row idx[i] of base) += Σ_h a[h·lda + i]·x_h for every i < len(idx), in order
// of i (x_h = x[h·n:(h+1)·n], n = len(x)/heads). Repeated indices accumulate.
func ScatterAxpyShared[T Float](base []T, stride int, idx []int32, a []T, lda int, x []T, heads int) {
	n, m := headWidth(len(x), heads), len(idx)
	if m == 0 {
		return
	}
	checkRows(base, stride, n, idx)
	_ = a[(heads-1)*lda+m-1]
	h0 := 0
	if hb, ok := sharedASM[T](n, heads); ok {
		simd.ScatterAxpyShared((*float32)(unsafe.Pointer(unsafe.SliceData(base))), stride, unsafe.SliceData(idx), m,
			(*float32)(unsafe.Pointer(unsafe.SliceData(a))), lda*4, (*float32)(unsafe.Pointer(unsafe.SliceData(x))), n, hb)
		h0 = hb
	}
	for h := h0; h < heads; h++ {
		ScatterAxpy(base, stride, idx, a[h*lda:h*lda+m], x[h*n:(h+1)*n])
	}
}

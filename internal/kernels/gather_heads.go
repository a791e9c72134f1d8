// gather_heads.go: the gathered kernels of gather.go for several heads at once, when the heads' rows of one
// token lie side by side (row r = [head 0 | head 1 | … ], each of width n): each selected row is then read or
// updated as one contiguous run for all heads, instead of once per head. Per-head operands are laid out
// [heads, n] (x, y) or [heads, ld] (out, a). Same fast path as gather.go.

package kernels

import (
	"fmt"
	"unsafe"

	"github.com/sparrow-rl/sparrow/internal/kernels/simd"
)

func headWidth(total, heads int) int {
	if heads <= 0 || total%heads != 0 {
		panic(fmt.Sprintf("kernels: %d elements do not split into %d heads", total, heads))
	}
	return total / heads
}

// GatherDotHeads sets out[h·ldo + i] = alpha · x_h·(row idx[i] of base)_h for h < heads, i < len(idx), where
// x_h = x[h·n:(h+1)·n], n = len(x)/heads, and (row r)_h = base[r·stride + h·n : r·stride + (h+1)·n].
func GatherDotHeads[T Float](out []T, ldo int, x []T, heads int, base []T, stride int, idx []int32, alpha T) {
	n, m := headWidth(len(x), heads), len(idx)
	if m == 0 {
		return
	}
	checkRows(base, stride, heads*n, idx)
	_ = out[(heads-1)*ldo+m-1]
	if n%8 == 0 && gatherASM {
		if o, ok := any(out).([]float32); ok {
			simd.GatherDotHeads(unsafe.SliceData(o), ldo*4, unsafe.SliceData(any(x).([]float32)), n, heads,
				unsafe.SliceData(any(base).([]float32)), stride, unsafe.SliceData(idx), m, float32(alpha))
			return
		}
	}
	for h := range heads {
		GatherDot(out[h*ldo:h*ldo+m], x[h*n:(h+1)*n], base[h*n:], stride, idx, alpha)
	}
}

// GatherAxpyHeads accumulates y_h += Σ_i a[h·lda + i]·(row idx[i] of base)_h for h < heads (y_h, rows as in
// GatherDotHeads, n = len(y)/heads).
func GatherAxpyHeads[T Float](y []T, heads int, a []T, lda int, base []T, stride int, idx []int32) {
	n, m := headWidth(len(y), heads), len(idx)
	if m == 0 {
		return
	}
	checkRows(base, stride, heads*n, idx)
	_ = a[(heads-1)*lda+m-1]
	if n%8 == 0 && gatherASM {
		if yy, ok := any(y).([]float32); ok {
			simd.GatherAxpyHeads(unsafe.SliceData(yy), n, heads, unsafe.SliceData(any(a).([]float32)), lda*4,
				unsafe.SliceData(any(base).([]float32)), stride, unsafe.SliceData(idx), m)
			return
		}
	}
	for h := range heads {
		GatherAxpy(y[h*n:(h+1)*n], a[h*lda:h*lda+m], base[h*n:], stride, idx)
	}
}

// ScatterAxpyHeads accumulates (row idx[i] of base)_h += a[h·lda + i]·x_h for h < heads, i < len(idx), in order
// of i (x_h, rows as in GatherDotHeads, n = len(x)/heads).
func ScatterAxpyHeads[T Float](base []T, stride int, idx []int32, a []T, lda int, x []T, heads int) {
	n, m := headWidth(len(x), heads), len(idx)
	if m == 0 {
		return
	}
	checkRows(base, stride, heads*n, idx)
	_ = a[(heads-1)*lda+m-1]
	if n%8 == 0 && gatherASM {
		if b, ok := any(base).([]float32); ok {
			simd.ScatterAxpyHeads(unsafe.SliceData(b), stride, unsafe.SliceData(idx), m, unsafe.SliceData(any(a).([]float32)), lda*4,
				unsafe.SliceData(any(x).([]float32)), n, heads)
			return
		}
	}
	for h := range heads {
		ScatterAxpy(base[h*n:], stride, idx, a[h*lda:h*lda+m], x[h*n:(h+1)*n])
	}
}

// relu.go: the fused ReLU·weight kernels of the lightning indexer (I[t,s] = Σ_j w_j·ReLU(z_j[s])) and their
// backward. On amd64 with AVX2 and FMA the float32 versions run the assembly of package simd on the largest
// multiple of 8 elements and plain Go on the rest.

package kernels

import (
	"unsafe"

	"github.com/sparrow-rl/sparrow/internal/kernels/simd"
)

// ReluScale sets y[i] = a·max(x[i], 0) for i < len(x).
func ReluScale[T Float](y, x []T, a T) {
	y = y[:len(x)]
	i := 0
	if yy, ok := any(y).([]float32); ok && gatherASM && len(x) >= 8 {
		i = len(x) &^ 7
		simd.ReluScale(unsafe.SliceData(yy), unsafe.SliceData(any(x).([]float32)), i, float32(a))
	}
	for ; i < len(x); i++ {
		if v := x[i]; v > 0 {
			y[i] = a * v
		} else {
			y[i] = 0
		}
	}
}

// ReluAxpy accumulates y[i] += a·max(x[i], 0) for i < len(x).
func ReluAxpy[T Float](y, x []T, a T) {
	y = y[:len(x)]
	i := 0
	if yy, ok := any(y).([]float32); ok && gatherASM && len(x) >= 8 {
		i = len(x) &^ 7
		simd.ReluAxpy(unsafe.SliceData(yy), unsafe.SliceData(any(x).([]float32)), i, float32(a))
	}
	for ; i < len(x); i++ {
		if v := x[i]; v > 0 {
			y[i] += a * v
		}
	}
}

// ReluBackward is the backward of y += w·ReLU(z) given dy = g: it returns ∂/∂w = Σ g[i]·max(z[i], 0) and
// overwrites z with ∂/∂z = g·w where z > 0, 0 elsewhere (i < len(z)).
func ReluBackward[T Float](z, g []T, w T) T {
	g = g[:len(z)]
	i := 0
	var s T
	if zz, ok := any(z).([]float32); ok && gatherASM && len(z) >= 8 {
		i = len(z) &^ 7
		s = T(simd.ReluBackward(unsafe.SliceData(zz), unsafe.SliceData(any(g).([]float32)), i, float32(w)))
	}
	for ; i < len(z); i++ {
		if v := z[i]; v > 0 {
			s += g[i] * v
			z[i] = g[i] * w
		} else {
			z[i] = 0
		}
	}
	return s
}

// gather_simd.go: the float32 fast path of gather.go, through the assembly of package simd.

package kernels

import (
	"unsafe"

	"github.com/sparrow-rl/sparrow/internal/kernels/simd"
)

// gatherASM selects the assembly kernels; tests switch it off to compare against the Go loops.
var gatherASM = simd.Available

func gatherDotF32(out, x, base []float32, stride int, idx []int32, alpha float32) {
	simd.GatherDot(unsafe.SliceData(out), unsafe.SliceData(x), len(x), unsafe.SliceData(base), stride, unsafe.SliceData(idx), len(idx), alpha)
}

func gatherAxpyF32(y, a, base []float32, stride int, idx []int32) {
	simd.GatherAxpy(unsafe.SliceData(y), len(y), unsafe.SliceData(a), unsafe.SliceData(base), stride, unsafe.SliceData(idx), len(idx))
}

func scatterAxpyF32(base []float32, stride int, idx []int32, a, x []float32) {
	simd.ScatterAxpy(unsafe.SliceData(base), stride, unsafe.SliceData(idx), unsafe.SliceData(a), len(idx), unsafe.SliceData(x), len(x))
}

// rowdot.go: LinearRows, y = x·Wᵀ for the few rows of a batched decode step, computed so that a row's result
// does not depend on the other rows (batch invariance). A BLAS sgemm of a few rows packs the whole weight
// matrix at every call and may round a row differently for different row counts; here every output element
// is one dot product of an x row and a W row, accumulated in 8 lanes over the row in order and reduced the
// same way (simd.DotRows4x2 for four rows at a time, simd.DotRows2x4 for two, simd.DotRows1x4 for the last),
// reading W straight from memory, once per call: decode's products are bound by streaming the weights, not by
// arithmetic (a routed expert of a batch-8 step has about 2 rows, which DotRows2x4 takes in one pass over W).

package kernels

import (
	"unsafe"

	"github.com/sparrow-rl/sparrow/internal/kernels/simd"
)

// RowsInvariant says whether LinearRows computes shape [·, in]·[out, in]ᵀ with the row-dot kernels (AVX2 and
// FMA, in a multiple of 8, out a multiple of 4); otherwise it calls Linear (BLAS), whose rows may depend on
// the row count by float rounding.
func RowsInvariant(in, out int) bool {
	return simd.Available && in > 0 && in%8 == 0 && out > 0 && out%4 == 0
}

// LinearRows computes y = x·Wᵀ (+ y when accumulate) for x [m, in] with row stride ldx (≥ in), W [out, in],
// y [m, out] with row stride ldy (≥ out): x and y may be column blocks of wider matrices.
func LinearRows(y []float32, ldy int, x []float32, ldx int, w []float32, m, in, out int, accumulate bool) {
	if m == 0 {
		return
	}
	if !RowsInvariant(in, out) {
		beta := float32(0)
		if accumulate {
			beta = 1
		}
		Gemm(false, true, m, out, in, 1, x, ldx, w, in, beta, y, ldy)
		return
	}
	_ = x[(m-1)*ldx+in-1]
	_ = w[out*in-1]
	_ = y[(m-1)*ldy+out-1]
	acc := 0
	if accumulate {
		acc = 1
	}
	if GemmRecorder != nil {
		GemmRecorder(GemmShape{false, true, m, out, in})
	}
	// W is streamed once: with one or two x rows in one pass; with more, for each block of 4 of its rows (in
	// L1 meanwhile), every x row (hot in L2).
	switch m {
	case 1:
		simd.DotRows1x4((*float32)(unsafe.Pointer(&y[0])), &x[0], &w[0], in, out, in, acc)
		return
	case 2:
		simd.DotRows2x4((*float32)(unsafe.Pointer(&y[0])), ldy, &x[0], ldx, &w[0], in, out, in, acc)
		return
	}
	for j := 0; j < out; j += 4 {
		wj := &w[j*in]
		i := 0
		for ; i+4 <= m; i += 4 {
			simd.DotRows4x2((*float32)(unsafe.Pointer(&y[i*ldy+j])), ldy, &x[i*ldx], ldx, wj, in, 4, in, acc)
		}
		if i+2 <= m {
			simd.DotRows2x4((*float32)(unsafe.Pointer(&y[i*ldy+j])), ldy, &x[i*ldx], ldx, wj, in, 4, in, acc)
			i += 2
		}
		if i < m {
			simd.DotRows1x4((*float32)(unsafe.Pointer(&y[i*ldy+j])), &x[i*ldx], wj, in, 4, in, acc)
		}
	}
}

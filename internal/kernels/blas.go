// blas.go is the one seam behind which the matrix engine sits: gonum's pure-Go BLAS by default, or OpenBLAS
// with the `openblas` build tag (blas_openblas.go); SetBLAS installs another backend. Everything else calls
// Gemm.

package kernels

import (
	"unsafe"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"

	"github.com/sparrow-rl/sparrow/internal/kernels/simd"
)

// Float is the element type of every kernel.
type Float interface{ float32 | float64 }

// BLAS is the level-3 interface a backend implements (gonum's blas.Float32Level3 and blas.Float64Level3 subsets).
type BLAS interface {
	Sgemm(tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int)
	Dgemm(tA, tB blas.Transpose, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int)
}

var backend BLAS = gonum.Implementation{}

// rowSplit makes Gemm split large products into row blocks run by the workers of For (for backends that run
// single-threaded; gonum parallelises internally).
var rowSplit = false

// splitFlops is the smallest product (2·m·n·k) that rowSplit spreads over the workers.
const splitFlops = 1 << 22

// backendName names the active backend ("gonum" or "openblas").
var backendName = "gonum"

// Backend returns the name of the active BLAS backend.
func Backend() string { return backendName }

// backendCore names the active backend's kernel set where it has several per CPU ("" otherwise).
var backendCore = func() string { return "" }

// BackendCore names the kernel set of the active backend: OpenBLAS's per-CPU choice ("Haswell", "Zen", ...),
// "" for gonum.
func BackendCore() string { return backendCore() }

// SetBLAS replaces the backend (e.g. a test backend); it is not safe to call while kernels run.
func SetBLAS(name string, b BLAS) { backend, backendName = b, name }

// GemmShape is one recorded GEMM call: op(A) [M, K] times op(B) [K, N].
type GemmShape struct {
	TransA, TransB bool
	M, N, K        int
}

// Flops is 2·M·N·K.
func (s GemmShape) Flops() float64 { return 2 * float64(s.M) * float64(s.N) * float64(s.K) }

// GemmRecorder, when set, is called with the shape of every float32/float64 GEMM (used by `trainer bench` to
// count a step's FLOPs and replay its matmul shapes). It must be safe for concurrent use; nil = off.
var GemmRecorder func(GemmShape)

// Gemm computes C = alpha·op(A)·op(B) + beta·C with row-major matrices, op(X) = Xᵀ when the flag is set.
// op(A) is [m, k], op(B) is [k, n], C is [m, n]; lda, ldb, ldc are the row strides of the stored matrices.
func Gemm[T Float](transA, transB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	if k == 0 {
		Scale(beta, c[:(m-1)*ldc+n])
		return
	}
	if GemmRecorder != nil {
		GemmRecorder(GemmShape{transA, transB, m, n, k})
	}
	if w := workers(); rowSplit && w > 1 && m >= 2*w && 2*m*n*k >= splitFlops {
		chunk := (m + w - 1) / w
		For(w, 1<<30, func(i int) {
			r0 := i * chunk
			r1 := min(r0+chunk, m)
			if r0 >= r1 {
				return
			}
			aOff := r0 * lda // rows of A
			if transA {
				aOff = r0 // columns of the stored Aᵀ
			}
			gemmOne(transA, transB, r1-r0, n, k, alpha, a[aOff:], lda, b, ldb, beta, c[r0*ldc:], ldc)
		})
		return
	}
	gemmOne(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// GemmSerial is Gemm on the calling goroutine only, never split over the workers: for callers that already
// run on the workers of For (per attention head, per batch row), where a split would start more OpenBLAS
// calls than there are cores.
func GemmSerial[T Float](transA, transB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	if k == 0 {
		Scale(beta, c[:(m-1)*ldc+n])
		return
	}
	if GemmRecorder != nil {
		GemmRecorder(GemmShape{transA, transB, m, n, k})
	}
	gemmOne(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

func gemmOne[T Float](transA, transB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	tA, tB := blas.NoTrans, blas.NoTrans
	if transA {
		tA = blas.Trans
	}
	if transB {
		tB = blas.Trans
	}
	switch a := any(a).(type) {
	case []float32:
		backend.Sgemm(tA, tB, m, n, k, float32(alpha), a, lda, any(b).([]float32), ldb, float32(beta), any(c).([]float32), ldc)
	case []float64:
		backend.Dgemm(tA, tB, m, n, k, float64(alpha), a, lda, any(b).([]float64), ldb, float64(beta), any(c).([]float64), ldc)
	}
}

// Linear computes y = x·Wᵀ (+ y when accumulate) for x [n, in], W [out, in], y [n, out].
func Linear[T Float](y, x, w []T, n, in, out int, accumulate bool) {
	beta := T(0)
	if accumulate {
		beta = 1
	}
	Gemm(false, true, n, out, in, 1, x, in, w, in, beta, y, out)
}

// LinearBackward accumulates the gradients of y = x·Wᵀ: dx += dy·W (when dx != nil) and dW += dyᵀ·x (when dw != nil).
func LinearBackward[T Float](dx, dw, dy, x, w []T, n, in, out int) {
	if dx != nil {
		Gemm(false, false, n, in, out, 1, dy, out, w, in, 1, dx, in)
	}
	if dw != nil {
		Gemm(true, false, out, in, n, 1, dy, out, x, in, 1, dw, in)
	}
}

// Scale multiplies x by a in place (a = 0 clears, so NaNs in x do not survive).
func Scale[T Float](a T, x []T) {
	if a == 0 {
		clear(x)
		return
	}
	for i := range x {
		x[i] *= a
	}
}

// Axpy computes y += a·x (float32 rows of 8 or more in the assembly of package simd, with the same bits).
func Axpy[T Float](a T, x, y []T) {
	y = y[:len(x)]
	if xf, ok := any(x).([]float32); ok && gatherASM && len(x) >= 8 {
		n8 := len(xf) &^ 7
		simd.Axpy(unsafe.SliceData(any(y).([]float32)), unsafe.SliceData(xf), n8, float32(a))
		x, y = x[n8:], y[n8:]
	}
	for i, v := range x {
		y[i] += a * v
	}
}

// Dot returns Σ x·y, accumulated in the element type by four interleaved accumulators (elements i mod 4,
// added as (s0+s1)+(s2+s3)), so the adds do not wait on each other; float32 runs the four accumulators as the
// lanes of one SSE register (simd.DotLanes4, the same bits).
func Dot[T Float](x, y []T) T {
	y = y[:len(x)]
	var s0, s1, s2, s3 T
	n4 := len(x) &^ 3
	if xf, ok := any(x).([]float32); ok && gatherASM && n4 > 0 {
		var l [4]float32
		simd.DotLanes4(unsafe.SliceData(xf), unsafe.SliceData(any(y).([]float32)), n4, &l)
		s0, s1, s2, s3 = T(l[0]), T(l[1]), T(l[2]), T(l[3])
	} else {
		for i := 0; i < n4; i += 4 {
			s0 += x[i] * y[i]
			s1 += x[i+1] * y[i+1]
			s2 += x[i+2] * y[i+2]
			s3 += x[i+3] * y[i+3]
		}
	}
	for i := n4; i < len(x); i++ {
		s0 += x[i] * y[i]
	}
	return (s0 + s1) + (s2 + s3)
}

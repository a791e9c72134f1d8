//go:build openblas

// OpenBLAS backend: build with `-tags openblas` and CGO_LDFLAGS=-lopenblas (Debian libopenblas-dev).
//
// OpenBLAS's own thread pool fights Sparrow's goroutines (per-head attention and per-expert GEMMs run in
// parallel already) for the cores, so OpenBLAS runs single-threaded and Gemm splits large products by rows
// across Sparrow's workers instead (rowSplit).

package kernels

/*
#cgo LDFLAGS: -lopenblas
void openblas_set_num_threads(int);
char* openblas_get_corename(void);
*/
import "C"

import "gonum.org/v1/netlib/blas/netlib"

func init() {
	C.openblas_set_num_threads(1)
	// the kernel set OpenBLAS chose for this CPU when it loaded ("Haswell", "Zen", "SkylakeX", ...;
	// OPENBLAS_CORETYPE picks one): a seeded run's bits depend on it
	backendCore = func() string { return C.GoString(C.openblas_get_corename()) }
	SetBLAS("openblas", netlib.Implementation{})
	rowSplit = true
}

//go:build openblas

// OpenBLAS backend: build with `-tags openblas` and CGO_LDFLAGS=-lopenblas (Debian libopenblas-dev).
//
// OpenBLAS's own thread pool fights Sparrow's goroutines (per-head attention and per-expert GEMMs run in
// parallel already) for the cores, so OpenBLAS runs single-threaded and Gemm splits large products by rows
// across Sparrow's workers instead (rowSplit). The library starts its pool of worker threads when it is loaded,
// before this package can ask for one thread, and an idle pool thread polls for work with sched_yield; with one
// thread per core already busy (the training graph's shards, the decode team) that steals a core's share, so
// init also stops the pool (OpenBLAS's own shutdown, as it does before a fork). Single-threaded calls never
// restart it.

package kernels

/*
#cgo LDFLAGS: -lopenblas
void openblas_set_num_threads(int);
int blas_thread_shutdown_(void);
*/
import "C"

import "gonum.org/v1/netlib/blas/netlib"

func init() {
	C.openblas_set_num_threads(1)
	C.blas_thread_shutdown_()
	SetBLAS("openblas", netlib.Implementation{})
	rowSplit = true
}

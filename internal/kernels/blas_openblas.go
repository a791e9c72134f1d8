//go:build openblas

// OpenBLAS backend: build with `-tags openblas` and CGO_LDFLAGS=-lopenblas (Debian libopenblas-dev).
package kernels

import "gonum.org/v1/netlib/blas/netlib"

func init() { SetBLAS("openblas", netlib.Implementation{}) }

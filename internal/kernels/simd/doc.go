// Package simd holds the AVX2+FMA assembly behind package kernels' float32 hot loops on amd64: the gathered
// dot and axpy row kernels of sparse attention (one head, several heads side by side, several heads over
// one shared row), the ReLU·weight kernels of the lightning indexer and the exponential of the fast
// softmax. It is a package of its own because package kernels uses cgo in the OpenBLAS build, and a cgo
// package cannot hold Go assembly. Callers check Available (false off amd64, where the functions must not
// be called) and bounds-check every row.
package simd

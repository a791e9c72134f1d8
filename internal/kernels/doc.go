// Package kernels holds the CPU kernels shared by packages model and dsa: GEMM behind a swappable BLAS
// backend (Gemm, split by rows over the workers; GemmSerial for callers already on a worker; Linear; gonum
// by default, OpenBLAS with the openblas build tag), RMSNorm and LayerNorm,
// RoPE in MLA's interleaved and the DSA indexer's half-split layouts (dsv32-spec.md §8), softmax, SiLU and
// SwiGLU (SigmoidVec), the ReLU·weight kernels of the lightning indexer, the gathered row kernels of sparse attention,
// and a deterministic parallel-for (For, Threads). Every kernel is generic over float32 (training and
// inference) and float64 (finite-difference gradient checks); on amd64 with AVX2 and FMA the float32 hot
// loops run the assembly of package simd.
package kernels

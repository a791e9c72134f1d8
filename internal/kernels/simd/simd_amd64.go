// simd_amd64.go: declarations of the AVX2+FMA kernels of gather_amd64.s behind package kernels' gather.go,
// gather_heads.go, relu.go and softmax.go, and Available. Callers check Available and bounds-check every
// row; m ≥ 1 and n is a multiple of 8.

package simd

import "golang.org/x/sys/cpu"

// Available says whether the CPU runs these kernels (AVX2 and FMA).
var Available = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// GatherDot sets out[i] = alpha · x[0:n]·(row idx[i] of base, stride floats apart) for i < m.
//
//go:noescape
func GatherDot(out, x *float32, n int, base *float32, stride int, idx *int32, m int, alpha float32)

// GatherAxpy accumulates y[0:n] += Σ_{i<m} a[i]·(row idx[i] of base).
//
//go:noescape
func GatherAxpy(y *float32, n int, a, base *float32, stride int, idx *int32, m int)

// ScatterAxpy accumulates (row idx[i] of base) += a[i]·x[0:n] for i < m, in order.
//
//go:noescape
func ScatterAxpy(base *float32, stride int, idx *int32, a *float32, m int, x *float32, n int)

// ReluScale sets y[i] = a·max(x[i], 0) for i < n (n a multiple of 8).
//
//go:noescape
func ReluScale(y, x *float32, n int, a float32)

// ReluAxpy accumulates y[i] += a·max(x[i], 0) for i < n (n a multiple of 8).
//
//go:noescape
func ReluAxpy(y, x *float32, n int, a float32)

// ReluBackward returns Σ grad[i]·max(dst[i], 0) and overwrites dst[i] with grad[i]·w where dst[i] > 0, 0
// elsewhere (i < n, n a multiple of 8).
//
//go:noescape
func ReluBackward(dst, grad *float32, n int, w float32) float32

// ExpSub sets x[i] = exp(x[i] − m) for i < n (n a multiple of 8; relative error about 2e-7; arguments below
// −87 give 0) and returns the sum of the results.
//
//go:noescape
func ExpSub(x *float32, n int, m float32) float32

// Sigmoid sets s[i] = 1/(1+exp(−x[i])) for i < n (n a multiple of 8; the exp of ExpSub, −x clamped to ≤ 87;
// a NaN gives 0 or 1). s and x may be the same.
//
//go:noescape
func Sigmoid(s, x *float32, n int)

// SwiGLU sets h[i] = (a[i]·σ(a[i]))·u[i] for i < n (n a multiple of 8), σ as Sigmoid computes it: Sigmoid
// and the product in one pass, with the same bits.
//
//go:noescape
func SwiGLU(h, a, u *float32, n int)

// SwiGLUBackward sets, with s = σ(a[i]) as Sigmoid computes it, du[i] = (dh[i]·a[i])·s and
// da[i] = ((dh[i]·u[i])·s)·(1 + a[i]·(1 − s)) for i < n (n a multiple of 8), each product and sum rounded
// separately (no FMA), as package kernels' Go loop.
//
//go:noescape
func SwiGLUBackward(da, du, dh, a, u *float32, n int)

// Max returns the largest of x[0:n] (n ≥ 8, a multiple of 8).
//
//go:noescape
func Max(x *float32, n int) float32

// Scale multiplies x[i] by a for i < n (n a multiple of 8).
//
//go:noescape
func Scale(x *float32, n int, a float32)

// Axpy accumulates y[i] += a·x[i] for i < n (n a multiple of 8; product and sum rounded separately, as Go's
// loop on amd64).
//
//go:noescape
func Axpy(y, x *float32, n int, a float32)

// GatherDotHeads sets out[h·ldo + i] = alpha · x[h·n:(h+1)·n] · (row idx[i] of base)[h·n:(h+1)·n] for h < hg,
// i < m: hg heads whose rows lie side by side (ldob = ldo·4 bytes).
//
//go:noescape
func GatherDotHeads(out *float32, ldob int, x *float32, n, hg int, base *float32, stride int, idx *int32, m int, alpha float32)

// GatherAxpyHeads accumulates y[h·n + d] += Σ_{i<m} a[h·lda + i] · (row idx[i] of base)[h·n + d] for h < hg
// (ldab = lda·4 bytes).
//
//go:noescape
func GatherAxpyHeads(y *float32, n, hg int, a *float32, ldab int, base *float32, stride int, idx *int32, m int)

// ScatterAxpyHeads accumulates (row idx[i] of base)[h·n + d] += a[h·lda + i] · x[h·n + d] for h < hg, i < m, in
// order of i (ldab = lda·4 bytes).
//
//go:noescape
func ScatterAxpyHeads(base *float32, stride int, idx *int32, m int, a *float32, ldab int, x *float32, n, hg int)

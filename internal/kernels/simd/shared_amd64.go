// shared_amd64.go: declarations of the shared-row kernels of shared_amd64.s (several heads against one
// shared row per selected token: the absorbed MQA mode of sparse attention). hg is a multiple of 4, n a
// multiple of 16, m ≥ 1; callers bounds-check every row.

package simd

// GatherDotShared sets out[h·ldo + i] = alpha · x[h·n:(h+1)·n] · (row idx[i] of base)[0:n] for h < hg, i < m
// (ldob = ldo·4 bytes). It prefetches the whole rows (stride floats) ahead of use, of base and, when pf is not
// nil, of pf (a table with the same stride that a later kernel will touch at the same rows).
//
//go:noescape
func GatherDotShared(out *float32, ldob int, x *float32, n, hg int, base *float32, stride int, idx *int32, m int, alpha float32, pf *float32)

// GatherAxpyShared accumulates y[h·n + d] += Σ_{i<m} a[h·lda + i] · (row idx[i] of base)[d] for h < hg, d < n
// (ldab = lda·4 bytes).
//
//go:noescape
func GatherAxpyShared(y *float32, n, hg int, a *float32, ldab int, base *float32, stride int, idx *int32, m int)

// ScatterAxpyShared accumulates (row idx[i] of base)[d] += Σ_{h<hg} a[h·lda + i] · x[h·n + d] for i < m in
// order, d < n (ldab = lda·4 bytes).
//
//go:noescape
func ScatterAxpyShared(base *float32, stride int, idx *int32, m int, a *float32, ldab int, x *float32, n, hg int)

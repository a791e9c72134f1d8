//go:build amd64

// rowdot_amd64.go: declarations of the row-dot kernels of rowdot_amd64.s behind package kernels' rowdot.go.
// Callers check Available and the bounds; k is a positive multiple of 8.

package simd

// DotRows4x2 sets c[i·ldc + j] = a_i·b_j (adds it when acc ≠ 0) for the 4 rows a_i of a (lda floats apart)
// and the n rows b_j of b (ldb apart), n even and positive, k floats per row.
//
//go:noescape
func DotRows4x2(c *float32, ldc int, a *float32, lda int, b *float32, ldb int, n, k int, acc int)

// DotRows2x4 sets c[i·ldc + j] = a_i·b_j (adds it when acc ≠ 0) for the 2 rows a_i of a (lda floats apart)
// and the n rows b_j of b (ldb apart), n a positive multiple of 4, k floats per row: b is read once for both
// rows.
//
//go:noescape
func DotRows2x4(c *float32, ldc int, a *float32, lda int, b *float32, ldb int, n, k int, acc int)

// DotRows1x4 sets c[j] = a·b_j (adds it when acc ≠ 0) for the n rows b_j of b (ldb floats apart), n a positive
// multiple of 4, k floats per row.
//
//go:noescape
func DotRows1x4(c *float32, a *float32, b *float32, ldb int, n, k int, acc int)

// adamw_amd64.go: the declaration of adamw_amd64.s, behind package kernels' adamw.go.

package simd

// AdamW updates val, m, v from grad for i < n (n a multiple of 4) with c = {b1, 1−b1, b2, 1−b2, bc2, eps,
// stepSize, decay}, in float64 arithmetic, bit for bit as kernels.AdamW's Go loop.
//
//go:noescape
func AdamW(val, grad, m, v *float32, n int, c *[8]float64)

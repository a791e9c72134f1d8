//go:build amd64

// norm_amd64.go: declarations of norm_amd64.s: the RMSNorm passes behind package kernels' norm.go, Dot's
// lanes (blas.go) and the softmax gradient row (softmax.go). Callers check Available and the bounds; n is a
// multiple of 8 (of 4 for DotMul4 and DotLanes4).

package simd

// ScaleMul sets y[i] = (x[i]·rs)·gw[i] for i < n.
//
//go:noescape
func ScaleMul(y, x, gw *float32, n int, rs float32)

// DotMul4 returns Σ (a[i]·b[i])·c[i] over i < n, accumulated in four lanes (lane l the elements i ≡ l mod 4,
// in order) and added as (s0+s1)+(s2+s3).
//
//go:noescape
func DotMul4(a, b, c *float32, n int) float32

// RMSNormDx accumulates dx[i] += ((rs·gw[i])·dy[i]) − c·x[i] for i < n.
//
//go:noescape
func RMSNormDx(dx, gw, dy, x *float32, n int, rs, c float32)

// MulMulAcc accumulates acc[i] += (d[i]·x[i])·rs for i < n.
//
//go:noescape
func MulMulAcc(acc, d, x *float32, n int, rs float32)

// DotLanes4 sets lanes[l] = Σ a[i]·b[i] over i ≡ l (mod 4), i < n (n a multiple of 4), each lane summed in
// order from 0 with the product rounded before the sum: the four accumulators of package kernels' Dot.
//
//go:noescape
func DotLanes4(a, b *float32, n int, lanes *[4]float32)

// SoftmaxGrad sets d[i] = (p[i]·(d[i] − s))·scale for i < n.
//
//go:noescape
func SoftmaxGrad(d, p *float32, n int, s, scale float32)

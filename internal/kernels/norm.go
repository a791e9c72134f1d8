// norm.go: RMSNorm (Zhang & Sennrich 2019) as DeepSeek uses it: y = x / sqrt(mean(x²) + eps) · g, computed per
// row, and LayerNorm with weight and bias (the DSA indexer's key norm, dsv32-spec.md §1.2).

package kernels

import (
	"math"
	"unsafe"

	"github.com/sparrow-rl/sparrow/internal/kernels/simd"
)

// RMSNorm normalises n rows of width w read from x with row stride ldx (the first w columns from col0) into
// y [n, w], and stores the reciprocal RMS of each row in rstd [n] for the backward pass. Each row's Σx² is
// one float64 sum in order; rows go four at a time so that their four sums' adds overlap (the bits of one
// row alone), and the scaling runs in the assembly of package simd for float32 (simd.ScaleMul, the same bits).
func RMSNorm[T Float](y, rstd, x []T, n, w, ldx, col0 int, g []T, eps float64) {
	For((n+3)/4, 16*w, func(q int) {
		i0, i1 := 4*q, min(4*q+4, n)
		var ss [4]float64
		if i1-i0 == 4 {
			r0 := x[i0*ldx+col0 : i0*ldx+col0+w]
			r1 := x[(i0+1)*ldx+col0 : (i0+1)*ldx+col0+w]
			r2 := x[(i0+2)*ldx+col0 : (i0+2)*ldx+col0+w]
			r3 := x[(i0+3)*ldx+col0 : (i0+3)*ldx+col0+w]
			var s0, s1, s2, s3 float64
			for j := range r0 {
				v0, v1, v2, v3 := float64(r0[j]), float64(r1[j]), float64(r2[j]), float64(r3[j])
				s0 += v0 * v0
				s1 += v1 * v1
				s2 += v2 * v2
				s3 += v3 * v3
			}
			ss = [4]float64{s0, s1, s2, s3}
		} else {
			for i := i0; i < i1; i++ {
				for _, v := range x[i*ldx+col0 : i*ldx+col0+w] {
					ss[i-i0] += float64(v) * float64(v)
				}
			}
		}
		for i := i0; i < i1; i++ {
			r := T(1 / math.Sqrt(ss[i-i0]/float64(w)+eps))
			rstd[i] = r
			scaleMul(y[i*w:(i+1)*w], x[i*ldx+col0:i*ldx+col0+w], g[:w], r)
		}
	})
}

// scaleMul sets out[j] = (row[j]·r)·g[j].
func scaleMul[T Float](out, row, g []T, r T) {
	if rf, ok := any(row).([]float32); ok && gatherASM && len(row) >= 8 {
		n8 := len(rf) &^ 7
		simd.ScaleMul(unsafe.SliceData(any(out).([]float32)), unsafe.SliceData(rf), unsafe.SliceData(any(g).([]float32)), n8, float32(r))
		out, row, g = out[n8:], row[n8:], g[n8:]
	}
	for j, v := range row {
		out[j] = v * r * g[j]
	}
}

// RMSNormBackward accumulates dx (same layout as x) and dg from dy [n, w]:
// dx = r·g⊙dy − x·r³/w·Σ(g⊙dy⊙x),  dg = Σ_rows dy⊙x·r.
func RMSNormBackward[T Float](dx, dg, dy, x, rstd []T, n, w, ldx, col0 int, g []T) {
	if dx != nil {
		For(n, 6*w, func(i int) {
			row := x[i*ldx+col0 : i*ldx+col0+w]
			d := dy[i*w : (i+1)*w]
			r := rstd[i]
			s := dotMul4(g[:w], d, row)
			c := r * r * r * s / T(w)
			out := dx[i*ldx+col0 : i*ldx+col0+w]
			rmsNormDx(out, g[:w], d, row, r, c)
		})
	}
	if dg != nil {
		// one column block per worker, each dg[j] still summing the rows in order (the bits of one loop); wide
		// blocks keep the row reads contiguous
		nw := workers()
		cols := max(16, (w+nw-1)/nw)
		For((w+cols-1)/cols, 3*cols*n, func(c int) {
			j0, j1 := c*cols, min((c+1)*cols, w)
			g := dg[j0:j1]
			for i := 0; i < n; i++ {
				row := x[i*ldx+col0+j0 : i*ldx+col0+j1]
				d := dy[i*w+j0 : i*w+j1]
				mulMulAcc(g, d, row, rstd[i])
			}
		})
	}
}

// dotMul4 returns Σ g⊙d⊙x with four interleaved accumulators (elements j mod 4), added as (s0+s1)+(s2+s3)
// (simd.DotMul4 for float32 rows of a multiple of 4, the same bits).
func dotMul4[T Float](g, d, x []T) T {
	w := len(x)
	g, d = g[:w], d[:w]
	if xf, ok := any(x).([]float32); ok && gatherASM && w%4 == 0 {
		return T(simd.DotMul4(unsafe.SliceData(any(g).([]float32)), unsafe.SliceData(any(d).([]float32)), unsafe.SliceData(xf), w))
	}
	var s0, s1, s2, s3 T
	w4 := w &^ 3
	for j := 0; j < w4; j += 4 {
		s0 += g[j] * d[j] * x[j]
		s1 += g[j+1] * d[j+1] * x[j+1]
		s2 += g[j+2] * d[j+2] * x[j+2]
		s3 += g[j+3] * d[j+3] * x[j+3]
	}
	for j := w4; j < w; j++ {
		s0 += g[j] * d[j] * x[j]
	}
	return (s0 + s1) + (s2 + s3)
}

// rmsNormDx accumulates out[j] += (r·g[j])·d[j] − c·x[j] (simd.RMSNormDx for float32, the same bits).
func rmsNormDx[T Float](out, g, d, x []T, r, c T) {
	w := len(x)
	out, g, d = out[:w], g[:w], d[:w]
	if xf, ok := any(x).([]float32); ok && gatherASM && w >= 8 {
		n8 := w &^ 7
		simd.RMSNormDx(unsafe.SliceData(any(out).([]float32)), unsafe.SliceData(any(g).([]float32)),
			unsafe.SliceData(any(d).([]float32)), unsafe.SliceData(xf), n8, float32(r), float32(c))
		out, g, d, x = out[n8:], g[n8:], d[n8:], x[n8:]
	}
	for j, v := range x {
		out[j] += r*g[j]*d[j] - c*v
	}
}

// mulMulAcc accumulates acc[j] += (d[j]·x[j])·r (simd.MulMulAcc for float32, the same bits).
func mulMulAcc[T Float](acc, d, x []T, r T) {
	w := len(x)
	acc, d = acc[:w], d[:w]
	if xf, ok := any(x).([]float32); ok && gatherASM && w >= 8 {
		n8 := w &^ 7
		simd.MulMulAcc(unsafe.SliceData(any(acc).([]float32)), unsafe.SliceData(any(d).([]float32)), unsafe.SliceData(xf), n8, float32(r))
		acc, d, x = acc[n8:], d[n8:], x[n8:]
	}
	for j, v := range x {
		acc[j] += d[j] * v * r
	}
}

// norm.go: RMSNorm (Zhang & Sennrich 2019) as DeepSeek uses it: y = x / sqrt(mean(x²) + eps) · g, computed per
// row, and LayerNorm with weight and bias (the DSA indexer's key norm, dsv32-spec.md §1.2).

package kernels

import "math"

// RMSNorm normalises n rows of width w read from x with row stride ldx (the first w columns from col0) into
// y [n, w], and stores the reciprocal RMS of each row in rstd [n] for the backward pass.
func RMSNorm[T Float](y, rstd, x []T, n, w, ldx, col0 int, g []T, eps float64) {
	For(n, 4*w, func(i int) {
		row := x[i*ldx+col0 : i*ldx+col0+w]
		var ss float64
		for _, v := range row {
			ss += float64(v) * float64(v)
		}
		r := T(1 / math.Sqrt(ss/float64(w)+eps))
		rstd[i] = r
		out := y[i*w : (i+1)*w]
		for j, v := range row {
			out[j] = v * r * g[j]
		}
	})
}

// RMSNormBackward accumulates dx (same layout as x) and dg from dy [n, w]:
// dx = r·g⊙dy − x·r³/w·Σ(g⊙dy⊙x),  dg = Σ_rows dy⊙x·r.
func RMSNormBackward[T Float](dx, dg, dy, x, rstd []T, n, w, ldx, col0 int, g []T) {
	if dx != nil {
		For(n, 6*w, func(i int) {
			row := x[i*ldx+col0 : i*ldx+col0+w]
			d := dy[i*w : (i+1)*w]
			r := rstd[i]
			// Σ g⊙dy⊙x with four interleaved accumulators (elements j mod 4), added as (s0+s1)+(s2+s3)
			var s0, s1, s2, s3 T
			w4 := w &^ 3
			for j := 0; j < w4; j += 4 {
				s0 += g[j] * d[j] * row[j]
				s1 += g[j+1] * d[j+1] * row[j+1]
				s2 += g[j+2] * d[j+2] * row[j+2]
				s3 += g[j+3] * d[j+3] * row[j+3]
			}
			for j := w4; j < w; j++ {
				s0 += g[j] * d[j] * row[j]
			}
			s := (s0 + s1) + (s2 + s3)
			c := r * r * r * s / T(w)
			out := dx[i*ldx+col0 : i*ldx+col0+w]
			for j, v := range row {
				out[j] += r*g[j]*d[j] - c*v
			}
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
				r := rstd[i]
				for j, v := range row {
					g[j] += d[j] * v * r
				}
			}
		})
	}
}

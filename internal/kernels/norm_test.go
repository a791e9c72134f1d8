package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// rmsNormRef is RMSNorm one row at a time with the Go loops it had before the assembly: the reference of
// the bits.
func rmsNormRef(y, rstd, x []float32, n, w, ldx, col0 int, g []float32, eps float64) {
	for i := 0; i < n; i++ {
		row := x[i*ldx+col0 : i*ldx+col0+w]
		var ss float64
		for _, v := range row {
			ss += float64(v) * float64(v)
		}
		r := float32(1 / math.Sqrt(ss/float64(w)+eps))
		rstd[i] = r
		for j, v := range row {
			y[i*w+j] = v * r * g[j]
		}
	}
}

// rmsNormBackwardRef is RMSNormBackward's Go loops as they were before the assembly.
func rmsNormBackwardRef(dx, dg, dy, x, rstd []float32, n, w, ldx, col0 int, g []float32) {
	for i := 0; i < n; i++ {
		row := x[i*ldx+col0 : i*ldx+col0+w]
		d := dy[i*w : (i+1)*w]
		r := rstd[i]
		var s0, s1, s2, s3 float32
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
		c := r * r * r * s / float32(w)
		out := dx[i*ldx+col0 : i*ldx+col0+w]
		for j, v := range row {
			out[j] += r*g[j]*d[j] - c*v
		}
	}
	for i := 0; i < n; i++ {
		row := x[i*ldx+col0 : i*ldx+col0+w]
		d := dy[i*w : (i+1)*w]
		for j, v := range row {
			dg[j] += d[j] * v * rstd[i]
		}
	}
}

// TestRMSNormBits: RMSNorm and RMSNormBackward on float32 (rows four at a time, the simd passes; and with
// the assembly off) give the bits of the one-row Go loops, for row counts around the group of 4, widths
// around the 8-wide step, a column block of wider rows, accumulating into dx and dg.
func TestRMSNormBits(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	for _, asm := range []bool{true, false} {
		if asm && !gatherASM {
			continue
		}
		for _, w := range []int{5, 8, 12, 64, 256} {
			for _, n := range []int{1, 3, 4, 5, 8, 9} {
				t.Run(fmt.Sprintf("asm=%v/w=%d/n=%d", asm, w, n), func(t *testing.T) {
					defer func(prev bool) { gatherASM = prev }(gatherASM)
					gatherASM = asm
					const col0, pad = 2, 3
					ldx := w + col0 + pad
					rnd := func(k int, scale float64) []float32 {
						v := make([]float32, k)
						for i := range v {
							v[i] = float32(rng.NormFloat64() * scale)
						}
						return v
					}
					x, g, dy := rnd(n*ldx, 3), rnd(w, 1), rnd(n*w, 1)
					y, rstd := make([]float32, n*w), make([]float32, n)
					yRef, rstdRef := make([]float32, n*w), make([]float32, n)
					RMSNorm(y, rstd, x, n, w, ldx, col0, g, 1e-6)
					rmsNormRef(yRef, rstdRef, x, n, w, ldx, col0, g, 1e-6)
					same(t, "rstd", rstd, rstdRef)
					same(t, "y", y, yRef)
					dx0, dg0 := rnd(n*ldx, 1), rnd(w, 1)
					dx, dg := append([]float32(nil), dx0...), append([]float32(nil), dg0...)
					dxRef, dgRef := append([]float32(nil), dx0...), append([]float32(nil), dg0...)
					RMSNormBackward(dx, dg, dy, x, rstd, n, w, ldx, col0, g)
					rmsNormBackwardRef(dxRef, dgRef, dy, x, rstdRef, n, w, ldx, col0, g)
					same(t, "dx", dx, dxRef)
					same(t, "dg", dg, dgRef)
				})
			}
		}
	}
}

func same(t *testing.T, name string, got, want []float32) {
	t.Helper()
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s[%d] = %v, reference %v", name, i, got[i], want[i])
		}
	}
}

// TestRMSNormGolden: one row by hand, and the backward against float64 central differences of
// L = Σ c⊙y over 5 rows (rows 0-3 in the group of four, row 4 alone).
func TestRMSNormGolden(t *testing.T) {
	// x = [3, 4], g = [1, 2], eps = 0: mean(x²) = 12.5, r = 1/√12.5, y = [3r, 8r]
	y, rstd := make([]float64, 2), make([]float64, 1)
	RMSNorm(y, rstd, []float64{3, 4}, 1, 2, 2, 0, []float64{1, 2}, 0)
	r := 1 / math.Sqrt(12.5)
	if math.Abs(rstd[0]-r) > 1e-15 || math.Abs(y[0]-3*r) > 1e-15 || math.Abs(y[1]-8*r) > 1e-15 {
		t.Fatalf("RMSNorm([3 4]) = %v (rstd %v), want [%v %v] (%v)", y, rstd[0], 3*r, 8*r, r)
	}

	rng := rand.New(rand.NewPCG(23, 24))
	const n, w, ldx, col0, eps = 5, 6, 9, 1, 1e-6
	x, g, c := make([]float64, n*ldx), make([]float64, w), make([]float64, n*w)
	for _, v := range [][]float64{x, g, c} {
		for i := range v {
			v[i] = rng.NormFloat64()
		}
	}
	loss := func() float64 {
		y, rs := make([]float64, n*w), make([]float64, n)
		RMSNorm(y, rs, x, n, w, ldx, col0, g, eps)
		var l float64
		for i := range y {
			l += c[i] * y[i]
		}
		return l
	}
	y, rstd = make([]float64, n*w), make([]float64, n)
	RMSNorm(y, rstd, x, n, w, ldx, col0, g, eps)
	dx, dg := make([]float64, n*ldx), make([]float64, w)
	RMSNormBackward(dx, dg, c, x, rstd, n, w, ldx, col0, g)
	const h = 1e-6
	check := func(name string, v []float64, i int, grad float64) {
		old := v[i]
		v[i] = old + h
		lp := loss()
		v[i] = old - h
		lm := loss()
		v[i] = old
		if fd := (lp - lm) / (2 * h); math.Abs(fd-grad) > 1e-6*(1+math.Abs(fd)) {
			t.Fatalf("d%s[%d] = %v, finite difference %v", name, i, grad, fd)
		}
	}
	for i := 0; i < n; i++ {
		for j := 0; j < w; j++ {
			check("x", x, i*ldx+col0+j, dx[i*ldx+col0+j])
		}
	}
	for j := 0; j < w; j++ {
		check("g", g, j, dg[j])
	}
}

// gather_test.go: golden values of the gathered kernels, the AVX2 assembly against the Go loops (single and
// multi-head versions) and the bounds check.
package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestGatherGolden: hand-computed values on a 3×2 matrix (Go path; widths below 8 never use the assembly).
func TestGatherGolden(t *testing.T) {
	base := []float64{1, 2, 3, 4, 5, 6} // rows (1,2) (3,4) (5,6)
	idx := []int32{2, 0, 2}
	out := make([]float64, 3)
	GatherDot(out, []float64{1, -1}, base, 2, idx, 2) // 2·(5−6), 2·(1−2), 2·(5−6)
	if out[0] != -2 || out[1] != -2 || out[2] != -2 {
		t.Fatalf("GatherDot = %v, want [-2 -2 -2]", out)
	}
	y := []float64{1, 1}
	GatherAxpy(y, []float64{1, 2, 0.5}, base, 2, idx) // (1,1) + (5,6) + 2·(1,2) + 0.5·(5,6)
	if y[0] != 1+5+2+2.5 || y[1] != 1+6+4+3 {
		t.Fatalf("GatherAxpy = %v, want [10.5 14]", y)
	}
	b := append([]float64(nil), base...)
	ScatterAxpy(b, 2, idx, []float64{1, 2, 3}, []float64{1, 10}) // row 2 += 4·(1,10), row 0 += 2·(1,10)
	want := []float64{3, 22, 3, 4, 9, 46}
	for i := range want {
		if b[i] != want[i] {
			t.Fatalf("ScatterAxpy = %v, want %v", b, want)
		}
	}
}

// TestGatherASMAgainstGo: the float32 assembly (when the CPU has it) against the Go loops, for widths that
// exercise the 32-wide and 8-wide paths, a row stride wider than the width, and repeated indices.
func TestGatherASMAgainstGo(t *testing.T) {
	if !gatherASM {
		t.Skip("no AVX2+FMA: the assembly is not used on this CPU")
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for _, c := range []struct{ n, stride, rows, m int }{{8, 8, 5, 3}, {32, 40, 9, 7}, {96, 96, 300, 256}, {64, 160, 50, 64}, {40, 48, 6, 1}} {
		base := make([]float32, c.rows*c.stride)
		for i := range base {
			base[i] = float32(rng.NormFloat64())
		}
		x, a := make([]float32, c.n), make([]float32, c.m)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		for i := range a {
			a[i] = float32(rng.NormFloat64())
		}
		idx := make([]int32, c.m)
		for i := range idx {
			idx[i] = int32(rng.IntN(c.rows))
		}
		run := func(asm bool) (dot, y, sc []float32) {
			gatherASM = asm
			defer func() { gatherASM = true }()
			dot, y, sc = make([]float32, c.m), make([]float32, c.n), append([]float32(nil), base...)
			copy(y, x)
			GatherDot(dot, x, base, c.stride, idx, 0.5)
			GatherAxpy(y, a, base, c.stride, idx)
			ScatterAxpy(sc, c.stride, idx, a, x)
			return
		}
		d1, y1, s1 := run(true)
		d0, y0, s0 := run(false)
		for name, p := range map[string][2][]float32{"GatherDot": {d1, d0}, "GatherAxpy": {y1, y0}, "ScatterAxpy": {s1, s0}} {
			for i := range p[0] {
				if math.Abs(float64(p[0][i]-p[1][i])) > 1e-4*(1+math.Abs(float64(p[1][i]))) {
					t.Fatalf("n=%d stride=%d m=%d %s[%d]: assembly %v, Go %v", c.n, c.stride, c.m, name, i, p[0][i], p[1][i])
				}
			}
		}
	}
}

// TestGatherBounds: a row outside the matrix panics instead of reading past it.
func TestGatherBounds(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic for a row outside the matrix")
		}
	}()
	GatherDot(make([]float32, 1), make([]float32, 8), make([]float32, 16), 8, []int32{2}, 1)
}

// TestGatherHeads: the multi-head kernels equal a loop of the single-head ones (Go loops), with and without
// the assembly; golden values for two heads of width 1 (Go path).
func TestGatherHeads(t *testing.T) {
	base := []float64{1, 2, 3, 4, 5, 6} // rows (1 | 2), (3 | 4), (5 | 6): two heads of width 1
	out := make([]float64, 2*3)
	GatherDotHeads(out, 3, []float64{10, 100}, 2, base, 2, []int32{2, 0}, 1)
	if want := []float64{50, 10, 0, 600, 200, 0}; !equalF64(out, want) {
		t.Fatalf("GatherDotHeads = %v, want %v", out, want)
	}
	rng := rand.New(rand.NewPCG(9, 10))
	for _, c := range []struct{ heads, n, rows, m int }{{4, 96, 50, 40}, {4, 64, 30, 17}, {2, 40, 9, 5}, {1, 8, 4, 3}} {
		stride := c.heads*c.n + 8
		base := make([]float32, c.rows*stride)
		for i := range base {
			base[i] = float32(rng.NormFloat64())
		}
		x := make([]float32, c.heads*c.n)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		ld := c.m + 3
		a := make([]float32, c.heads*ld)
		for i := range a {
			a[i] = float32(rng.NormFloat64())
		}
		idx := make([]int32, c.m)
		for i := range idx {
			idx[i] = int32(rng.IntN(c.rows))
		}
		type res struct{ dot, y, sc []float32 }
		multi := func(asm bool) res {
			gatherASM = asm
			defer func() { gatherASM = true }()
			r := res{make([]float32, c.heads*ld), append([]float32(nil), x...), append([]float32(nil), base...)}
			GatherDotHeads(r.dot, ld, x, c.heads, base, stride, idx, 0.5)
			GatherAxpyHeads(r.y, c.heads, a, ld, base, stride, idx)
			ScatterAxpyHeads(r.sc, stride, idx, a, ld, x, c.heads)
			return r
		}
		gatherASM = false
		ref := res{make([]float32, c.heads*ld), append([]float32(nil), x...), append([]float32(nil), base...)}
		for h := range c.heads {
			GatherDot(ref.dot[h*ld:h*ld+c.m], x[h*c.n:(h+1)*c.n], base[h*c.n:], stride, idx, 0.5)
			GatherAxpy(ref.y[h*c.n:(h+1)*c.n], a[h*ld:h*ld+c.m], base[h*c.n:], stride, idx)
			ScatterAxpy(ref.sc[h*c.n:], stride, idx, a[h*ld:h*ld+c.m], x[h*c.n:(h+1)*c.n])
		}
		gatherASM = true
		for _, asm := range []bool{false, true} {
			got := multi(asm)
			for name, p := range map[string][2][]float32{"dot": {got.dot, ref.dot}, "axpy": {got.y, ref.y}, "scatter": {got.sc, ref.sc}} {
				for i := range p[1] {
					if math.Abs(float64(p[0][i]-p[1][i])) > 1e-4*(1+math.Abs(float64(p[1][i]))) {
						t.Fatalf("heads=%d n=%d asm=%v %s[%d]: %v, want %v", c.heads, c.n, asm, name, i, p[0][i], p[1][i])
					}
				}
			}
		}
	}
}

// activation_test.go: the vectorised float32 sigmoid and SwiGLU kernels against float64 math.Exp, with
// golden values and the clamp at the ends of the range; the assembly Axpy against the Go loop, bit for bit.
package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestSigmoidVec compares the float32 kernel (assembly where available, and the Go loop) with float64 σ for
// lengths around the 8-wide step and arguments out to ±200.
func TestSigmoidVec(t *testing.T) {
	// golden: σ(0) = 1/2, σ(ln 3) = 3/4, σ(−ln 3) = 1/4; σ(±200) = 1, 0 (to float32 precision).
	golden := []struct{ x, want float64 }{{0, 0.5}, {math.Log(3), 0.75}, {-math.Log(3), 0.25}, {200, 1}, {-200, 0}}
	for _, asm := range []bool{true, false} {
		if asm && !gatherASM {
			continue
		}
		func() {
			defer func(prev bool) { gatherASM = prev }(gatherASM)
			gatherASM = asm
			x := make([]float32, 0, 16)
			for len(x) < 16 {
				for _, g := range golden {
					x = append(x, float32(g.x))
				}
			}
			x = x[:16]
			s := make([]float32, len(x))
			SigmoidVec(s, x)
			for i, v := range s {
				want := golden[i%len(golden)].want
				if math.Abs(float64(v)-want) > 1e-7 {
					t.Fatalf("asm=%v: σ(%v) = %v, want %v", asm, x[i], v, want)
				}
			}
			rng := rand.New(rand.NewPCG(3, 4))
			for _, c := range []struct {
				n     int
				scale float64
			}{{1, 1}, {7, 3}, {8, 3}, {13, 10}, {256, 5}, {259, 60}} {
				x := make([]float32, c.n)
				for i := range x {
					x[i] = float32(rng.NormFloat64() * c.scale)
				}
				s := make([]float32, c.n)
				SigmoidVec(s, x)
				for i, v := range s {
					ref := 1 / (1 + math.Exp(-float64(x[i])))
					if d := math.Abs(float64(v) - ref); d > 3e-7*ref+1e-37 {
						t.Fatalf("asm=%v n=%d: σ(%v) = %v, want %v (error %g)", asm, c.n, x[i], v, ref, d)
					}
				}
			}
		}()
	}
}

// TestSwiGLUFloat32 checks the float32 SwiGLU forward and backward against the same formulas in float64.
func TestSwiGLUFloat32(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const n = 203
	a, u, dh := make([]float32, n), make([]float32, n), make([]float32, n)
	a64, u64, dh64 := make([]float64, n), make([]float64, n), make([]float64, n)
	for i := range a {
		a[i], u[i], dh[i] = float32(rng.NormFloat64()*4), float32(rng.NormFloat64()), float32(rng.NormFloat64())
		a64[i], u64[i], dh64[i] = float64(a[i]), float64(u[i]), float64(dh[i])
	}
	h, da, du := make([]float32, n), make([]float32, n), make([]float32, n)
	h64, da64, du64 := make([]float64, n), make([]float64, n), make([]float64, n)
	SwiGLU(h, a, u)
	SwiGLUBackward(da, du, dh, a, u)
	SwiGLU(h64, a64, u64)
	SwiGLUBackward(da64, du64, dh64, a64, u64)
	for i := range h {
		for _, c := range []struct {
			name string
			got  float32
			want float64
		}{{"h", h[i], h64[i]}, {"da", da[i], da64[i]}, {"du", du[i], du64[i]}} {
			if d := math.Abs(float64(c.got) - c.want); d > 1e-6*math.Abs(c.want)+1e-7 {
				t.Fatalf("%s[%d] = %v, float64 %v (a=%v)", c.name, i, c.got, c.want, a[i])
			}
		}
	}
	// golden: a = 0 gives h = 0, du = 0 and da = dh·u·½.
	z := []float32{0, 0, 0, 0, 0, 0, 0, 0}
	one := []float32{2, 2, 2, 2, 2, 2, 2, 2}
	hz, daz, duz := make([]float32, 8), make([]float32, 8), make([]float32, 8)
	SwiGLU(hz, z, one)
	SwiGLUBackward(daz, duz, one, z, one)
	if hz[3] != 0 || duz[3] != 0 || daz[3] != 2 {
		t.Fatalf("SwiGLU at 0: h %v du %v da %v, want 0 0 2", hz[3], duz[3], daz[3])
	}
}

// TestSwiGLUAssemblyBits: the one-pass float32 assembly of SwiGLU and SwiGLUBackward gives the bits of the
// two passes it replaces, SigmoidVec then the Go loop (lengths around the 8-wide step; arguments past the
// exp clamp at ±87; ±0).
func TestSwiGLUAssemblyBits(t *testing.T) {
	if !gatherASM {
		t.Skip("no AVX2/FMA: SwiGLU runs the Go loop, which is the reference")
	}
	rng := rand.New(rand.NewPCG(11, 12))
	for _, n := range []int{1, 7, 8, 9, 16, 31, 203} {
		a, u, dh := make([]float32, n), make([]float32, n), make([]float32, n)
		for i := range a {
			a[i] = float32(rng.NormFloat64() * math.Pow(10, float64(rng.IntN(4)-1)))
			u[i], dh[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
		}
		a[0] = 100
		if n > 2 {
			a[1], a[2] = -100, float32(math.Copysign(0, -1))
		}
		// the two-pass reference
		hRef, daRef, duRef := make([]float32, n), make([]float32, n), make([]float32, n)
		SigmoidVec(hRef, a)
		for i, x := range a {
			hRef[i] = x * hRef[i] * u[i]
		}
		SigmoidVec(daRef, a)
		for i, x := range a {
			s := daRef[i]
			duRef[i] = dh[i] * x * s
			daRef[i] = dh[i] * u[i] * s * (1 + x*(1-s))
		}
		h, da, du := make([]float32, n), make([]float32, n), make([]float32, n)
		SwiGLU(h, a, u)
		SwiGLUBackward(da, du, dh, a, u)
		for i := range a {
			for _, c := range []struct {
				name      string
				got, want float32
			}{{"h", h[i], hRef[i]}, {"da", da[i], daRef[i]}, {"du", du[i], duRef[i]}} {
				if math.Float32bits(c.got) != math.Float32bits(c.want) {
					t.Fatalf("n=%d %s[%d] = %v, two passes %v (a=%v)", n, c.name, i, c.got, c.want, a[i])
				}
			}
		}
	}
}

// TestAxpyAssemblyBits: the float32 assembly path of Axpy gives the bits of the Go loop (lengths around the
// 8-wide step, values over several magnitudes).
func TestAxpyAssemblyBits(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for _, n := range []int{1, 7, 8, 9, 16, 31, 48, 257} {
		x, y := make([]float32, n), make([]float32, n)
		for i := range x {
			x[i] = float32(rng.NormFloat64() * math.Pow(10, float64(rng.IntN(7)-3)))
			y[i] = float32(rng.NormFloat64())
		}
		a := float32(rng.NormFloat64())
		ref := append([]float32(nil), y...)
		for i, v := range x {
			ref[i] += a * v
		}
		Axpy(a, x, y)
		for i := range y {
			if math.Float32bits(y[i]) != math.Float32bits(ref[i]) {
				t.Fatalf("n=%d [%d]: %v, Go loop %v", n, i, y[i], ref[i])
			}
		}
	}
}

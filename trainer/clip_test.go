// Tests of the global gradient norm, clipping and the finiteness check, with
// hand-computed norms.
package trainer

import (
	"math"
	"testing"
)

func TestGlobalNormAndClip(t *testing.T) {
	inf := float32(math.Inf(1))
	nan := float32(math.NaN())
	cases := []struct {
		name        string
		grads       [][]float32
		frozen      []bool
		maxNorm     float64
		wantNorm    float64
		wantClipped bool
		wantGrads   [][]float32
	}{
		// √(3²+4²+12²) = 13; scale 6.5/(13+1e-6).
		{"clipped", [][]float32{{3, 4}, {12}}, []bool{false, false}, 6.5, 13, true,
			[][]float32{{float32(3 * 6.5 / (13 + 1e-6)), float32(4 * 6.5 / (13 + 1e-6))}, {float32(12 * 6.5 / (13 + 1e-6))}}},
		{"under the limit", [][]float32{{3, 4}, {12}}, []bool{false, false}, 13, 13, false, [][]float32{{3, 4}, {12}}},
		{"disabled", [][]float32{{3, 4}, {12}}, []bool{false, false}, 0, 13, false, [][]float32{{3, 4}, {12}}},
		// The frozen group counts neither in the norm nor in the clipping: √(3²+4²)=5.
		{"frozen ignored", [][]float32{{3, 4}, {12}}, []bool{false, true}, 2.5, 5, true,
			[][]float32{{float32(3 * 2.5 / (5 + 1e-6)), float32(4 * 2.5 / (5 + 1e-6))}, {12}}},
		{"empty", [][]float32{{}, {}}, []bool{false, false}, 1, 0, false, [][]float32{{}, {}}},
		{"infinite untouched", [][]float32{{inf, 1}}, []bool{false}, 1, math.Inf(1), false, [][]float32{{inf, 1}}},
		// float32 squares would overflow; float64 accumulation does not.
		// 3·2⁶⁶ and 4·2⁶⁶ are exact float32 values; the norm is 5·2⁶⁶.
		{"large", [][]float32{{3 * 0x1p66, 4 * 0x1p66}}, []bool{false}, 1, 5 * 0x1p66, true,
			[][]float32{{float32(3 * 0x1p66 / (5*0x1p66 + 1e-6)), float32(4 * 0x1p66 / (5*0x1p66 + 1e-6))}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			groups := make([]ParamGroup, len(c.grads))
			for i, g := range c.grads {
				groups[i] = ParamGroup{Name: string(rune('a' + i)), Grad: append([]float32(nil), g...), Frozen: c.frozen[i]}
			}
			if n := GlobalNorm(groups); math.Abs(n-c.wantNorm) > 1e-9*math.Max(1, c.wantNorm) && !(math.IsInf(n, 1) && math.IsInf(c.wantNorm, 1)) {
				t.Errorf("GlobalNorm = %v, want %v", n, c.wantNorm)
			}
			norm, clipped := ClipGrads(groups, c.maxNorm)
			if clipped != c.wantClipped || (math.Abs(norm-c.wantNorm) > 1e-9*math.Max(1, c.wantNorm) && norm != c.wantNorm) {
				t.Errorf("ClipGrads = (%v, %v), want (%v, %v)", norm, clipped, c.wantNorm, c.wantClipped)
			}
			for i := range groups {
				for j, g := range groups[i].Grad {
					if w := c.wantGrads[i][j]; math.Float32bits(g) != math.Float32bits(w) {
						t.Errorf("grad[%d][%d] = %v, want %v", i, j, g, w)
					}
				}
			}
			if c.wantClipped {
				// Up to float32 rounding of the scaled gradients.
				if after := GlobalNorm(groups); math.Abs(after-c.maxNorm) > 1e-6*c.maxNorm {
					t.Errorf("norm after clipping %v, want %v", after, c.maxNorm)
				}
			}
		})
	}
	groups := []ParamGroup{{Name: "a", Grad: []float32{nan}}}
	if n, clipped := ClipGrads(groups, 1); !math.IsNaN(n) || clipped {
		t.Errorf("NaN gradient: ClipGrads = (%v, %v), want (NaN, false)", n, clipped)
	}
}

func TestAllFinite(t *testing.T) {
	cases := []struct {
		name   string
		grad   []float32
		frozen bool
		want   bool
	}{
		{"finite", []float32{1, -2, 0, math.MaxFloat32, -math.SmallestNonzeroFloat32}, false, true},
		{"nan", []float32{1, float32(math.NaN())}, false, false},
		{"+inf", []float32{float32(math.Inf(1)), 1}, false, false},
		{"-inf", []float32{float32(math.Inf(-1))}, false, false},
		{"frozen nan ignored", []float32{float32(math.NaN())}, true, true},
		{"empty", nil, false, true},
	}
	for _, c := range cases {
		groups := []ParamGroup{{Name: "ok", Grad: []float32{1}}, {Name: "x", Grad: c.grad, Frozen: c.frozen}}
		if got := AllFinite(groups); got != c.want {
			t.Errorf("%s: AllFinite = %v, want %v", c.name, got, c.want)
		}
	}
}

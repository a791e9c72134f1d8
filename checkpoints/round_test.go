package checkpoints

import (
	"math"
	"testing"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/model"
)

// TestRoundTo: bfloat16 keeps 7 mantissa bits (1 + 2⁻⁷ is the next value after 1), float16 keeps 10; both
// round to nearest with ties to even.
func TestRoundTo(t *testing.T) {
	p := func(e int) float32 { return float32(math.Ldexp(1, e)) }
	nan := float32(math.NaN())
	for _, c := range []struct {
		name  string
		x     float32
		dtype DType
		want  float32
	}{
		{"bf16 exact", 1 + p(-7), BF16, 1 + p(-7)},
		{"bf16 tie to even (down)", 1 + p(-8), BF16, 1},
		{"bf16 tie to even (up)", 1 + 3*p(-8), BF16, 1 + p(-6)},
		{"bf16 above the tie", 1 + p(-8) + p(-20), BF16, 1 + p(-7)},
		{"bf16 negative", -(1 + p(-8) + p(-20)), BF16, -(1 + p(-7))},
		{"bf16 keeps float32's range: 3e38 = 1.76325·2¹²⁷ → 226·2⁻⁷·2¹²⁷", 3e38, BF16, 1.765625 * p(127)},
		{"f16 tie to even", 1 + p(-11), F16, 1},
		{"f16 above the tie", 1 + p(-11) + p(-20), F16, 1 + p(-10)},
		{"f32 unchanged", 1 + p(-20), F32, 1 + p(-20)},
	} {
		if got := RoundTo(c.x, c.dtype); got != c.want {
			t.Errorf("%s: RoundTo(%g, %s) = %.10g, want %.10g", c.name, c.x, c.dtype, got, c.want)
		}
	}
	if got := RoundTo(nan, BF16); got == got {
		t.Errorf("RoundTo(NaN, BF16) = %g, want NaN", got)
	}
}

// TestCopyRounded: every tensor is rounded, the source is untouched, and a mismatched layout or dtype is
// refused.
func TestCopyRounded(t *testing.T) {
	c := configs.Default().Model
	c.HiddenSize, c.NumHiddenLayers = 32, 2
	src := model.NewParams(c)
	src.Init(3)
	orig := src.Clone()
	dst := model.NewParams(c)
	if err := CopyRounded(dst, src, BF16); err != nil {
		t.Fatal(err)
	}
	changed := 0
	for i := range src.Data {
		for j, v := range src.Data[i] {
			if orig.Data[i][j] != v {
				t.Fatalf("%s[%d]: source changed", src.Specs[i].Name, j)
			}
			if want := BF16ToF32(F32ToBF16(v)); dst.Data[i][j] != want {
				t.Fatalf("%s[%d] = %g, want %g", src.Specs[i].Name, j, dst.Data[i][j], want)
			}
			if dst.Data[i][j] != v {
				changed++
			}
		}
	}
	if changed == 0 {
		t.Fatal("rounding to bfloat16 changed no weight")
	}
	if err := CopyRounded(dst, src, "F8"); err == nil {
		t.Error("rounding to F8 was accepted")
	}
	c.NumHiddenLayers = 3
	if err := CopyRounded(model.NewParams(c), src, BF16); err == nil {
		t.Error("rounding into another layout was accepted")
	}
	for name, want := range map[string]DType{"": F32, "float32": F32, "bfloat16": BF16} {
		if got, err := RolloutDType(name); err != nil || got != want {
			t.Errorf("RolloutDType(%q) = %s, %v; want %s", name, got, err, want)
		}
	}
	if _, err := RolloutDType("fp8"); err == nil {
		t.Error(`RolloutDType("fp8") was accepted`)
	}
}

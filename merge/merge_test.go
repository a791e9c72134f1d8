// Tests of the merges on small tensors against values computed by hand.

package merge

import (
	"slices"
	"strings"
	"testing"
)

// base (0, 0, 0, 0, 1); specialists A = (1, −2, 0.5, 0, 1), B = (3, 1, −0.5, 0, 2), so τ_A = (1, −2, 0.5, 0, 0),
// τ_B = (3, 1, −0.5, 0, 1).
//
//	average:               ((1+3)/2, (−2+1)/2, 0, 0, (1+2)/2)             = (2, −0.5, 0, 0, 1.5)
//	task arithmetic λ=0.5: base + 0.5(τ_A+τ_B) = 0.5·(4, −1, 0, 0, 1) + base = (2, −0.5, 0, 0, 1.5)
//	task arithmetic λ=1:   (4, −1, 0, 0, 2)
//	TIES d=0.6 (keep ⌈3⌉ of 5), λ=1:
//	    τ̂_A keeps |−2|, |1|, |0.5| → (1, −2, 0.5, 0, 0);  τ̂_B keeps 3, then |1| twice (index 1 and 4) →
//	    (3, 1, 0, 0, 1) (the ±0.5 trimmed)
//	    γ = sgn(4, −1, 0.5, 0, 1) = (+, −, +, 0, +)
//	    disjoint mean: p0 (1+3)/2 = 2; p1 only −2 agrees → −2; p2 only 0.5 → 0.5; p3 none → 0; p4 only 1 → 1
//	    θ = base + τ_m = (2, −2, 0.5, 0, 2)
func TestMergeHandComputed(t *testing.T) {
	base := []float32{0, 0, 0, 0, 1}
	models := [][]float32{{1, -2, 0.5, 0, 1}, {3, 1, -0.5, 0, 2}}
	for _, c := range []struct {
		m    Method
		o    Options
		want []float32
	}{
		{Average, Options{}, []float32{2, -0.5, 0, 0, 1.5}},
		{TaskArithmetic, Options{Lambda: 0.5}, []float32{2, -0.5, 0, 0, 1.5}},
		{TaskArithmetic, Options{Lambda: 1}, []float32{4, -1, 0, 0, 2}},
		{TIES, Options{Lambda: 1, Density: 0.6}, []float32{2, -2, 0.5, 0, 2}},
		{TIES, Options{Lambda: 0.5, Density: 1}, []float32{1, -1, 0, 0, 1.5}}, // p2: γ = sgn(0), none agree; p4: only τ_B (τ_A is 0)
	} {
		got, err := Tensor(c.m, base, models, c.o)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s %+v: %v, want %v", c.m, c.o, got, c.want)
		}
	}
}

func TestTrim(t *testing.T) {
	got := Trim([]float64{0.1, -3, 2, -2, 0.5}, 0.5) // keep ⌈2.5⌉ = 3: −3, 2, −2 (index order at the tie)
	if want := []float64{0, -3, 2, -2, 0}; !slices.Equal(got, want) {
		t.Fatalf("Trim = %v, want %v", got, want)
	}
}

func TestMergeErrors(t *testing.T) {
	for _, c := range []struct {
		m      Method
		base   []float32
		models [][]float32
		o      Options
		want   string
	}{
		{Average, nil, nil, Options{}, "no model"},
		{Average, nil, [][]float32{{1}, {1, 2}}, Options{}, "model 1 has 2 values"},
		{TaskArithmetic, []float32{1}, [][]float32{{1, 2}}, Options{Lambda: 1}, "the base has 1 values"},
		{TIES, []float32{1}, [][]float32{{1}}, Options{Lambda: 1, Density: 0}, "density 0"},
		{"soup", []float32{1}, [][]float32{{1}}, Options{}, "unknown method"},
	} {
		if _, err := Tensor(c.m, c.base, c.models, c.o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.m, err, c.want)
		}
	}
}

// Tests of the exact kept-set reverse KL: hand-computed golden values, float64 finite differences of its
// gradient, zero for a student equal to its teacher and positive otherwise, and refused inputs.

package grpo

import (
	"math"
	"strings"
	"testing"
)

// TestExactKLGolden: three positions of a 5-token vocabulary with kept sets of 1, 2 and 5 ids, by hand.
func TestExactKLGolden(t *testing.T) {
	ln := math.Log
	cases := []struct {
		name     string
		z, logq  []float64
		kl       float64
		wantGrad []float64
	}{
		// a single kept id: p = q = 1 whatever the logits, KL = 0 and no gradient
		{"kept {3}", []float64{1.7}, []float64{ln(0.2)}, 0, []float64{0}},
		// z = (0, ln 3): p = (1/4, 3/4); teacher (0.1, 0.3) of the whole vocabulary renormalises to q = (1/4, 3/4)
		{"kept {1 4}, same shape", []float64{0, ln(3)}, []float64{ln(0.1), ln(0.3)}, 0, []float64{0, 0}},
		// z = (0, 0): p = (1/2, 1/2); q = (1/4, 3/4):
		// KL = ½ ln 2 + ½ ln(2/3) = ½ ln(4/3); ∂/∂z_v = p_v (ln(p_v/q_v) − KL)
		{"kept {0 2}", []float64{0, 0}, []float64{ln(0.25), ln(0.75)}, 0.5 * ln(4.0/3),
			[]float64{0.5 * (ln(2) - 0.5*ln(4.0/3)), 0.5 * (ln(2.0/3) - 0.5*ln(4.0/3))}},
		// the whole vocabulary of 5: z = (ln 1, ln 2, ln 3, ln 2, ln 2) → p = (.1 .2 .3 .2 .2); q uniform (.2 each):
		// KL = .1 ln .5 + .3 ln 1.5 (the .2 terms vanish)
		{"whole vocabulary", []float64{0, ln(2), ln(3), ln(2), ln(2)}, []float64{ln(.2), ln(.2), ln(.2), ln(.2), ln(.2)},
			0.1*ln(0.5) + 0.3*ln(1.5),
			[]float64{0.1 * (ln(0.5) - (0.1*ln(0.5) + 0.3*ln(1.5))), 0.2 * (0 - (0.1*ln(0.5) + 0.3*ln(1.5))),
				0.3 * (ln(1.5) - (0.1*ln(0.5) + 0.3*ln(1.5))), 0.2 * (0 - (0.1*ln(0.5) + 0.3*ln(1.5))), 0.2 * (0 - (0.1*ln(0.5) + 0.3*ln(1.5)))}},
	}
	for _, c := range cases {
		dz := make([]float64, len(c.z))
		kl, err := ExactKL(c.z, c.logq, dz)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if math.Abs(kl-c.kl) > 1e-12 {
			t.Errorf("%s: KL = %.15g, want %.15g", c.name, kl, c.kl)
		}
		for i := range dz {
			if math.Abs(dz[i]-c.wantGrad[i]) > 1e-12 {
				t.Errorf("%s: ∂KL/∂z_%d = %.15g, want %.15g", c.name, i, dz[i], c.wantGrad[i])
			}
		}
	}
}

// TestExactKLFiniteDifference checks ∂KL/∂z against central differences in float64 on sets of 1–6 ids.
func TestExactKLFiniteDifference(t *testing.T) {
	sets := [][2][]float64{
		{{0.3}, {-1.2}},
		{{0.3, -0.7}, {-0.2, -2.5}},
		{{1.1, -0.4, 0.25, 2.0}, {-1.0, -3.0, -0.5, -2.2}},
		{{-0.9, 0.6, 1.4, -2.1, 0.05, 0.8}, {-1.7, -1.9, -1.8, -0.9, -3.3, -2.0}},
	}
	const h = 1e-6
	for _, s := range sets {
		z, logq := append([]float64(nil), s[0]...), s[1]
		dz := make([]float64, len(z))
		if _, err := ExactKL(z, logq, dz); err != nil {
			t.Fatal(err)
		}
		scratch := make([]float64, len(z))
		for i := range z {
			z0 := z[i]
			z[i] = z0 + h
			up, _ := ExactKL(z, logq, scratch)
			z[i] = z0 - h
			down, _ := ExactKL(z, logq, scratch)
			z[i] = z0
			if num := (up - down) / (2 * h); math.Abs(num-dz[i]) > 1e-8 {
				t.Errorf("set of %d: ∂KL/∂z_%d = %.10g, finite difference %.10g", len(z), i, dz[i], num)
			}
		}
	}
}

// TestExactKLZeroAtTeacher: a student whose kept-set distribution equals the teacher's has KL 0 and zero
// gradient (also when the teacher's log-probabilities are over the whole vocabulary, not renormalised);
// any other student has KL > 0.
func TestExactKLZeroAtTeacher(t *testing.T) {
	logq := []float64{math.Log(0.05), math.Log(0.15), math.Log(0.3)} // mass 0.5 on the set
	z := []float64{math.Log(0.05) + 4, math.Log(0.15) + 4, math.Log(0.3) + 4}
	dz := make([]float64, 3)
	kl, err := ExactKL(z, logq, dz)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(kl) > 1e-15 {
		t.Errorf("student = teacher: KL = %g, want 0", kl)
	}
	for i, g := range dz {
		if math.Abs(g) > 1e-15 {
			t.Errorf("student = teacher: ∂KL/∂z_%d = %g, want 0", i, g)
		}
	}
	for _, dz0 := range []float64{1e-3, -0.5, 3} {
		z2 := append([]float64(nil), z...)
		z2[0] += dz0
		if kl, _ := ExactKL(z2, logq, dz); !(kl > 0) {
			t.Errorf("student ≠ teacher (z_0 moved by %g): KL = %g, want > 0", dz0, kl)
		}
	}
}

func TestExactKLErrors(t *testing.T) {
	cases := []struct {
		name        string
		z, logq, dz []float64
		want        string
	}{
		{"empty", nil, nil, nil, "want the same number > 0"},
		{"lengths", []float64{0, 1}, []float64{-1}, make([]float64, 2), "2 logits, 1 teacher"},
		{"teacher -inf", []float64{0, 1}, []float64{-1, math.Inf(-1)}, make([]float64, 2), "teacher log-probability 1 is -Inf"},
		{"logit NaN", []float64{math.NaN()}, []float64{-1}, make([]float64, 1), "logit 0 is NaN"},
	}
	for _, c := range cases {
		_, err := ExactKL(c.z, c.logq, c.dz)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want %q", c.name, err, c.want)
		}
	}
}

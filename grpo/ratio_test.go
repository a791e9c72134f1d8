// Golden tests of the ratio and the clipped surrogate (every branch, the kink
// convention), its equivalence with verl's min/max formulation over a grid, the
// finite-difference derivative, and the clip-bound checks.
package grpo

import (
	"math"
	"strings"
	"testing"
)

func TestSurrogateGolden(t *testing.T) {
	dapo := Clip{EpsLow: 0.2, EpsHigh: 0.28, DualClipC: 3}
	ppo := Clip{EpsLow: 0.2, EpsHigh: 0.2}
	tests := []struct {
		name           string
		logp, old, adv float64
		c              Clip
		s, ds, rho     float64
		state          ClipState
	}{
		// ρ = e^{−1−(−1.2)} = e^{0.2} = 1.2214027581601699 ≤ 1.28 → s = ds = −1·ρ
		{"A>0 inside clip-higher", -1, -1.2, 1, dapo, -1.2214027581601699, -1.2214027581601699, 1.2214027581601699, Unclipped},
		// same ρ with ε_high 0.2: ρ > 1.2 → s = −1·1.2, ds = 0
		{"A>0 clipped high", -1, -1.2, 1, ppo, -1.2, 0, 1.2214027581601699, ClippedHigh},
		// ρ = e^{−1} = 0.36787944117144233 < 0.8 but A > 0: no lower clip → s = ds = −ρ
		{"A>0 small ratio not clipped", -2, -1, 1, dapo, -0.36787944117144233, -0.36787944117144233, 0.36787944117144233, Unclipped},
		// ρ = e^{−0.5} = 0.6065306597126334 < 0.8, A = −0.5 → s = 0.5·0.8 = 0.4, ds = 0
		{"A<0 clipped low", -1, -0.5, -0.5, dapo, 0.4, 0, 0.6065306597126334, ClippedLow},
		// ρ = e^{−0.1} = 0.9048374180359595 ∈ [0.8, 3] → s = ds = 0.5·ρ = 0.45241870901797976
		{"A<0 unclipped", -2, -1.9, -0.5, dapo, 0.45241870901797976, 0.45241870901797976, 0.9048374180359595, Unclipped},
		// ρ = e^{1.5} = 4.4816890703380645 > c = 3, A = −2 → s = 2·3 = 6, ds = 0
		{"A<0 dual clipped", 0, -1.5, -2, dapo, 6, 0, 4.4816890703380645, DualClipped},
		// same without dual clip → s = ds = 2·4.4816890703380645 = 8.963378140676129
		{"A<0 large ratio, dual off", 0, -1.5, -2, ppo, 8.963378140676129, 8.963378140676129, 4.4816890703380645, Unclipped},
		// A > 0 with a large ratio is clipped high, the dual clip never applies to it: s = −2·1.28
		{"A>0 large ratio", 0, -1.5, 2, dapo, -2.56, 0, 4.4816890703380645, ClippedHigh},
		// kink: ε_high = 0, ρ = 1 exactly = 1 + ε_high → unclipped branch (strict >), ds = −1
		{"kink takes unclipped branch", -0.7, -0.7, 1, Clip{}, -1, -1, 1, Unclipped},
		{"A=0", -0.3, -1.5, 0, dapo, 0, 0, 3.3201169227365472, Unclipped},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, ds, rho, st := Surrogate(tc.logp, tc.old, tc.adv, tc.c)
			requireNear(t, "s", s, tc.s)
			requireNear(t, "ds", ds, tc.ds)
			requireNear(t, "rho", rho, tc.rho)
			if st != tc.state {
				t.Fatalf("state = %d, want %d", st, tc.state)
			}
			if tc.ds == 0 && ds != 0 {
				t.Fatalf("ds = %g, want exactly 0 on a clipped branch", ds)
			}
		})
	}
}

// verlSurrogate is verl's compute_policy_loss_vanilla for one token, written
// the way verl writes it (max of the two PPO losses, then min with the dual cap
// for A < 0), as an independent reference for the piecewise form.
func verlSurrogate(rho, adv float64, c Clip) float64 {
	l1 := -adv * rho
	l2 := -adv * math.Min(math.Max(rho, 1-c.EpsLow), 1+c.EpsHigh)
	l := math.Max(l1, l2)
	if adv < 0 && c.DualClipC > 0 {
		l = math.Min(l, -adv*c.DualClipC)
	}
	return l
}

// TestSurrogateMatchesVerlAndFD checks on a grid of ratios and advantages
// that the loss equals verl's formulation and that the derivative matches a
// central finite difference away from the kinks.
func TestSurrogateMatchesVerlAndFD(t *testing.T) {
	clips := []Clip{testClip, {EpsLow: 0.2, EpsHigh: 0.2}, {EpsLow: 0.1, EpsHigh: 0.3, DualClipC: 1.5}}
	advs := []float64{-2, -0.5, -1e-3, 0, 1e-3, 0.5, 2}
	const h = 1e-6
	for _, c := range clips {
		kinks := []float64{math.Log(1 - c.EpsLow), math.Log(1 + c.EpsHigh)}
		if c.DualClipC > 0 {
			kinks = append(kinks, math.Log(c.DualClipC))
		}
		for lr := -2.0; lr <= 2.0; lr += 0.0625 {
			for _, a := range advs {
				old := -1.3
				s, ds, rho, _ := Surrogate(old+lr, old, a, c)
				if v := verlSurrogate(rho, a, c); !near(s, v, 1e-15, 1e-14) {
					t.Fatalf("clip %+v lr %g A %g: s = %.17g, verl form %.17g", c, lr, a, s, v)
				}
				away := true
				for _, k := range kinks {
					if math.Abs(lr-k) < 1e-4 {
						away = false
					}
				}
				if !away {
					continue
				}
				sp, _, _, _ := Surrogate(old+lr+h, old, a, c)
				sm, _, _, _ := Surrogate(old+lr-h, old, a, c)
				if fd := (sp - sm) / (2 * h); !near(ds, fd, 1e-8, 1e-7) {
					t.Fatalf("clip %+v lr %g A %g: ds = %.12g, finite difference %.12g", c, lr, a, ds, fd)
				}
			}
		}
	}
}

func TestClipValidate(t *testing.T) {
	tests := []struct {
		c    Clip
		want string // "" = valid
	}{
		{Clip{0.2, 0.28, 3}, ""},
		{Clip{0, 0, 0}, ""},
		{Clip{0.2, 0.2, 1.0001}, ""},
		{Clip{-0.1, 0.2, 0}, "eps_low -0.1"},
		{Clip{math.NaN(), 0.2, 0}, "eps_low NaN"},
		{Clip{0.2, -1, 0}, "eps_high -1"},
		{Clip{0.2, math.Inf(1), 0}, "eps_high +Inf"},
		{Clip{0.2, 0.2, 1}, "dual_clip_c 1"},
		{Clip{0.2, 0.2, 0.5}, "dual_clip_c 0.5"},
		{Clip{0.2, 0.2, math.NaN()}, "dual_clip_c NaN"},
		{Clip{0.2, 0.2, math.Inf(1)}, "dual_clip_c +Inf"},
	}
	for _, tc := range tests {
		err := tc.c.Validate()
		if tc.want == "" {
			if err != nil {
				t.Errorf("%+v: %v", tc.c, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want %q", tc.c, err, tc.want)
		}
	}
}

// Golden tests of the group advantages: hand-computed means, sample standard
// deviations and normalised advantages, exact zeros for all-equal groups, the
// metrics, and the input errors.
package grpo

import (
	"math"
	"strings"
	"testing"
)

func TestGroupAdvantagesGolden(t *testing.T) {
	tests := []struct {
		name    string
		rewards []float64
		g       int
		std     bool
		eps     float64
		want    []float64
		stats   []GroupStat
		frac    float64 // FracZeroStd
		rMean   float64
		rStd    float64
	}{
		{
			// mean = 2/4 = .5 → [1−.5, 0−.5, 0−.5, 1−.5]; std = sqrt(4·.25/3) = sqrt(1/3) = 0.57735…
			name: "paper: mean-centred only", rewards: []float64{1, 0, 0, 1}, g: 4,
			want:  []float64{0.5, -0.5, -0.5, 0.5},
			stats: []GroupStat{{Mean: 0.5, Std: 0.5773502691896257}},
			rMean: 0.5, rStd: 0.5773502691896257,
		},
		{
			// ±.5 / sqrt(1/3) = ±sqrt(3)/2 = ±0.8660254037844386
			name: "std-normalised, eps 0", rewards: []float64{1, 0, 0, 1}, g: 4, std: true,
			want:  []float64{0.8660254037844386, -0.8660254037844386, -0.8660254037844386, 0.8660254037844386},
			stats: []GroupStat{{Mean: 0.5, Std: 0.5773502691896257}},
			rMean: 0.5, rStd: 0.5773502691896257,
		},
		{
			// .5 / (0.5773502691896257 + 1e-6) = 0.8660239037870368
			name: "std-normalised, eps 1e-6", rewards: []float64{1, 0, 0, 1}, g: 4, std: true, eps: 1e-6,
			want:  []float64{0.8660239037870368, -0.8660239037870368, -0.8660239037870368, 0.8660239037870368},
			stats: []GroupStat{{Mean: 0.5, Std: 0.5773502691896257}},
			rMean: 0.5, rStd: 0.5773502691896257,
		},
		{
			// mean 3 → [−2, −1, 3]; std = sqrt((4+1+9)/2) = sqrt(7) = 2.6457513110645907;
			// normalised: −2/√7, −1/√7, 3/√7
			name: "G=3 sample std", rewards: []float64{1, 2, 6}, g: 3, std: true,
			want:  []float64{-0.7559289460184544, -0.3779644730092272, 1.1338934190276817},
			stats: []GroupStat{{Mean: 3, Std: 2.6457513110645907}},
			rMean: 3, rStd: 2.6457513110645907,
		},
		{
			// group 0: mean 2 → [1, −1]; group 1 all equal → exact zeros, frac_zero_std 1/2;
			// batch: mean 8/4 = 2, std = sqrt((1+1+0+0)/3) = sqrt(2/3) = 0.816496580927726
			name: "two groups, one all-equal", rewards: []float64{3, 1, 2, 2}, g: 2,
			want:  []float64{1, -1, 0, 0},
			stats: []GroupStat{{Mean: 2, Std: 1.4142135623730951}, {Mean: 2, Std: 0, ZeroStd: true}},
			frac:  0.5, rMean: 2, rStd: 0.816496580927726,
		},
		{
			// mean of three 0.1 is 0.10000000000000002 in float64, so R − mean would be
			// −1.4e-17 and the std ~1e-17: an all-equal group must give exact zeros instead
			name: "all-equal floats, std on", rewards: []float64{0.1, 0.1, 0.1}, g: 3, std: true, eps: 1e-6,
			want: []float64{0, 0, 0},
			// (the std itself is rounding noise of ~1.7e-17, within the 1e-12 tolerance of 0)
			stats: []GroupStat{{Mean: 0.10000000000000002, Std: 0, ZeroStd: true}},
			frac:  1, rMean: 0.10000000000000002, rStd: 0,
		},
		{
			name: "empty batch", rewards: nil, g: 4,
			want: []float64{}, stats: []GroupStat{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, st, err := GroupAdvantages(tc.rewards, tc.g, tc.std, tc.eps)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("len = %d, want %d", len(got), len(tc.want))
			}
			for i := range got {
				requireNear(t, "adv", got[i], tc.want[i])
				if tc.want[i] == 0 && got[i] != 0 {
					t.Fatalf("adv[%d] = %g, want exactly 0", i, got[i])
				}
			}
			if len(st.Groups) != len(tc.stats) {
				t.Fatalf("groups = %d, want %d", len(st.Groups), len(tc.stats))
			}
			for g, w := range tc.stats {
				requireNear(t, "group mean", st.Groups[g].Mean, w.Mean)
				if !near(st.Groups[g].Std, w.Std, 1e-12, 1e-9) {
					t.Fatalf("group %d std = %g, want %g", g, st.Groups[g].Std, w.Std)
				}
				if st.Groups[g].ZeroStd != w.ZeroStd {
					t.Fatalf("group %d zero std = %v, want %v", g, st.Groups[g].ZeroStd, w.ZeroStd)
				}
			}
			requireNear(t, "frac zero std", st.FracZeroStd, tc.frac)
			requireNear(t, "reward mean", st.RewardMean, tc.rMean)
			if !near(st.RewardStd, tc.rStd, 1e-12, 1e-9) {
				t.Fatalf("reward std = %g, want %g", st.RewardStd, tc.rStd)
			}
		})
	}
}

func TestGroupAdvantagesErrors(t *testing.T) {
	tests := []struct {
		name    string
		rewards []float64
		g       int
		eps     float64
		want    string
	}{
		{"group of one", []float64{1, 2}, 1, 0, "group size 1"},
		{"group of zero", []float64{1, 2}, 0, 0, "group size 0"},
		{"ragged", []float64{1, 2, 3}, 2, 0, "3 rewards is not a multiple of group size 2"},
		{"NaN reward", []float64{1, math.NaN(), 0, 1}, 2, 0, "rewards[1] (group 0) = NaN"},
		{"Inf reward", []float64{1, 0, 0, math.Inf(1)}, 2, 0, "rewards[3] (group 1) = +Inf"},
		{"negative eps", []float64{1, 0}, 2, -1, "eps -1"},
		{"NaN eps", []float64{1, 0}, 2, math.NaN(), "eps NaN"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := GroupAdvantages(tc.rewards, tc.g, true, tc.eps)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// TestConfigAdvantages checks that Config.Advantages passes its switches on.
func TestConfigAdvantages(t *testing.T) {
	c := DefaultConfig()
	c.StdNormalize, c.StdEps = true, 0
	got, _, err := c.Advantages([]float64{1, 0, 0, 1}, 4)
	if err != nil {
		t.Fatal(err)
	}
	requireNear(t, "adv[0]", got[0], 0.8660254037844386)
}

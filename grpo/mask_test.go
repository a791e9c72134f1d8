// Golden tests of Off-Policy Sequence Masking (Eq. 9): hand-computed sequence
// means of ln(π_old/π_θ), the negative-advantage condition, loss-masked tokens
// left out of the mean, sequences without loss tokens, the disabling values of
// δ, and the input errors.
package grpo

import (
	"math"
	"strings"
	"testing"
)

// opsmBatch has six sequences, tokens interleaved:
//
//	seq 0, A = +0.5: ℓ_old − ℓ = −1.2+1 = −0.2, −0.5+0.5 = 0        → mean −0.1
//	seq 1, A = −0.5: −1.9+2 = 0.1, −0.5+1 = 0.5                     → mean 0.3
//	seq 2, A = −1:   −3+1 = −2 (loss token); 0+3 = 3 (loss_mask 0)  → mean −2 (0.5 if the masked token counted)
//	seq 3, A = −1:   one token with loss_mask 0 (NaN)               → no loss token, kept, not counted
//	seq 4, A = +2:   0+3 = 3                                        → mean 3, but A > 0
//	seq 5, A = 0:    0+3 = 3                                        → mean 3, but A = 0 is not < 0
func opsmBatch() (Layout, []float64, []float64, []float64) {
	l := Layout{
		Seq:      []int{0, 1, 2, 0, 1, 2, 3, 4, 5},
		LossMask: []uint8{1, 1, 1, 1, 1, 0, 0, 1, 1},
		NumSeqs:  6,
	}
	logp := []float64{-1, -2, -1, -0.5, -1, -3, math.NaN(), -3, -3}
	old := []float64{-1.2, -1.9, -3, -0.5, -0.5, 0, math.NaN(), 0, 0}
	adv := []float64{0.5, -0.5, -1, -1, 2, 0}
	return l, logp, old, adv
}

func TestOffPolicyMaskGolden(t *testing.T) {
	tests := []struct {
		name  string
		delta float64
		keep  []bool
		frac  float64
	}{
		// only seq 1 (A < 0, mean 0.3 > 0.25); 5 sequences have loss tokens → 1/5
		{"delta 0.25", 0.25, []bool{true, false, true, true, true, true}, 0.2},
		{"delta 0.05", 0.05, []bool{true, false, true, true, true, true}, 0.2},
		// 0.3 < 0.35: nothing masked
		{"delta 0.35", 0.35, []bool{true, true, true, true, true, true}, 0},
		{"delta 0 disables", 0, []bool{true, true, true, true, true, true}, 0},
		{"delta +Inf disables", math.Inf(1), []bool{true, true, true, true, true, true}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, logp, old, adv := opsmBatch()
			keep, frac, err := OffPolicyMask(l, logp, old, adv, tc.delta)
			if err != nil {
				t.Fatal(err)
			}
			for i := range keep {
				if keep[i] != tc.keep[i] {
					t.Fatalf("keep = %v, want %v", keep, tc.keep)
				}
			}
			requireNear(t, "frac", frac, tc.frac)
		})
	}
}

func TestOffPolicyMaskErrors(t *testing.T) {
	tests := []struct {
		name string
		edit func(l *Layout, logp, old, adv *[]float64, delta *float64)
		want string
	}{
		{"negative delta", func(_ *Layout, _, _, _ *[]float64, d *float64) { *d = -0.1 }, "opsm delta -0.1"},
		{"NaN delta", func(_ *Layout, _, _, _ *[]float64, d *float64) { *d = math.NaN() }, "opsm delta NaN"},
		{"NaN logp at a loss token", func(_ *Layout, lp, _, _ *[]float64, _ *float64) { (*lp)[1] = math.NaN() }, "logp[1] (sequence 1) = NaN"},
		{"Inf logp_old at a loss token", func(_ *Layout, _, o, _ *[]float64, _ *float64) { (*o)[0] = math.Inf(-1) }, "logp_old[0] (sequence 0) = -Inf"},
		{"NaN advantage", func(_ *Layout, _, _, a *[]float64, _ *float64) { (*a)[3] = math.NaN() }, "adv[3] = NaN"},
		{"advantages short", func(_ *Layout, _, _, a *[]float64, _ *float64) { *a = (*a)[:5] }, "adv has 5 values for 6 sequences"},
		{"logp short", func(_ *Layout, lp, _, _ *[]float64, _ *float64) { *lp = (*lp)[:3] }, "logp has 3 values for 9 tokens"},
		{"seq out of range", func(l *Layout, _, _, _ *[]float64, _ *float64) { l.Seq[2] = 6 }, "seq[2] = 6: outside [0, 6)"},
		{"negative seq", func(l *Layout, _, _, _ *[]float64, _ *float64) { l.Seq[2] = -1 }, "seq[2] = -1"},
		{"mask value 2", func(l *Layout, _, _, _ *[]float64, _ *float64) { l.LossMask[4] = 2 }, "loss_mask[4] = 2"},
		{"mask short", func(l *Layout, _, _, _ *[]float64, _ *float64) { l.LossMask = l.LossMask[:8] }, "loss_mask has 8 tokens, seq has 9"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, logp, old, adv := opsmBatch()
			delta := 0.25
			tc.edit(&l, &logp, &old, &adv, &delta)
			_, _, err := OffPolicyMask(l, logp, old, adv, delta)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// Tests of on-policy distillation: hand-computed golden values of the per-token advantages, the reverse-KL
// estimate and the loss with per-token advantages (alone and mixed with a reward advantage), float64
// finite-difference checks of ∂L/∂ℓ with per-token advantages over every aggregation, the identity
// ∂L/∂ℓ_t = w_t·λ·(ℓ_old − ℓ_T) at ρ = 1, and the errors.

package grpo

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// distillCfg is the surrogate without KL or masking, as the distill stage runs it.
func distillCfg(agg AggMode, maxLen int) Config {
	return Config{EpsLow: testClip.EpsLow, EpsHigh: testClip.EpsHigh, DualClipC: testClip.DualClipC, KL: KLNone, Agg: agg, MaxLen: maxLen}
}

// TestDistillGolden: one sequence of two tokens, ℓ_old = (−1, −2), ℓ_T = (−1.5, −0.5), λ = 1:
// Â = (−0.5, 1.5); the policy moved by ℓ − ℓ_old = (0.1, −0.1), so ρ = (e^0.1, e^−0.1), both inside the
// clip range; seq-mean-token-mean weighs each token 1/2:
//
//	L = −½(e^0.1·(−0.5) + e^−0.1·1.5) = −0.40233533400805777
//	∂L/∂ℓ = (−½e^0.1·(−0.5), −½e^−0.1·1.5) = (0.27629272951891193, −0.6786280635269697)
//
// mixed with a reward advantage 0.25 for the sequence: Â = (−0.25, 1.75),
//
//	L = −0.6535863760220086, ∂L/∂ℓ = (0.13814636475945596, −0.7917327407814646).
//
// The reverse KL estimate is ((−1) − (−1.5) + (−2) − (−0.5)) / 2 = (0.5 − 1.5)/2 = −0.5.
func TestDistillGolden(t *testing.T) {
	l := Layout{Seq: []int{0, 0}, LossMask: []uint8{1, 1}, NumSeqs: 1}
	old, teacher := []float64{-1, -2}, []float64{-1.5, -0.5}
	adv, err := DistillAdvantages(l, old, teacher, 1)
	if err != nil {
		t.Fatal(err)
	}
	requireNear(t, "Â_0", adv[0], -0.5)
	requireNear(t, "Â_1", adv[1], 1.5)
	kl, err := SampledReverseKL(l, old, teacher)
	if err != nil {
		t.Fatal(err)
	}
	requireNear(t, "reverse KL", kl.Mean(), -0.5)
	for _, c := range []struct {
		name           string
		seqAdv         float64
		loss, dl0, dl1 float64
	}{
		{"distill only", 0, -0.40233533400805777, 0.27629272951891193, -0.6786280635269697},
		{"with reward 0.25", 0.25, -0.6535863760220086, 0.13814636475945596, -0.7917327407814646},
	} {
		b := &Batch{Layout: l, Logp: []float64{-0.9, -2.1}, LogpOld: old, Adv: []float64{c.seqAdv}, TokenAdv: adv}
		norm, err := NormalizerOf(l)
		if err != nil {
			t.Fatal(err)
		}
		res, err := Loss(distillCfg(AggSeqMeanTokenMean, 2), b, norm)
		if err != nil {
			t.Fatal(err)
		}
		requireNear(t, c.name+" L", res.Loss, c.loss)
		requireNear(t, c.name+" ∂L/∂ℓ_0", res.DLossDLogp[0], c.dl0)
		requireNear(t, c.name+" ∂L/∂ℓ_1", res.DLossDLogp[1], c.dl1)
	}
	// masked tokens get no advantage and are not read
	lm := Layout{Seq: []int{0, 0}, LossMask: []uint8{1, 0}, NumSeqs: 1}
	adv, err = DistillAdvantages(lm, []float64{-1, 99}, []float64{-3, 99}, 2)
	if err != nil {
		t.Fatal(err)
	}
	requireNear(t, "Â_0 (λ 2)", adv[0], -4)
	requireNear(t, "Â_1 (masked)", adv[1], 0)
}

// TestDistillFiniteDifference: with random per-token advantages added to the sequence ones, ∂L/∂ℓ equals a
// central difference of L in float64 at every loss token, for every aggregation.
func TestDistillFiniteDifference(t *testing.T) {
	const h = 1e-6
	rng := rand.New(rand.NewPCG(17, 5))
	for _, agg := range allAggs {
		b := randomBatch(t, rng, 8, 7, 0, true)
		teacher := make([]float64, len(b.Seq))
		for i := range teacher {
			teacher[i] = b.LogpOld[i] - 2*rng.Float64() + 1
		}
		adv, err := DistillAdvantages(b.Layout, b.LogpOld, teacher, 0.7)
		if err != nil {
			t.Fatal(err)
		}
		b.TokenAdv = adv
		cfg := distillCfg(agg, 7)
		norm, err := NormalizerOf(b.Layout)
		if err != nil {
			t.Fatal(err)
		}
		res, err := Loss(cfg, b, norm)
		if err != nil {
			t.Fatal(err)
		}
		var checked int
		for tok := range b.Seq {
			if b.LossMask[tok] == 0 {
				continue
			}
			x := b.Logp[tok]
			at := func(v float64) float64 {
				b.Logp[tok] = v
				defer func() { b.Logp[tok] = x }()
				r, err := Loss(cfg, b, norm)
				if err != nil {
					t.Fatal(err)
				}
				return r.Loss
			}
			fd := (at(x+h) - at(x-h)) / (2 * h)
			if !near(res.DLossDLogp[tok], fd, 1e-9, 1e-6) {
				t.Fatalf("%s: token %d: ∂L/∂ℓ = %.12g, finite difference %.12g", agg, tok, res.DLossDLogp[tok], fd)
			}
			if res.DLossDLogp[tok] != 0 {
				checked++
			}
		}
		if checked == 0 {
			t.Fatalf("%s: every gradient is 0: nothing was checked", agg)
		}
	}
}

// TestDistillOnPolicyGradient: on policy (ℓ = ℓ_old, ρ = 1) the loss gradient of token t is
// w_t·λ·(ℓ_old,t − ℓ_T,t), the aggregated per-token reverse-KL gradient (score-function form).
func TestDistillOnPolicyGradient(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 9))
	b := randomBatch(t, rng, 8, 5, 0, false)
	copy(b.Logp, b.LogpOld)
	for i := range b.Adv {
		b.Adv[i] = 0
	}
	teacher := make([]float64, len(b.Seq))
	for i := range teacher {
		teacher[i] = b.LogpOld[i] - rng.Float64()
	}
	const lambda = 1.3
	adv, err := DistillAdvantages(b.Layout, b.LogpOld, teacher, lambda)
	if err != nil {
		t.Fatal(err)
	}
	b.TokenAdv = adv
	norm, err := NormalizerOf(b.Layout)
	if err != nil {
		t.Fatal(err)
	}
	cfg := distillCfg(AggSeqMeanTokenMean, 5)
	res, err := Loss(cfg, b, norm)
	if err != nil {
		t.Fatal(err)
	}
	w, err := Aggregator{Mode: cfg.Agg, Norm: norm, MaxLen: cfg.MaxLen}.Weights(b.Layout)
	if err != nil {
		t.Fatal(err)
	}
	for tok := range b.Seq {
		if b.LossMask[tok] == 1 {
			requireNear(t, "∂L/∂ℓ", res.DLossDLogp[tok], w[tok]*lambda*(b.LogpOld[tok]-teacher[tok]))
		}
	}
}

func TestDistillErrors(t *testing.T) {
	l := Layout{Seq: []int{0}, LossMask: []uint8{1}, NumSeqs: 1}
	for _, c := range []struct {
		name       string
		old, teach []float64
		coef       float64
		want       string
	}{
		{"negative coefficient", []float64{-1}, []float64{-1}, -1, "coefficient"},
		{"short teacher", []float64{-1}, nil, 1, "logp_teacher has 0 values"},
		{"NaN old", []float64{math.NaN()}, []float64{-1}, 1, "logp_old"},
	} {
		if _, err := DistillAdvantages(l, c.old, c.teach, c.coef); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		}
	}
	b := &Batch{Layout: l, Logp: []float64{-1}, LogpOld: []float64{-1}, Adv: []float64{0}, TokenAdv: []float64{}}
	norm, _ := NormalizerOf(l)
	if _, err := Loss(distillCfg(AggSeqMeanTokenMean, 1), b, norm); err == nil || !strings.Contains(err.Error(), "token_adv") {
		t.Errorf("short token_adv: %v", err)
	}
}

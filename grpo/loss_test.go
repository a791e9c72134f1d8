// Tests of the whole loss: golden values from testdata/loss_golden.json (every
// token's arithmetic written out there), a float64 finite-difference check of
// ∂L/∂logp for every token under every aggregation × KL estimator, micro-batch
// invariance of loss, gradient and metrics, loss-masked tokens that are never
// read and get no gradient, all-equal rewards, empty sequences, non-finite
// inputs and config errors.
package grpo

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
)

type goldenFile struct {
	Batch struct {
		Seq       []int     `json:"seq"`
		LossMask  []uint8   `json:"loss_mask"`
		Logp      []float64 `json:"logp"`
		LogpOld   []float64 `json:"logp_old"`
		LogpRef   []float64 `json:"logp_ref"`
		Rewards   []float64 `json:"rewards"`
		GroupSize int       `json:"group_size"`
	} `json:"batch"`
	Advantages []float64 `json:"advantages"`
	Cases      []struct {
		Name   string `json:"name"`
		Config struct {
			EpsLow    float64 `json:"eps_low"`
			EpsHigh   float64 `json:"eps_high"`
			DualClipC float64 `json:"dual_clip_c"`
			Beta      float64 `json:"beta"`
			KL        string  `json:"kl"`
			Delta     float64 `json:"delta"`
			Agg       string  `json:"agg"`
			MaxLen    int     `json:"max_len"`
		} `json:"config"`
		Want struct {
			Loss        float64   `json:"loss"`
			Grad        []float64 `json:"grad"`
			Keep        []bool    `json:"keep"`
			PGLoss      float64   `json:"pg_loss"`
			KLLoss      float64   `json:"kl_loss"`
			PGClipfrac  float64   `json:"pg_clipfrac"`
			OPSMFrac    float64   `json:"opsm_frac"`
			ISRatioMean float64   `json:"is_ratio_mean"`
			KL          float64   `json:"kl"`
		} `json:"want"`
		Derivation []string `json:"derivation"`
	} `json:"cases"`
}

func TestLossGolden(t *testing.T) {
	raw, err := os.ReadFile("testdata/loss_golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var g goldenFile
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatalf("testdata/loss_golden.json: %v", err)
	}
	if len(g.Cases) == 0 {
		t.Fatal("testdata/loss_golden.json: no cases")
	}
	// the fixture's advantages are the paper's: rewards [1,0,0,1] → mean .5 → [.5,−.5,−.5,.5]
	adv, _, err := GroupAdvantages(g.Batch.Rewards, g.Batch.GroupSize, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range adv {
		requireNear(t, "advantage", adv[i], g.Advantages[i])
	}
	b := &Batch{
		Layout: Layout{Seq: g.Batch.Seq, LossMask: g.Batch.LossMask, NumSeqs: len(adv)},
		Logp:   g.Batch.Logp, LogpOld: g.Batch.LogpOld, LogpRef: g.Batch.LogpRef, Adv: adv,
	}
	norm, err := NormalizerOf(b.Layout)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range g.Cases {
		t.Run(tc.Name, func(t *testing.T) {
			c := tc.Config
			cfg := Config{EpsLow: c.EpsLow, EpsHigh: c.EpsHigh, DualClipC: c.DualClipC, Beta: c.Beta,
				KL: KLKind(c.KL), Delta: c.Delta, Agg: AggMode(c.Agg), MaxLen: c.MaxLen}
			res, err := Loss(cfg, b, norm)
			if err != nil {
				t.Fatal(err)
			}
			w := tc.Want
			requireNear(t, "loss", res.Loss, w.Loss)
			for i := range w.Grad {
				requireNear(t, "dL/dlogp", res.DLossDLogp[i], w.Grad[i])
			}
			for i := range w.Keep {
				if res.Keep[i] != w.Keep[i] {
					t.Fatalf("keep = %v, want %v", res.Keep, w.Keep)
				}
			}
			m := res.Metrics.Map()
			requireNear(t, "actor/pg_loss", m["actor/pg_loss"], w.PGLoss)
			requireNear(t, "actor/kl_loss", m["actor/kl_loss"], w.KLLoss)
			requireNear(t, "actor/pg_clipfrac", m["actor/pg_clipfrac"], w.PGClipfrac)
			requireNear(t, "actor/opsm_frac", m["actor/opsm_frac"], w.OPSMFrac)
			requireNear(t, "rollout/is_ratio_mean", m["rollout/is_ratio_mean"], w.ISRatioMean)
			requireNear(t, "actor/kl", m["actor/kl"], w.KL)
			requireNear(t, "loss = pg_loss + β·kl_loss", res.Loss, m["actor/pg_loss"]+cfg.Beta*m["actor/kl_loss"])
		})
	}
}

// TestLossMetricsGolden checks the remaining metrics of the first golden case
// (seq 1 masked by OPSM, so the clip fractions count tokens 0, 1, 5, 6):
//
//	clip high: token 0 (A > 0, ρ = 1.2214 > 1.2) → 1/4; clip low: none (token 3 is masked) → 0
//	dual: token 5 (A < 0, ρ = e^{1.2} = 3.3201 > 3) → 1/4
//	ppo_kl = mean(ℓ_old − ℓ) over 6 tokens = (−0.2 + 0 + 0.1 + 0.5 − 1.2 − 0.05)/6 = −0.85/6
//	logp_mismatch = (0.2 + 0 + 0.1 + 0.5 + 1.2 + 0.05)/6 = 2.05/6
//	is_ratio min = e^{−0.5} = 0.6065306597126334 (token 3), max = e^{1.2} = 3.3201169227365472
func TestLossMetricsGolden(t *testing.T) {
	b := &Batch{
		Layout:  Layout{Seq: []int{0, 0, 1, 1, 1, 2, 3}, LossMask: []uint8{1, 1, 1, 1, 0, 1, 1}, NumSeqs: 4},
		Logp:    []float64{-1, -0.5, -2, -1, 0, -0.3, -0.2},
		LogpOld: []float64{-1.2, -0.5, -1.9, -0.5, 0, -1.5, -0.25},
		LogpRef: []float64{-1.1, -0.7, -2.1, -1, 0, -0.4, -0.2},
		Adv:     []float64{0.5, -0.5, -0.5, 0.5},
	}
	cfg := Config{EpsLow: 0.2, EpsHigh: 0.2, DualClipC: 3, Beta: 0.1, KL: KLUnbiased, Delta: 0.25, Agg: AggSeqMeanTokenMean}
	norm, _ := NormalizerOf(b.Layout)
	res, err := Loss(cfg, b, norm)
	if err != nil {
		t.Fatal(err)
	}
	m := res.Metrics.Map()
	want := map[string]float64{
		"actor/pg_clipfrac_high": 0.25,
		"actor/pg_clipfrac_low":  0,
		"actor/pg_clipfrac_dual": 0.25,
		"actor/ppo_kl":           -0.85 / 6,
		"rollout/logp_mismatch":  2.05 / 6,
		"rollout/is_ratio_min":   0.6065306597126334,
		"rollout/is_ratio_max":   3.3201169227365472,
	}
	for k, v := range want {
		got, ok := m[k]
		if !ok {
			t.Fatalf("metric %s missing", k)
		}
		requireNear(t, k, got, v)
	}
	if res.Metrics.Tokens != 6 || res.Metrics.PGTokens != 4 || res.Metrics.Seqs != 4 || res.Metrics.Masked != 1 {
		t.Fatalf("counts %+v", res.Metrics)
	}
}

var (
	allAggs = []AggMode{AggSeqMeanTokenMean, AggTokenMean, AggSeqMeanTokenSum, AggSeqMeanTokenSumNorm}
	allKLs  = []KLKind{KLNone, KLK1, KLK2, KLK3, KLUnbiased}
)

// TestLossFiniteDifference checks dL/dlogp of the whole loss against central
// differences for every token, under every aggregation and KL estimator, with
// OPSM on. The batch's log-ratios sit away from the clip kinks and its OPSM
// means away from δ, so every term is smooth within ±h.
func TestLossFiniteDifference(t *testing.T) {
	const h = 1e-6
	const delta = 0.2
	rng := rand.New(rand.NewPCG(7, 11))
	var seen Metrics // every branch must have been exercised
	for _, agg := range allAggs {
		for _, kl := range allKLs {
			b := randomBatch(t, rng, 8, 7, delta, true)
			cfg := Config{EpsLow: testClip.EpsLow, EpsHigh: testClip.EpsHigh, DualClipC: testClip.DualClipC,
				Beta: 0.3, KL: kl, Delta: delta, Agg: agg, MaxLen: 7}
			norm, err := NormalizerOf(b.Layout)
			if err != nil {
				t.Fatal(err)
			}
			res, err := Loss(cfg, b, norm)
			if err != nil {
				t.Fatal(err)
			}
			seen.Merge(res.Metrics)
			lossAt := func(tok int, x float64) float64 {
				saved := b.Logp[tok]
				b.Logp[tok] = x
				defer func() { b.Logp[tok] = saved }()
				r, err := Loss(cfg, b, norm)
				if err != nil {
					t.Fatal(err)
				}
				return r.Loss
			}
			var nonzero int
			for tok := range b.Seq {
				if b.LossMask[tok] == 0 {
					if res.DLossDLogp[tok] != 0 {
						t.Fatalf("%s/%s: token %d has loss_mask 0 but gradient %g", agg, kl, tok, res.DLossDLogp[tok])
					}
					continue
				}
				x := b.Logp[tok]
				fd := (lossAt(tok, x+h) - lossAt(tok, x-h)) / (2 * h)
				if !near(res.DLossDLogp[tok], fd, 1e-9, 1e-6) {
					t.Fatalf("%s/%s: token %d (seq %d, A %g, ρ %g): dL/dlogp = %.12g, finite difference %.12g",
						agg, kl, tok, b.Seq[tok], b.Adv[b.Seq[tok]], math.Exp(x-b.LogpOld[tok]), res.DLossDLogp[tok], fd)
				}
				if res.DLossDLogp[tok] != 0 {
					nonzero++
				}
			}
			if nonzero == 0 {
				t.Fatalf("%s/%s: every gradient is 0: the check checked nothing", agg, kl)
			}
		}
	}
	if seen.ClipHigh == 0 || seen.ClipLow == 0 || seen.DualClip == 0 || seen.Masked == 0 || seen.PGTokens == seen.ClipHigh+seen.ClipLow+seen.DualClip {
		t.Fatalf("the random batches missed a branch: %+v", seen)
	}
}

// TestLossMicroBatchInvariance splits random batches into micro-batches of whole
// sequences: summed losses, concatenated gradients and merged metrics equal the
// whole batch's, for every aggregation and KL estimator.
func TestLossMicroBatchInvariance(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 5))
	for _, agg := range allAggs {
		for _, kl := range allKLs {
			b := randomBatch(t, rng, 24, 9, 0.2, false)
			cfg := DefaultConfig()
			cfg.Agg, cfg.KL, cfg.MaxLen, cfg.Delta, cfg.Beta = agg, kl, 9, 0.2, 0.05
			whole, _ := NormalizerOf(b.Layout)
			want, err := Loss(cfg, b, whole)
			if err != nil {
				t.Fatal(err)
			}
			parts := 2 + rng.IntN(4)
			part := make([]int, b.NumSeqs)
			for i := range part {
				part[i] = rng.IntN(parts)
			}
			mbs, idx := split(b, parts, part)
			var ls []Layout
			for _, mb := range mbs {
				ls = append(ls, mb.Layout)
			}
			norm, err := NormalizerOf(ls...)
			if err != nil {
				t.Fatal(err)
			}
			var sum float64
			var m Metrics
			for p, mb := range mbs {
				r, err := Loss(cfg, mb, norm)
				if err != nil {
					t.Fatal(err)
				}
				sum += r.Loss
				m.Merge(r.Metrics)
				for k, t0 := range idx[p] {
					if !near(r.DLossDLogp[k], want.DLossDLogp[t0], 1e-15, 1e-12) {
						t.Fatalf("%s/%s: token %d gradient %g in micro-batch, %g in batch", agg, kl, t0, r.DLossDLogp[k], want.DLossDLogp[t0])
					}
				}
			}
			if !near(sum, want.Loss, 1e-14, 1e-12) {
				t.Fatalf("%s/%s: micro-batch losses sum to %.17g, batch loss %.17g", agg, kl, sum, want.Loss)
			}
			got, ref := m.Map(), want.Metrics.Map()
			if len(got) != len(ref) {
				t.Fatalf("%s/%s: merged metrics %v, batch metrics %v", agg, kl, got, ref)
			}
			for k, v := range ref {
				if !near(got[k], v, 1e-14, 1e-12) {
					t.Fatalf("%s/%s: merged %s = %.17g, batch %.17g", agg, kl, k, got[k], v)
				}
			}
		}
	}
}

// TestLossMaskedTokensNotRead checks that values at loss_mask 0 tokens are
// never read (NaN there changes nothing) and get a zero gradient, and that
// flipping one token's loss mask to 0 equals removing it.
func TestLossMaskedTokensNotRead(t *testing.T) {
	b := &Batch{
		Layout:  Layout{Seq: []int{0, 0, 0, 1, 1}, LossMask: []uint8{0, 1, 1, 1, 0}, NumSeqs: 2},
		Logp:    []float64{-0.4, -1, -0.5, -2, -0.1},
		LogpOld: []float64{-0.3, -1.2, -0.5, -1.9, -0.2},
		LogpRef: []float64{-0.4, -1.1, -0.7, -2.1, -0.3},
		Adv:     []float64{1, -1},
	}
	cfg := DefaultConfig()
	norm, _ := NormalizerOf(b.Layout)
	ref, err := Loss(cfg, b, norm)
	if err != nil {
		t.Fatal(err)
	}
	nan := *b
	nan.Logp = []float64{math.NaN(), -1, -0.5, -2, math.Inf(1)}
	nan.LogpOld = []float64{math.Inf(-1), -1.2, -0.5, -1.9, math.NaN()}
	nan.LogpRef = []float64{math.NaN(), -1.1, -0.7, -2.1, math.NaN()}
	got, err := Loss(cfg, &nan, norm)
	if err != nil {
		t.Fatalf("non-finite values at loss_mask 0: %v", err)
	}
	if got.Loss != ref.Loss || got.DLossDLogp[0] != 0 || got.DLossDLogp[4] != 0 {
		t.Fatalf("loss %v vs %v, gradient %v", got.Loss, ref.Loss, got.DLossDLogp)
	}
	for i := range got.DLossDLogp {
		if got.DLossDLogp[i] != ref.DLossDLogp[i] {
			t.Fatalf("gradient %v vs %v", got.DLossDLogp, ref.DLossDLogp)
		}
	}
	// dropping the masked tokens altogether gives the same loss
	short := &Batch{
		Layout:  Layout{Seq: []int{0, 0, 1}, LossMask: []uint8{1, 1, 1}, NumSeqs: 2},
		Logp:    []float64{-1, -0.5, -2},
		LogpOld: []float64{-1.2, -0.5, -1.9},
		LogpRef: []float64{-1.1, -0.7, -2.1},
		Adv:     []float64{1, -1},
	}
	ns, _ := NormalizerOf(short.Layout)
	rs, err := Loss(cfg, short, ns)
	if err != nil {
		t.Fatal(err)
	}
	requireNear(t, "loss without masked tokens", rs.Loss, ref.Loss)
}

// TestLossAllEqualRewards: a group whose rewards are all equal has advantages of
// exactly 0, so the surrogate gives no gradient; with β = 0 the whole gradient
// and loss are 0, with a KL term only the KL gradient remains.
func TestLossAllEqualRewards(t *testing.T) {
	adv, st, err := GroupAdvantages([]float64{0.7, 0.7, 0.7, 0.7}, 4, true, 1e-6)
	if err != nil {
		t.Fatal(err)
	}
	if st.FracZeroStd != 1 {
		t.Fatalf("frac zero std = %g", st.FracZeroStd)
	}
	b := &Batch{
		Layout:  Layout{Seq: []int{0, 0, 1, 2, 3, 3}, LossMask: []uint8{1, 1, 1, 1, 1, 1}, NumSeqs: 4},
		Logp:    []float64{-1, -0.5, -2, -0.3, -0.2, -3},
		LogpOld: []float64{-1.2, -0.5, -1.9, -1.5, -0.25, -0.5},
		LogpRef: []float64{-1.1, -0.7, -2.1, -0.4, -0.2, -2},
		Adv:     adv,
	}
	norm, _ := NormalizerOf(b.Layout)
	for _, kl := range allKLs {
		cfg := DefaultConfig()
		cfg.KL, cfg.Beta = kl, 0
		res, err := Loss(cfg, b, norm)
		if err != nil {
			t.Fatal(err)
		}
		if res.Loss != 0 {
			t.Fatalf("%s, β = 0: loss %g, want 0", kl, res.Loss)
		}
		for i, g := range res.DLossDLogp {
			if g != 0 {
				t.Fatalf("%s, β = 0: gradient[%d] = %g, want 0", kl, i, g)
			}
		}
		if res.Metrics.Masked != 0 {
			t.Fatalf("zero advantages must never be masked by OPSM, %d were", res.Metrics.Masked)
		}
		cfg.Beta = 0.5
		res, err = Loss(cfg, b, norm)
		if err != nil {
			t.Fatal(err)
		}
		w, _ := Aggregator{Mode: cfg.Agg, Norm: norm}.Weights(b.Layout)
		for i := range b.Seq {
			_, d := kl.Term(b.Logp[i], b.LogpOld[i], b.LogpRef[i])
			requireNear(t, "gradient = β·w·∂KL", res.DLossDLogp[i], 0.5*w[i]*d)
		}
	}
}

// TestLossEmptySequences: sequences without loss tokens (or a batch with none
// at all) change nothing and are not counted.
func TestLossEmptySequences(t *testing.T) {
	base := &Batch{
		Layout:  Layout{Seq: []int{0, 0, 1}, LossMask: []uint8{1, 1, 1}, NumSeqs: 2},
		Logp:    []float64{-1, -0.5, -2},
		LogpOld: []float64{-1.2, -0.5, -1.9},
		LogpRef: []float64{-1.1, -0.7, -2.1},
		Adv:     []float64{0.5, -0.5},
	}
	// the same plus sequence 2 with no token and sequence 3 with only a masked token
	more := &Batch{
		Layout:  Layout{Seq: []int{0, 3, 0, 1}, LossMask: []uint8{1, 0, 1, 1}, NumSeqs: 4},
		Logp:    []float64{-1, -9, -0.5, -2},
		LogpOld: []float64{-1.2, 0, -0.5, -1.9},
		LogpRef: []float64{-1.1, 0, -0.7, -2.1},
		Adv:     []float64{0.5, -0.5, -3, -3},
	}
	for _, agg := range allAggs {
		cfg := DefaultConfig()
		cfg.Agg, cfg.MaxLen = agg, 5
		n1, _ := NormalizerOf(base.Layout)
		n2, _ := NormalizerOf(more.Layout)
		if n1 != n2 {
			t.Fatalf("normalisers %+v vs %+v", n1, n2)
		}
		r1, err := Loss(cfg, base, n1)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := Loss(cfg, more, n2)
		if err != nil {
			t.Fatal(err)
		}
		requireNear(t, string(agg)+" loss", r2.Loss, r1.Loss)
		if !r2.Keep[2] || !r2.Keep[3] || r2.Metrics.Seqs != 2 {
			t.Fatalf("empty sequences: keep %v, seqs %d", r2.Keep, r2.Metrics.Seqs)
		}
	}
	// nothing to train at all: zero loss, no metric over an empty denominator
	none := &Batch{Layout: Layout{Seq: []int{0}, LossMask: []uint8{0}, NumSeqs: 1}, Logp: []float64{0}, LogpOld: []float64{0}, LogpRef: []float64{0}, Adv: []float64{1}}
	n, _ := NormalizerOf(none.Layout)
	r, err := Loss(DefaultConfig(), none, n)
	if err != nil || r.Loss != 0 || r.DLossDLogp[0] != 0 {
		t.Fatalf("empty batch: %+v %v", r, err)
	}
	if m := r.Metrics.Map(); len(m) != 2 {
		t.Fatalf("empty batch metrics %v: want only pg_loss and kl_loss", m)
	}
	zero := &Batch{}
	if r, err := Loss(DefaultConfig(), zero, Normalizer{}); err != nil || r.Loss != 0 {
		t.Fatalf("zero batch: %+v %v", r, err)
	}
}

// TestLossErrors: bad inputs fail with an error naming the field and index,
// never a silent NaN.
func TestLossErrors(t *testing.T) {
	mk := func() *Batch {
		return &Batch{
			Layout:  Layout{Seq: []int{0, 0, 1}, LossMask: []uint8{1, 1, 1}, NumSeqs: 2},
			Logp:    []float64{-1, -0.5, -2},
			LogpOld: []float64{-1.2, -0.5, -1.9},
			LogpRef: []float64{-1.1, -0.7, -2.1},
			Adv:     []float64{0.5, -0.5},
		}
	}
	tests := []struct {
		name string
		edit func(b *Batch, c *Config)
		want string
	}{
		{"NaN logp", func(b *Batch, _ *Config) { b.Logp[1] = math.NaN() }, "logp[1] (sequence 0) = NaN"},
		{"Inf logp_old", func(b *Batch, _ *Config) { b.LogpOld[2] = math.Inf(-1) }, "logp_old[2] (sequence 1) = -Inf"},
		{"NaN logp_ref", func(b *Batch, _ *Config) { b.LogpRef[0] = math.NaN() }, "logp_ref[0] (sequence 0) = NaN"},
		{"nil logp_ref with KL", func(b *Batch, _ *Config) { b.LogpRef = nil }, "kl unbiased needs the reference"},
		{"NaN advantage", func(b *Batch, _ *Config) { b.Adv[1] = math.NaN() }, "adv[1] = NaN"},
		{"advantages short", func(b *Batch, _ *Config) { b.Adv = b.Adv[:1] }, "adv has 1 values for 2 sequences"},
		{"ratio overflow", func(b *Batch, c *Config) { b.LogpOld[2] = -800; c.DualClipC = 0 }, "token 2 (sequence 1)"},
		{"bad config", func(_ *Batch, c *Config) { c.KL = "k4" }, `kl "k4"`},
		{"seq out of range", func(b *Batch, _ *Config) { b.Seq[0] = 2 }, "seq[0] = 2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, cfg := mk(), DefaultConfig()
			cfg.Delta = 0
			tc.edit(b, &cfg)
			_, err := Loss(cfg, b, Normalizer{Seqs: 2, Tokens: 3})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	// with KL none, no reference is needed
	b, cfg := mk(), DefaultConfig()
	b.LogpRef, cfg.KL = nil, KLNone
	if _, err := Loss(cfg, b, Normalizer{Seqs: 2, Tokens: 3}); err != nil {
		t.Fatalf("KL none without logp_ref: %v", err)
	}
	// a normaliser from a smaller batch is refused
	if _, err := Loss(DefaultConfig(), mk(), Normalizer{Seqs: 1, Tokens: 2}); err == nil || !strings.Contains(err.Error(), "normaliser") {
		t.Fatalf("small normaliser: err = %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	tests := []struct {
		name string
		edit func(c *Config)
		want string
	}{
		{"eps_low < 0", func(c *Config) { c.EpsLow = -0.2 }, "eps_low -0.2"},
		{"eps_high NaN", func(c *Config) { c.EpsHigh = math.NaN() }, "eps_high NaN"},
		{"dual clip 1", func(c *Config) { c.DualClipC = 1 }, "dual_clip_c 1"},
		{"beta < 0", func(c *Config) { c.Beta = -1 }, "beta -1"},
		{"beta Inf", func(c *Config) { c.Beta = math.Inf(1) }, "beta +Inf"},
		{"kl empty", func(c *Config) { c.KL = "" }, `kl ""`},
		{"delta < 0", func(c *Config) { c.Delta = -0.5 }, "opsm delta -0.5"},
		{"agg unknown", func(c *Config) { c.Agg = "mean" }, `agg "mean"`},
		{"sum-norm without max_len", func(c *Config) { c.Agg = AggSeqMeanTokenSumNorm }, "needs max_len > 0"},
		{"max_len < 0", func(c *Config) { c.MaxLen = -1 }, "max_len -1"},
		{"std eps < 0", func(c *Config) { c.StdEps = -1 }, "std_eps -1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.edit(&c)
			if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	for _, d := range []float64{0, math.Inf(1), 1e-3} {
		c := DefaultConfig()
		c.Delta = d
		if err := c.Validate(); err != nil {
			t.Fatalf("delta %g: %v", d, err)
		}
	}
}

package rollout

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestSamplerKeptSetAndLogp(t *testing.T) {
	logits := []float32{2, 1, 0, -1, 3}
	// τ = 1: p ∝ e^(2,1,0,−1,3)
	var z float64
	for _, v := range logits {
		z += math.Exp(float64(v))
	}
	p := func(i int) float64 { return math.Exp(float64(logits[i])) / z }
	cases := []struct {
		name string
		sp   SamplingParams
		kept []int32
	}{
		{"full", SamplingParams{Temperature: 1, TopP: 1}, nil},
		{"top_k_2", SamplingParams{Temperature: 1, TopP: 1, TopK: 2}, []int32{0, 4}},
		// sorted probs: 4 (.6364), 0 (.2341), 1 (.0861), 2 (.0317), 3 (.0117); p = 0.8: 0.6364 < 0.8 ≤ 0.8705 → {4, 0}
		{"top_p_0.8", SamplingParams{Temperature: 1, TopP: 0.8}, []int32{0, 4}},
		{"top_p_0.9", SamplingParams{Temperature: 1, TopP: 0.9}, []int32{0, 1, 4}},
		{"greedy", SamplingParams{Temperature: 0, TopP: 1}, []int32{4}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := &Sampler{P: c.sp}
			rng := rand.New(rand.NewPCG(1, 2))
			counts := map[int32]int{}
			for i := 0; i < 4000; i++ {
				tok, lp, kept := s.Draw(logits, rng)
				counts[tok]++
				if len(kept) != len(c.kept) {
					t.Fatalf("kept %v, want %v", kept, c.kept)
				}
				for j := range kept {
					if kept[j] != c.kept[j] {
						t.Fatalf("kept %v, want %v", kept, c.kept)
					}
				}
				var mass float64
				if c.kept == nil {
					mass = 1
				}
				for _, k := range c.kept {
					mass += p(int(k))
				}
				want := math.Log(p(int(tok)) / mass)
				if c.sp.Temperature == 0 {
					want = 0
				}
				if math.Abs(float64(lp)-want) > 1e-6 {
					t.Fatalf("logp(%d) = %v, want %v", tok, lp, want)
				}
			}
			for tok := range counts {
				if c.kept != nil && !contains(c.kept, tok) {
					t.Fatalf("sampled %d outside the kept set", tok)
				}
			}
		})
	}
}

func contains(s []int32, x int32) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

// TestSamplerFrequencies: the empirical distribution follows the kept-set distribution (temperature 2, top-k 3).
func TestSamplerFrequencies(t *testing.T) {
	logits := []float32{2, 1, 0, -1, 3}
	s := &Sampler{P: SamplingParams{Temperature: 2, TopP: 1, TopK: 3}}
	rng := rand.New(rand.NewPCG(3, 4))
	const n = 200000
	counts := make([]int, 5)
	for i := 0; i < n; i++ {
		tok, _, _ := s.Draw(logits, rng)
		counts[tok]++
	}
	// kept {4, 0, 1} with weights e^(1.5), e^1, e^0.5
	w := []float64{math.Exp(1), math.Exp(0.5), 0, 0, math.Exp(1.5)}
	tot := w[0] + w[1] + w[4]
	for i, c := range counts {
		want := w[i] / tot
		if math.Abs(float64(c)/n-want) > 0.005 {
			t.Errorf("token %d: frequency %.4f, want %.4f", i, float64(c)/n, want)
		}
	}
}

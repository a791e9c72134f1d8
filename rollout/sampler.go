// sampler.go: one draw from logits z. With temperature τ the distribution is softmax(z/τ); top-k keeps the k
// most likely tokens, then top-p keeps the smallest prefix (by descending probability, renormalised after
// top-k) whose mass reaches p; the draw is from the renormalised kept set K, and logp = log q_K(token) is
// π_old of the learner (dsv32-spec.md §3.2, Keep Sampling Mask). τ = 0 is greedy (K = {argmax}, logp = 0).

package rollout

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// SamplingParams are the sampler's knobs.
type SamplingParams struct {
	Temperature float64 // 0 = greedy
	TopP        float64 // (0, 1]; 1 = off
	TopK        int     // 0 = off
}

// Validate checks the ranges.
func (p SamplingParams) Validate() error {
	if p.Temperature < 0 || math.IsNaN(p.Temperature) {
		return fmt.Errorf("sampling: temperature %v must be ≥ 0", p.Temperature)
	}
	if !(p.TopP > 0 && p.TopP <= 1) {
		return fmt.Errorf("sampling: top_p %v must be in (0, 1]", p.TopP)
	}
	if p.TopK < 0 {
		return fmt.Errorf("sampling: top_k %d must be ≥ 0", p.TopK)
	}
	return nil
}

// Sampler holds the work space of repeated draws (no allocation in steady state).
type Sampler struct {
	P     SamplingParams
	order []int32
	prob  []float64
	kept  []int32
}

// Draw samples a token. It returns the token, its log-probability under the kept-set distribution, and the
// kept set (sorted ascending; nil when it is the whole vocabulary). The kept slice is reused by the next Draw.
func (s *Sampler) Draw(logits []float32, rng *rand.Rand) (int32, float32, []int32) {
	V := len(logits)
	if s.P.Temperature == 0 {
		best := 0
		for i, v := range logits {
			if v > logits[best] {
				best = i
			}
		}
		s.kept = append(s.kept[:0], int32(best))
		return int32(best), 0, s.kept
	}
	if cap(s.prob) < V {
		s.prob, s.order = make([]float64, V), make([]int32, V)
	}
	prob, order := s.prob[:V], s.order[:V]
	m := math.Inf(-1)
	for _, v := range logits {
		m = math.Max(m, float64(v)/s.P.Temperature)
	}
	var sum float64
	for i, v := range logits {
		e := math.Exp(float64(v)/s.P.Temperature - m)
		prob[i] = e
		sum += e
	}
	for i := range prob {
		prob[i] /= sum
	}
	truncate := s.P.TopK > 0 && s.P.TopK < V || s.P.TopP < 1
	n := V
	if truncate {
		for i := range order {
			order[i] = int32(i)
		}
		// descending probability, ties to the lower id (deterministic)
		slices.SortFunc(order, func(a, b int32) int {
			switch {
			case prob[a] > prob[b]:
				return -1
			case prob[a] < prob[b]:
				return 1
			}
			return int(a - b)
		})
		if s.P.TopK > 0 && s.P.TopK < n {
			n = s.P.TopK
		}
		if s.P.TopP < 1 {
			var mass float64
			for i := 0; i < n; i++ {
				mass += prob[order[i]]
			}
			var c float64
			for i := 0; i < n; i++ {
				c += prob[order[i]] / mass
				if c >= s.P.TopP {
					n = i + 1
					break
				}
			}
		}
	}
	var keptMass float64
	if truncate {
		for i := 0; i < n; i++ {
			keptMass += prob[order[i]]
		}
	} else {
		keptMass = 1
	}
	u := rng.Float64() * keptMass
	var tok int32 = -1
	var c float64
	if truncate {
		for i := 0; i < n; i++ {
			c += prob[order[i]]
			if u < c {
				tok = order[i]
				break
			}
		}
		if tok < 0 {
			tok = order[n-1]
		}
		s.kept = append(s.kept[:0], order[:n]...)
		slices.Sort(s.kept)
	} else {
		for i := range prob {
			c += prob[i]
			if u < c {
				tok = int32(i)
				break
			}
		}
		if tok < 0 {
			tok = int32(V - 1)
		}
		s.kept = s.kept[:0]
	}
	logp := float32(math.Log(prob[tok] / keptMass))
	if !truncate {
		return tok, logp, nil
	}
	return tok, logp, s.kept
}

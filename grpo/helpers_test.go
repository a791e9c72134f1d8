// Test helpers shared by the grpo tests: float comparison, a deterministic
// random batch whose ratios and OPSM means stay away from every kink (so that
// finite differences are valid), and the split of a batch into micro-batches of
// whole sequences.
package grpo

import (
	"math"
	"math/rand/v2"
	"testing"
)

// near reports whether got and want agree to abs + rel·|want|.
func near(got, want, abs, rel float64) bool {
	return math.Abs(got-want) <= abs+rel*math.Abs(want)
}

// requireNear fails the test when got and want differ by more than 1e-12
// absolute plus 1e-12 relative.
func requireNear(t *testing.T, what string, got, want float64) {
	t.Helper()
	if !near(got, want, 1e-12, 1e-12) {
		t.Fatalf("%s = %.17g, want %.17g (diff %.3g)", what, got, want, got-want)
	}
}

// kinkFreeLogRatios are values of ℓ − ℓ_old at least 0.15 away from the clip
// kinks of testClip (ln 0.8 = −0.223, ln 1.28 = 0.247, ln 3 = 1.099), covering
// every branch: clipped low (A<0), unclipped, clipped high (A>0), dual clip (A<0).
var kinkFreeLogRatios = []float64{-0.6, -0.45, -0.05, 0, 0.08, 0.5, 0.7, 1.4}

var testClip = Clip{EpsLow: 0.2, EpsHigh: 0.28, DualClipC: 3}

// randomBatch builds a batch of nSeq sequences of 0..maxLen tokens (some with
// loss-masked prompt/tool tokens, some with no loss token at all), advantages
// from groups of 4, and log-probabilities whose log-ratios come from
// kinkFreeLogRatios. Tokens of different sequences are interleaved when
// interleave is set. Every OPSM sequence mean stays ≥ 1e-3 away from delta.
func randomBatch(t *testing.T, rng *rand.Rand, nSeq, maxLen int, delta float64, interleave bool) *Batch {
	t.Helper()
	b := &Batch{Layout: Layout{NumSeqs: nSeq}, Adv: make([]float64, nSeq)}
	rewards := make([]float64, nSeq)
	for i := range rewards {
		rewards[i] = float64(rng.IntN(3)) // 0, 1, 2: some groups all-equal
	}
	adv, _, err := GroupAdvantages(rewards, 4, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	copy(b.Adv, adv)
	type tok struct {
		seq              int
		mask             uint8
		lp, lpOld, lpRef float64
	}
	var perSeq [][]tok
	for i := range nSeq {
		for {
			n := rng.IntN(maxLen + 1)
			var ts []tok
			var sum float64
			var cnt int
			for range n {
				m := uint8(0)
				if rng.IntN(5) > 0 {
					m = 1
				}
				lpOld := -0.1 - 3*rng.Float64()
				lr := kinkFreeLogRatios[rng.IntN(len(kinkFreeLogRatios))]
				lp := lpOld + lr
				lpRef := lp + (rng.Float64()*2-1)*1.5
				if m == 0 && rng.IntN(2) == 0 {
					lp, lpOld, lpRef = math.NaN(), math.Inf(-1), math.NaN() // never read
				}
				ts = append(ts, tok{i, m, lp, lpOld, lpRef})
				if m == 1 {
					sum += -lr
					cnt++
				}
			}
			if cnt == 0 || math.Abs(sum/float64(cnt)-delta) > 1e-3 {
				perSeq = append(perSeq, ts)
				break
			}
		}
	}
	var order []tok
	if interleave {
		for len(perSeq) > 0 {
			k := rng.IntN(len(perSeq))
			if len(perSeq[k]) == 0 {
				perSeq = append(perSeq[:k], perSeq[k+1:]...)
				continue
			}
			order = append(order, perSeq[k][0])
			perSeq[k] = perSeq[k][1:]
		}
	} else {
		for _, ts := range perSeq {
			order = append(order, ts...)
		}
	}
	for _, x := range order {
		b.Seq = append(b.Seq, x.seq)
		b.LossMask = append(b.LossMask, x.mask)
		b.Logp = append(b.Logp, x.lp)
		b.LogpOld = append(b.LogpOld, x.lpOld)
		b.LogpRef = append(b.LogpRef, x.lpRef)
	}
	return b
}

// split cuts b into micro-batches of whole sequences: sequence i goes to
// micro-batch part[i], with its index renumbered locally. idx[p][k] is the
// index in b of token k of micro-batch p.
func split(b *Batch, parts int, part []int) (mbs []*Batch, idx [][]int) {
	mbs = make([]*Batch, parts)
	idx = make([][]int, parts)
	local := make([]int, b.NumSeqs)
	for p := range mbs {
		mbs[p] = &Batch{}
	}
	for i := range b.NumSeqs {
		mb := mbs[part[i]]
		local[i] = mb.NumSeqs
		mb.NumSeqs++
		mb.Adv = append(mb.Adv, b.Adv[i])
	}
	for t, i := range b.Seq {
		mb := mbs[part[i]]
		mb.Seq = append(mb.Seq, local[i])
		mb.LossMask = append(mb.LossMask, b.LossMask[t])
		mb.Logp = append(mb.Logp, b.Logp[t])
		mb.LogpOld = append(mb.LogpOld, b.LogpOld[t])
		mb.LogpRef = append(mb.LogpRef, b.LogpRef[t])
		idx[part[i]] = append(idx[part[i]], t)
	}
	return mbs, idx
}

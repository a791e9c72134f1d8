// topk.go: per-query top-k key selection over indexer scores (spec §1.2 step 8). Query t of a row of valid
// length L may select among keys s < min(t+1, L); a padded query (t ≥ L) selects among the valid prefix, like
// the dense kernel lets it see that prefix so that its (masked) row stays finite. A query with fewer candidates
// than k takes all of them. Ties go to the lower position; the selected positions are written in ascending
// order and unused slots hold −1, so training and decoding produce byte-identical selections from equal scores.

package dsa

import (
	"math"
	"slices"

	"github.com/sparrow-rl/sparrow/internal/kernels"
)

// Candidates is the number of keys query t of a row with valid length L may attend to.
func Candidates(t, L int) int {
	if t >= L {
		return max(L, 1)
	}
	return t + 1
}

// SelectRow writes into dst [k] the positions of the k largest of scores[0:n] (all n when n ≤ k), ascending,
// padding with −1. heap is scratch of length ≥ k.
func SelectRow[T Float](dst []int32, scores []T, n int, heap []int32) {
	k := len(dst)
	if n <= k {
		for i := range dst {
			if i < n {
				dst[i] = int32(i)
			} else {
				dst[i] = -1
			}
		}
		return
	}
	// worse(a, b): a ranks below b (lower score, or equal score and higher position).
	worse := func(a, b int32) bool {
		if scores[a] != scores[b] {
			return scores[a] < scores[b]
		}
		return a > b
	}
	h := heap[:k]
	for i := range h {
		h[i] = int32(i)
	}
	// a min-heap on rank: h[0] is the worst kept position.
	down := func(i int) {
		for {
			l := 2*i + 1
			if l >= k {
				return
			}
			m := l
			if r := l + 1; r < k && worse(h[r], h[l]) {
				m = r
			}
			if !worse(h[m], h[i]) {
				return
			}
			h[i], h[m] = h[m], h[i]
			i = m
		}
	}
	for i := k/2 - 1; i >= 0; i-- {
		down(i)
	}
	for s := k; s < n; s++ {
		if worse(h[0], int32(s)) {
			h[0] = int32(s)
			down(0)
		}
	}
	copy(dst, h)
	slices.Sort(dst)
}

// SelectTopK fills sel [B·T·k] from scores [B, T, T] (row b·T+t) and the valid lengths of the rows. float32
// scores go through an O(T) radix select per row (selectRowRadix), float64 through the heap of SelectRow; both
// make the same selection.
func SelectTopK[T Float](sel []int32, scores []T, B, T_, k int, lengths []int32) {
	f32, radix := any(scores).([]float32)
	w := max(min(kernels.Threads(), B*T_), 1)
	chunk := (B*T_ + w - 1) / w
	kernels.For(w, chunk*T_*8, func(c int) {
		heap := make([]int32, k)
		var rs *radixScratch
		if radix {
			rs = &radixScratch{cand: make([]int32, 0, T_), cand2: make([]int32, 0, T_)}
		}
		for n := c * chunk; n < min((c+1)*chunk, B*T_); n++ {
			b, t := n/T_, n%T_
			L := min(int(lengths[b]), T_)
			dst, m := sel[n*k:(n+1)*k], Candidates(t, L)
			if radix {
				selectRowRadix(dst, f32[n*T_:(n+1)*T_], m, rs)
			} else {
				SelectRow(dst, scores[n*T_:(n+1)*T_], m, heap)
			}
		}
	})
}

// radixScratch is the per-worker scratch of selectRowRadix.
type radixScratch struct {
	hist        [2048]int32
	cand, cand2 []int32
}

// key32 maps a float32 to a uint32 whose unsigned order is the order of the floats (−0 counts as +0).
func key32(v float32) uint32 {
	u := math.Float32bits(v)
	if u == 1<<31 {
		u = 0
	}
	if u>>31 != 0 {
		return ^u
	}
	return u | 1<<31
}

// selectRowRadix is SelectRow for float32 in O(n): it finds the key of the k-th largest score by a three-level
// radix select on key32 (11, 11 and 10 bits, each level histogramming only the previous level's bucket), then
// takes, in position order, every score above that key and the lowest positions holding it.
func selectRowRadix(dst []int32, scores []float32, n int, rs *radixScratch) {
	k := len(dst)
	if n <= k {
		for i := range dst {
			if i < n {
				dst[i] = int32(i)
			} else {
				dst[i] = -1
			}
		}
		return
	}
	x := scores[:n]
	h := &rs.hist
	// pick returns the highest bucket b of h[:nb] with Σ_{b' ≥ b} h[b'] ≥ need, and how many to take from it.
	pick := func(nb, need int) (int, int) {
		b := nb - 1
		for ; b > 0 && int(h[b]) < need; b-- {
			need -= int(h[b])
		}
		return b, need
	}
	clear(h[:])
	for _, v := range x {
		h[key32(v)>>21]++
	}
	b1, need := pick(2048, k)
	cand := rs.cand[:0]
	for s, v := range x {
		if key32(v)>>21 == uint32(b1) {
			cand = append(cand, int32(s))
		}
	}
	clear(h[:])
	for _, s := range cand {
		h[key32(x[s])>>10&2047]++
	}
	b2, need := pick(2048, need)
	cand2 := rs.cand2[:0]
	for _, s := range cand {
		if key32(x[s])>>10&2047 == uint32(b2) {
			cand2 = append(cand2, s)
		}
	}
	clear(h[:1024])
	for _, s := range cand2 {
		h[key32(x[s])&1023]++
	}
	b3, need := pick(1024, need)
	thr := uint32(b1)<<21 | uint32(b2)<<10 | uint32(b3)
	i := 0
	for s, v := range x {
		if kv := key32(v); kv >= thr {
			if kv == thr {
				if need == 0 {
					continue
				}
				need--
			}
			dst[i] = int32(s)
			i++
		}
	}
}

// TopMass returns the sum of the k largest values of p (all of p when len(p) ≤ k): the attention mass the best
// possible selection of k keys captures. heap is scratch of length ≥ k; idx scratch of length ≥ k.
func TopMass[T Float](p []T, k int, idx, heap []int32) float64 {
	SelectRow(idx[:k], p, len(p), heap)
	var s float64
	for _, i := range idx[:k] {
		if i >= 0 {
			s += float64(p[i])
		}
	}
	return s
}

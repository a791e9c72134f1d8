// topk.go: per-query top-k key selection over indexer scores (spec §1.2 step 8). Query t of a row of valid
// length L may select among keys s < min(t+1, L); a padded query (t ≥ L) selects among the valid prefix, like
// the dense kernel lets it see that prefix so that its (masked) row stays finite. A query with fewer candidates
// than k takes all of them. Ties go to the lower position; the selected positions are written in ascending
// order and unused slots hold −1, so training and decoding produce byte-identical selections from equal scores.
package dsa

import (
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

// SelectTopK fills sel [B·T·k] from scores [B, T, T] (row b·T+t) and the valid lengths of the rows.
func SelectTopK[T Float](sel []int32, scores []T, B, T_, k int, lengths []int32) {
	parallelRows(B*T_, T_, func(n int, heap []int32) {
		b, t := n/T_, n%T_
		L := min(int(lengths[b]), T_)
		SelectRow(sel[n*k:(n+1)*k], scores[n*T_:(n+1)*T_], Candidates(t, L), heap)
	}, k)
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

// parallelRows runs body over n rows on kernels.Threads() workers, each with its own scratch of length k.
func parallelRows(n, cost int, body func(row int, scratch []int32), k int) {
	w := max(min(kernels.Threads(), n), 1)
	chunk := (n + w - 1) / w
	kernels.For(w, chunk*cost*8, func(c int) {
		scratch := make([]int32, k)
		for i := c * chunk; i < min((c+1)*chunk, n); i++ {
			body(i, scratch)
		}
	})
}

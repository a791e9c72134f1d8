// kl.go: the indexer losses of the continued pre-training (spec §2.1 Eq. 3, §2.2 Eq. 4) and the recall metrics.
//
// Dense (warm-up): for each valid query t, p_t = the layer's attention probabilities averaged over heads on keys
// s ≤ t (already L1-normalised: each head's row sums to 1), and
//
//	L = Σ_t KL(p_t ‖ softmax(I_{t, s ≤ t})),   ∂L/∂I_{t,s} = softmax(I_t)_s − p_{t,s}.
//
// Sparse: the same restricted to the selected set S_t, with p_{t,S_t} renormalised over S_t (in the sparse stage
// the attention only covers S_t, so it already sums to 1 there). Padded queries (t ≥ L) do not count. Both are
// computed in float64 and return the sum over queries and the number of queries; the caller scales.

package dsa

import (
	"math"

	"github.com/sparrow-rl/sparrow/internal/kernels"
)

// klRow returns KL(p ‖ softmax(scores)) over the entries where use(i) holds and, when grad is non-nil, writes
// scale·(softmax − p̂) into grad[i] for those entries (p̂ = p renormalised over them).
func klRow[T Float](n int, p func(i int) T, score func(i int) T, use func(i int) bool, grad func(i int, g T)) float64 {
	m := math.Inf(-1)
	var psum float64
	for i := 0; i < n; i++ {
		if use(i) {
			m = math.Max(m, float64(score(i)))
			psum += float64(p(i))
		}
	}
	if math.IsInf(m, -1) {
		return 0
	}
	var z float64
	for i := 0; i < n; i++ {
		if use(i) {
			z += math.Exp(float64(score(i)) - m)
		}
	}
	lz := m + math.Log(z)
	var kl float64
	for i := 0; i < n; i++ {
		if !use(i) {
			continue
		}
		pi := 0.0
		if psum > 0 {
			pi = float64(p(i)) / psum
		}
		lq := float64(score(i)) - lz
		if pi > 0 {
			kl += pi * (math.Log(pi) - lq)
		}
		if grad != nil {
			grad(i, T(math.Exp(lq)-pi))
		}
	}
	return kl
}

// KLDense computes Eq. 3 for scores [B, T, T] and targets p [B, T, T] (row b·T+t). When dScores is non-nil it
// is overwritten with scale·∂L/∂scores (zero outside the causal valid part). perRow, when non-nil [B·T],
// receives each query's KL (0 for padded queries; allocated when nil). It returns Σ_t KL and the number of valid queries.
func KLDense[T Float](scores, p []T, B, T_ int, lengths []int32, scale T, dScores []T, perRow []float64) (float64, int) {
	if perRow == nil {
		perRow = make([]float64, B*T_)
	}
	rows := 0
	for b := 0; b < B; b++ {
		rows += min(int(lengths[b]), T_)
	}
	kernels.For(B*T_, 8*T_, func(n int) {
		b, t := n/T_, n%T_
		L := min(int(lengths[b]), T_)
		var g []T
		if dScores != nil {
			g = dScores[n*T_ : (n+1)*T_]
			clear(g)
		}
		var kl float64
		if t < L {
			I, P := scores[n*T_:(n+1)*T_], p[n*T_:(n+1)*T_]
			var gf func(i int, v T)
			if g != nil {
				gf = func(i int, v T) { g[i] = scale * v }
			}
			kl = klRow(t+1, func(i int) T { return P[i] }, func(i int) T { return I[i] }, func(int) bool { return true }, gf)
		}
		perRow[n] = kl
	})
	var s float64
	for _, v := range perRow {
		s += v
	}
	return s, rows
}

// KLSparse computes Eq. 4 for scores [B, T, T], the selection sel [B·T·K] and targets p [B·T, K] (slot order).
// dScores (optional) is overwritten with scale·∂L/∂scores (zero outside the selected sets). perRow as in KLDense.
func KLSparse[T Float](scores []T, sel []int32, p []T, B, T_, K int, lengths []int32, scale T, dScores []T, perRow []float64) (float64, int) {
	if perRow == nil {
		perRow = make([]float64, B*T_)
	}
	rows := 0
	for b := 0; b < B; b++ {
		rows += min(int(lengths[b]), T_)
	}
	kernels.For(B*T_, 8*K, func(n int) {
		b, t := n/T_, n%T_
		L := min(int(lengths[b]), T_)
		var g []T
		if dScores != nil {
			g = dScores[n*T_ : (n+1)*T_]
			clear(g)
		}
		var kl float64
		if t < L {
			I, S, P := scores[n*T_:(n+1)*T_], sel[n*K:(n+1)*K], p[n*K:(n+1)*K]
			var gf func(i int, v T)
			if g != nil {
				gf = func(i int, v T) { g[S[i]] += scale * v }
			}
			kl = klRow(K, func(i int) T { return P[i] }, func(i int) T { return I[S[i]] },
				func(i int) bool { return S[i] >= 0 && int(S[i]) <= t }, gf)
		}
		perRow[n] = kl
	})
	var s float64
	for _, v := range perRow {
		s += v
	}
	return s, rows
}

// Recall holds the top-k recall of a selection against dense attention (the "recall" of spec §2.3).
type Recall struct {
	// Mass: mean over the counted queries of the dense attention mass inside the indexer's top-k set.
	Mass float64
	// Best: mean of the mass inside the true top-k of the dense attention (the best any selector can do).
	Best float64
	// Rel: Σ Mass / Σ Best over the counted queries.
	Rel float64
	// Rows: queries counted — valid queries with more than k candidates (the others select every key).
	Rows int
}

// TopKRecall compares the indexer's top-k of scores [B, T, T] with the dense head-mean attention p [B, T, T].
func TopKRecall[T Float](scores, p []T, B, T_, K int, lengths []int32) Recall {
	mass := make([]float64, B*T_)
	best := make([]float64, B*T_)
	counted := make([]bool, B*T_)
	w := max(min(kernels.Threads(), B*T_), 1)
	chunk := (B*T_ + w - 1) / w
	kernels.For(w, chunk*T_*8, func(c int) {
		sel, idx, heap := make([]int32, K), make([]int32, K), make([]int32, K)
		for n := c * chunk; n < min((c+1)*chunk, B*T_); n++ {
			b, t := n/T_, n%T_
			L := min(int(lengths[b]), T_)
			if t >= L || t+1 <= K {
				continue
			}
			I, P := scores[n*T_:n*T_+t+1], p[n*T_:n*T_+t+1]
			SelectRow(sel, I, t+1, heap)
			for _, s := range sel {
				if s >= 0 {
					mass[n] += float64(P[s])
				}
			}
			best[n] = TopMass(P, K, idx, heap)
			counted[n] = true
		}
	})
	var r Recall
	for n, ok := range counted {
		if ok {
			r.Mass += mass[n]
			r.Best += best[n]
			r.Rows++
		}
	}
	if r.Rows > 0 {
		if r.Best > 0 {
			r.Rel = r.Mass / r.Best
		}
		r.Mass /= float64(r.Rows)
		r.Best /= float64(r.Rows)
	}
	return r
}

// indexer.go: the lightning indexer of one layer over a batch [B, T] (spec §1.2, §8):
//
//	q_t  = RoPE_half(reshape(W^I_Q · c^Q_t))               [H, Dh]   c^Q_t: MLA query latent after its RMSNorm
//	k_s  = RoPE_half(LayerNorm(W^I_K · h_s)·γ + β)          [Dh]      one key per token, shared by the heads
//	w_t  = (W^I_w · h_t) · H^−½ · Dh^−½                     [H]       may be negative
//	I[t,s] = Σ_j w_t[j] · ReLU(q_t[j] · k_s)                s ≤ t (0 is stored for s > t)
//
// RoPE is the half-split (NeoX) layout on the first Dr dims of each vector ([rope | nope]); LayerNorm eps 1e-6.
// The scores are the one O(T²) part of DSA; with few heads and a small dim they are cheap next to attention.

package dsa

import (
	"fmt"
	"math"
	"slices"

	"github.com/sparrow-rl/sparrow/internal/kernels"
)

// Float is the element type of every kernel.
type Float = kernels.Float

// LayerNormEps is the epsilon of the indexer's key LayerNorm.
const LayerNormEps = 1e-6

// IndexerDims are the widths of one indexer.
type IndexerDims struct {
	D  int // hidden size (input of wk and weights_proj)
	QR int // q_lora_rank (input of wq_b)
	H  int // index_n_heads
	Dh int // index_head_dim
	Dr int // qk_rope_head_dim: the rotated leading dims of each index query and key
}

// HeadScale is the constant the head weights are multiplied by: H^−½ · Dh^−½.
func (d IndexerDims) HeadScale() float64 { return 1 / math.Sqrt(float64(d.H)*float64(d.Dh)) }

// Validate checks the dims against a RoPE table.
func (d IndexerDims) Validate(rope *kernels.RopeTable) error {
	if d.D <= 0 || d.QR <= 0 || d.H <= 0 || d.Dh <= 0 {
		return fmt.Errorf("dsa: indexer dims %+v must be positive", d)
	}
	if d.Dr > d.Dh || d.Dr%2 != 0 || (rope != nil && rope.R != d.Dr) {
		return fmt.Errorf("dsa: indexer rope width %d must be even, ≤ index_head_dim %d and equal the RoPE table's %d", d.Dr, d.Dh, rope.R)
	}
	return nil
}

// IndexerWeights are the five tensors of one indexer, in Hugging Face layout ([out, in]).
type IndexerWeights[T Float] struct {
	WQ    []T // indexer.wq_b.weight [H·Dh, QR], per head [rope | nope]
	WK    []T // indexer.wk.weight [Dh, D], [rope | nope]
	KNorm []T // indexer.k_norm.weight [Dh]
	KBias []T // indexer.k_norm.bias [Dh]
	WW    []T // indexer.weights_proj.weight [H, D]
}

// Indexer computes the scores of a batch and their gradients. Buffers are sized once for B, T.
type Indexer[T Float] struct {
	IndexerDims
	B, T int
	Rope *kernels.RopeTable

	q, k, khat, rstd, w []T // [N, H·Dh] rotated, [N, Dh] rotated, [N, Dh] normalised, [N], [N, H] scaled
	dq, dk, dw          []T
	// Per lane (see forLanes): z [blockRows·H, T] for one block of queries (q·k before the ReLU, then its
	// gradient), and the lane's partial dk [N, Dh].
	z, dkLane [ixLanes][]T

	// Sel, when set ([B·T·SelK] key positions per query, −1 = unused), declares that the score gradient given to
	// Backward is zero outside each query's selected keys, as for the sparse-stage loss (Eq. 4, restricted to
	// the selected set): Backward then reads only those entries and costs O(T·k) instead of O(T²).
	Sel  []int32
	SelK int
}

// The scores are computed per block of ixBlock consecutive queries against the keys up to the block's end
// (causal), so no [T·H, T] matrix is ever stored. Blocks are dealt round-robin to ixLanes lanes that run in
// parallel; each lane owns its buffers and sums its dk contribution privately, and the lanes are added in a
// fixed order, so the result does not depend on the number of threads.
const (
	ixBlock = 16
	ixLanes = 8
)

// forLanes runs lane(l, items) over the lanes in parallel; lane l gets the items l, l+ixLanes, ... of n.
func forLanes(n int, lane func(l int, items func(yield func(int) bool))) {
	kernels.For(ixLanes, 1<<30, func(l int) {
		lane(l, func(yield func(int) bool) {
			for i := l; i < n; i += ixLanes {
				if !yield(i) {
					return
				}
			}
		})
	})
}

// NewIndexer allocates the buffers of an indexer over [B, T].
func NewIndexer[T Float](d IndexerDims, B, T_ int, rope *kernels.RopeTable) (*Indexer[T], error) {
	if err := d.Validate(rope); err != nil {
		return nil, err
	}
	if T_ > rope.MaxPos {
		return nil, fmt.Errorf("dsa: length %d exceeds the RoPE table (%d positions)", T_, rope.MaxPos)
	}
	N := B * T_
	ix := &Indexer[T]{IndexerDims: d, B: B, T: T_, Rope: rope,
		q: make([]T, N*d.H*d.Dh), k: make([]T, N*d.Dh), khat: make([]T, N*d.Dh), rstd: make([]T, N), w: make([]T, N*d.H),
		dq: make([]T, N*d.H*d.Dh), dk: make([]T, N*d.Dh), dw: make([]T, N*d.H)}
	for l := range ixLanes {
		ix.z[l] = make([]T, ixBlock*d.H*T_)
	}
	return ix, nil
}

// block returns the batch row, first and end query of work item i (blocks of ixBlock queries per batch row).
func (ix *Indexer[T]) block(i int) (b, t0, t1 int) {
	nb := (ix.T + ixBlock - 1) / ixBlock
	b, t0 = i/nb, (i%nb)*ixBlock
	return b, t0, min(t0+ixBlock, ix.T)
}

// blockZ computes Z = Q_block·K[0:t1]ᵀ into the lane's buffer, [(t1−t0)·H, t1]: row (t−t0)·H+j holds q_t[j]·k_s.
func (ix *Indexer[T]) blockZ(l, b, t0, t1 int) []T {
	H, Dh, o := ix.H, ix.Dh, b*ix.T
	z := ix.z[l][:(t1-t0)*H*t1]
	kernels.Gemm(false, true, (t1-t0)*H, t1, Dh, 1, ix.q[(o+t0)*H*Dh:], Dh, ix.k[o*Dh:], Dh, 0, z, t1)
	return z
}

// Keys computes the index keys k [n, Dh] (rotated, positions pos0, pos0+1, ...) and the normalised keys before
// the affine part (khat) with their reciprocal std, from h [n, D]. Used by training and by the decode cache.
func Keys[T Float](d IndexerDims, rope *kernels.RopeTable, k, khat, rstd, h []T, n, pos0 int, wt IndexerWeights[T]) {
	kernels.Linear(khat, h, wt.WK, n, d.D, d.Dh, false)
	kernels.For(n, 8*d.Dh, func(i int) {
		row := khat[i*d.Dh : (i+1)*d.Dh]
		var mu float64
		for _, v := range row {
			mu += float64(v)
		}
		mu /= float64(d.Dh)
		var va float64
		for _, v := range row {
			va += (float64(v) - mu) * (float64(v) - mu)
		}
		r := 1 / math.Sqrt(va/float64(d.Dh)+LayerNormEps)
		rstd[i] = T(r)
		out := k[i*d.Dh : (i+1)*d.Dh]
		for j, v := range row {
			x := T((float64(v) - mu) * r)
			row[j] = x
			out[j] = x*wt.KNorm[j] + wt.KBias[j]
		}
		if d.Dr > 0 {
			kernels.Rope(rope, out[:d.Dr], pos0+i, false, false)
		}
	})
}

// Queries computes the rotated index queries q [n, H·Dh] from the query latent qn [n, QR] and the scaled head
// weights w [n, H] from h [n, D], for positions pos0, pos0+1, ...
func Queries[T Float](d IndexerDims, rope *kernels.RopeTable, q, w, qn, h []T, n, pos0 int, wt IndexerWeights[T]) {
	kernels.Linear(q, qn, wt.WQ, n, d.QR, d.H*d.Dh, false)
	if d.Dr > 0 {
		kernels.For(n, 4*d.H*d.Dr, func(i int) {
			for j := 0; j < d.H; j++ {
				o := (i*d.H + j) * d.Dh
				kernels.Rope(rope, q[o:o+d.Dr], pos0+i, false, false)
			}
		})
	}
	kernels.Linear(w, h, wt.WW, n, d.D, d.H, false)
	kernels.Scale(T(d.HeadScale()), w[:n*d.H])
}

// Forward writes the scores scores [B, T, T] (row b·T+t, column s; 0 for s > t) from h [N, D] and qn [N, QR].
func (ix *Indexer[T]) Forward(h, qn []T, wt IndexerWeights[T], scores []T) {
	d, T_, H, Dh := ix.IndexerDims, ix.T, ix.H, ix.Dh
	for b := 0; b < ix.B; b++ {
		o := b * T_
		Keys(d, ix.Rope, ix.k[o*Dh:(o+T_)*Dh], ix.khat[o*Dh:(o+T_)*Dh], ix.rstd[o:o+T_], h[o*d.D:(o+T_)*d.D], T_, 0, wt)
		Queries(d, ix.Rope, ix.q[o*H*Dh:(o+T_)*H*Dh], ix.w[o*H:(o+T_)*H], qn[o*d.QR:(o+T_)*d.QR], h[o*d.D:(o+T_)*d.D], T_, 0, wt)
	}
	nItems := ix.B * ((T_ + ixBlock - 1) / ixBlock)
	forLanes(nItems, func(l int, items func(func(int) bool)) {
		for i := range items {
			b, t0, t1 := ix.block(i)
			z := ix.blockZ(l, b, t0, t1)
			for t := t0; t < t1; t++ {
				n := b*T_ + t
				row := scores[n*T_ : (n+1)*T_]
				clear(row[t+1:])
				w := ix.w[n*H : (n+1)*H]
				for j := 0; j < H; j++ {
					zj := z[((t-t0)*H+j)*t1 : ((t-t0)*H+j)*t1+t+1]
					if j == 0 {
						kernels.ReluScale(row[:t+1], zj, w[j])
					} else {
						kernels.ReluAxpy(row[:t+1], zj, w[j])
					}
				}
			}
		}
	})
}

// Backward accumulates the gradients of the inputs and weights given dScores [B, T, T] (entries s > t are
// ignored). Any destination may be nil. Forward must have run on the same inputs.
func (ix *Indexer[T]) Backward(h, qn []T, wt IndexerWeights[T], dScores []T, dh, dqn []T, dwt IndexerWeights[T]) {
	d, T_, H, Dh := ix.IndexerDims, ix.T, ix.H, ix.Dh
	N := ix.B * T_
	nItems := ix.B * ((T_ + ixBlock - 1) / ixBlock)
	hs := T(d.HeadScale())
	forLanes(nItems, func(l int, items func(func(int) bool)) {
		if ix.dkLane[l] == nil {
			ix.dkLane[l] = make([]T, N*Dh)
		}
		dkl := ix.dkLane[l]
		clear(dkl)
		var sc *selScratch[T]
		for i := range items {
			b, t0, t1 := ix.block(i)
			if ix.Sel != nil {
				if sc == nil {
					sc = &selScratch[T]{idx: make([]int32, ix.SelK), z: make([]T, ix.SelK)}
				}
				ix.backwardSelected(b, t0, t1, dScores, dkl, sc)
				continue
			}
			o := b * T_
			// Recompute the block's Z and turn it into dZ in place: dZ = dI·w·[z > 0] on s ≤ t, 0 beyond.
			z := ix.blockZ(l, b, t0, t1)
			for t := t0; t < t1; t++ {
				n := o + t
				dI := dScores[n*T_ : n*T_+t+1]
				for j := 0; j < H; j++ {
					zj := z[((t-t0)*H+j)*t1 : ((t-t0)*H+j+1)*t1]
					ix.dw[n*H+j] = hs * kernels.ReluBackward(zj[:t+1], dI, ix.w[n*H+j])
					clear(zj[t+1:])
				}
			}
			// dQ_block = dZ·K[0:t1];  dK[0:t1] += dZᵀ·Q_block (the lane's partial sum).
			rows := (t1 - t0) * H
			kernels.Gemm(false, false, rows, Dh, t1, 1, z, t1, ix.k[o*Dh:], Dh, 0, ix.dq[(o+t0)*H*Dh:], Dh)
			kernels.Gemm(true, false, t1, Dh, rows, 1, z, t1, ix.q[(o+t0)*H*Dh:], Dh, 1, dkl[o*Dh:], Dh)
		}
	})
	kernels.For(N, 2*ixLanes*Dh, func(n int) {
		dk := ix.dk[n*Dh : (n+1)*Dh]
		copy(dk, ix.dkLane[0][n*Dh:(n+1)*Dh])
		for l := 1; l < ixLanes; l++ {
			kernels.Axpy(1, ix.dkLane[l][n*Dh:(n+1)*Dh], dk)
		}
	})
	// Undo the rotations.
	kernels.For(N, 4*H*Dh, func(n int) {
		if d.Dr == 0 {
			return
		}
		t := n % T_
		for j := 0; j < H; j++ {
			q := (n*H + j) * Dh
			kernels.Rope(ix.Rope, ix.dq[q:q+d.Dr], t, false, true)
		}
		kernels.Rope(ix.Rope, ix.dk[n*Dh:n*Dh+d.Dr], t, false, true)
	})
	// Query side: dqn += dq·W_Q, dW_Q += dqᵀ·qn.
	kernels.LinearBackward(dqn, dwt.WQ, ix.dq, qn, wt.WQ, N, d.QR, H*Dh)
	// Head weights: dh += dw·W_w, dW_w += dwᵀ·h.
	kernels.LinearBackward(dh, dwt.WW, ix.dw, h, wt.WW, N, d.D, H)
	// Key LayerNorm: y = x̂·γ + β, x̂ = (x − μ)·r.
	for n := 0; n < N; n++ {
		dk := ix.dk[n*Dh : (n+1)*Dh]
		xh := ix.khat[n*Dh : (n+1)*Dh]
		if dwt.KNorm != nil {
			for j, v := range dk {
				dwt.KNorm[j] += v * xh[j]
			}
		}
		if dwt.KBias != nil {
			kernels.Axpy(1, dk, dwt.KBias)
		}
	}
	if dh == nil && dwt.WK == nil {
		return
	}
	kernels.For(N, 6*Dh, func(n int) {
		dk := ix.dk[n*Dh : (n+1)*Dh]
		xh := ix.khat[n*Dh : (n+1)*Dh]
		var m1, m2 float64
		for j, v := range dk {
			g := float64(v) * float64(wt.KNorm[j])
			m1 += g
			m2 += g * float64(xh[j])
		}
		m1 /= float64(Dh)
		m2 /= float64(Dh)
		r := float64(ix.rstd[n])
		for j, v := range dk {
			g := float64(v) * float64(wt.KNorm[j])
			dk[j] = T(r * (g - m1 - float64(xh[j])*m2)) // dk now holds d(W_K·h)
		}
	})
	kernels.LinearBackward(dh, dwt.WK, ix.dk, h, wt.WK, N, d.D, Dh)
}

// selScratch is a lane's scratch for backwardSelected.
type selScratch[T Float] struct {
	idx []int32
	z   []T
}

// backwardSelected is Backward for queries [t0, t1) of batch row b when the score gradient lives on the
// selected keys only: per query and head, z_s = q·k_s over the selected keys s ≤ t (gathered), then
// dz_s = dI_s·w·[z_s > 0], dw = Σ dI_s·ReLU(z_s), dq = Σ dz_s·k_s, and dk_s += dz_s·q into the lane's dk.
func (ix *Indexer[T]) backwardSelected(b, t0, t1 int, dScores, dkl []T, sc *selScratch[T]) {
	T_, H, Dh, K := ix.T, ix.H, ix.Dh, ix.SelK
	o := b * T_
	keys, hs := ix.k[o*Dh:(o+T_)*Dh], T(ix.HeadScale())
	for t := t0; t < t1; t++ {
		n := o + t
		clear(ix.dq[n*H*Dh : (n+1)*H*Dh])
		m := 0
		for _, s := range ix.Sel[n*K : (n+1)*K] {
			if s >= 0 && int(s) <= t {
				sc.idx[m] = s
				m++
			}
		}
		idx := sc.idx[:m]
		if !slices.IsSorted(idx) {
			slices.Sort(idx)
		}
		idx = slices.Compact(idx) // a key selected twice holds its gradient once
		m = len(idx)
		dI := dScores[n*T_ : (n+1)*T_]
		for j := 0; j < H; j++ {
			if m == 0 {
				ix.dw[n*H+j] = 0
				continue
			}
			qj := ix.q[(n*H+j)*Dh : (n*H+j+1)*Dh]
			z := sc.z[:m]
			kernels.GatherDot(z, qj, keys, Dh, idx, 1)
			w := ix.w[n*H+j]
			var acc T
			for i, s := range idx {
				if v := z[i]; v > 0 {
					acc += dI[s] * v
					z[i] = dI[s] * w
				} else {
					z[i] = 0
				}
			}
			ix.dw[n*H+j] = hs * acc
			kernels.GatherAxpy(ix.dq[(n*H+j)*Dh:(n*H+j+1)*Dh], z, keys, Dh, idx)
			kernels.ScatterAxpy(dkl[o*Dh:(o+T_)*Dh], Dh, idx, z, qj)
		}
	}
}

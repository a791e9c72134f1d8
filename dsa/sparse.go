// sparse.go: MLA attention restricted to the selected keys (spec §1.1 Eq. 2, §1.3), in MHA mode for training.
// Per query n = b·T+t and head i, with the selection S_n (k positions, shared by the heads):
//
//	Q_t = [q^C_{t,i} ; RoPE(q^R_{t,i}, t)],  K_s = [k^C_{s,i} ; RoPE(k^R_s, s)],  V_s = v_{s,i}
//	p_{n,i,·} = softmax_{s ∈ S_n}(Q_t·K_s·τ),  o_{t,i} = Σ_{s ∈ S_n} p_{n,i,s} V_s
//
// with MLA's interleaved RoPE and the same input/output layout as the dense kernel of package model (q
// [N, H·(dn+dr)], kv [N, H·(dn+dv)], kva [N, kvr+dr], out [N, H·dv]). Selected positions outside the query's
// candidates (s ≥ Candidates(t, L)) and −1 slots are ignored. The work and memory are O(T·k) per head, never
// O(T²):
//
//   - Forward gathers, per query, the k selected key and value rows (one contiguous run per token for a group
//     of heads) with the kernels of internal/kernels (gather.go, gather_heads.go).
//   - Backward computes dq per query from the gathered keys, and dk, dv per key from the transposed selection
//     (the queries that selected the key): each gradient row is written once, by gathering the queries' q and
//     dO rows, instead of being scatter-added from every query.
//
// The random row accesses are the cost, so the heads are processed in groups small enough for the group's
// k, v (and dk, dv) of a whole sequence to stay in cache, and both workers run over the queries (forward and
// dq) or keys (dk, dv) of one group at a time. Every per-head sum is taken in a fixed order, so results do not
// depend on the grouping or the number of threads.
package dsa

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/blas/gonum"

	"github.com/sparrow-rl/sparrow/internal/kernels"
)

// MLADims are the attention widths of a layer.
type MLADims struct{ H, Dn, Dr, Dv, KVr int }

// SparseMLA is the sparse attention kernel over a batch [B, T] keeping k keys per query.
type SparseMLA[T Float] struct {
	MLADims
	B, T, K int
	Scale   T
	Rope    *kernels.RopeTable

	// P [B·T, K, H]: the attention probability of each slot and head after Forward (0 for unused slots).
	P []T

	// qo, kv [B, G, T, Hg·(dq+dv)]: per token of a head group, [q of the Hg heads | dO of the Hg heads] and
	// [k of the Hg heads | v of the Hg heads] (see groups), so that each gathered token is one contiguous run.
	qo, kv     []T
	dq, dk, dv []T // [B, G, T, Hg, dq], [B, G, T, Hg, dq], [B, G, T, Hg, dv]
	ds         []T // [B·T, K, H]: the score gradients dS of the valid slots (Backward)
	colW       []T // [T·K, 2H]: p and dS of the valid pairs of one batch row in transposed order (Backward)
	// The transposed selection of batch row b: the valid (query, slot) pairs that selected key s are
	// colT[b·T·K + colStart[b·(T+1)+s] : … + colStart[b·(T+1)+s+1]], in increasing query order.
	colStart []int32
	colT     []int32
	rowPos   []int32 // [B·T·K]: where a valid (query, slot) pair lies in its row's transposed order
	colMax   []int   // [B]: the most queries any key of the row was selected by
	lengths  []int32
	sel      []int32
}

// NewSparseMLA allocates the kernel's buffers.
func NewSparseMLA[T Float](d MLADims, B, T_, K int, rope *kernels.RopeTable) (*SparseMLA[T], error) {
	if K <= 0 {
		return nil, fmt.Errorf("dsa: index_topk %d must be > 0", K)
	}
	if T_ > rope.MaxPos || rope.R != d.Dr {
		return nil, fmt.Errorf("dsa: length %d / rope width %d do not fit the RoPE table (%d positions, width %d)", T_, d.Dr, rope.MaxPos, rope.R)
	}
	BH, dq := B*d.H, d.Dn+d.Dr
	s := &SparseMLA[T]{MLADims: d, B: B, T: T_, K: K, Scale: T(1 / math.Sqrt(float64(dq))), Rope: rope,
		P:  make([]T, BH*T_*K),
		qo: make([]T, BH*T_*(dq+d.Dv)), kv: make([]T, BH*T_*(dq+d.Dv)),
		dq: make([]T, BH*T_*dq), dk: make([]T, BH*T_*dq), dv: make([]T, BH*T_*d.Dv),
		colStart: make([]int32, B*(T_+1)), colT: make([]int32, B*T_*K), rowPos: make([]int32, B*T_*K), colMax: make([]int, B)}
	return s, nil
}

// Level1 returns dot and axpy routines for T backed by gonum's assembly kernels.
func Level1[T Float]() (dot func(x, y []T) T, axpy func(a T, x, y []T)) {
	var impl gonum.Implementation
	var z T
	switch any(z).(type) {
	case float32:
		d := func(x, y []float32) float32 { return impl.Sdot(len(x), x, 1, y, 1) }
		a := func(al float32, x, y []float32) { impl.Saxpy(len(x), al, x, 1, y, 1) }
		return any(d).(func(x, y []T) T), any(a).(func(a T, x, y []T))
	default:
		d := func(x, y []float64) float64 { return impl.Ddot(len(x), x, 1, y, 1) }
		a := func(al float64, x, y []float64) { impl.Daxpy(len(x), al, x, 1, y, 1) }
		return any(d).(func(x, y []T) T), any(a).(func(a T, x, y []T))
	}
}

// compact writes the valid selected positions of query t (0 ≤ s < lim) into idx and their slots into slot,
// returning how many there are.
func compact(S []int32, lim int, idx, slot []int32) int {
	m := 0
	for i, s := range S {
		if s >= 0 && int(s) < lim {
			idx[m], slot[m] = s, int32(i)
			m++
		}
	}
	return m
}

// groupCache is the memory the k and v rows of one head group over a whole sequence may take (the backward
// touches as much again for dk and dv): about a quarter of a server L3. A variable for the tests.
var groupCache = 8 << 20

// groups splits the H heads into G groups of Hg (the largest divisor of H whose k and v rows of a sequence
// fit in groupCache, at least 1). A selected token's keys for a group's heads are one contiguous run.
func (a *SparseMLA[T]) groups() (G, Hg int) {
	size := 8
	var z T
	if _, ok := any(z).(float32); ok {
		size = 4
	}
	row := (a.Dn + a.Dr + a.Dv) * size
	Hg = 1
	for h := a.H; h > 1; h-- {
		if a.H%h == 0 && a.T*h*row <= groupCache {
			Hg = h
			break
		}
	}
	return a.H / Hg, Hg
}

// parallelRange runs body over [0, n) split into one contiguous range per worker.
func parallelRange(n int, body func(lo, hi int)) {
	w := max(min(kernels.Threads(), n), 1)
	chunk := (n + w - 1) / w
	kernels.For(w, 1<<30, func(c int) {
		if lo := c * chunk; lo < n {
			body(lo, min(lo+chunk, n))
		}
	})
}

// parallelInterleaved runs body over [0, n) in blocks of 64 dealt round-robin to the workers (for work that
// grows or shrinks along the range).
func parallelInterleaved(n int, body func(lo, hi int)) {
	const blk = 64
	nb := (n + blk - 1) / blk
	w := max(min(kernels.Threads(), nb), 1)
	kernels.For(w, 1<<30, func(c int) {
		for b := c; b < nb; b += w {
			body(b*blk, min((b+1)*blk, n))
		}
	})
}

// transpose builds the transposed selection of batch row b (valid length L).
func (a *SparseMLA[T]) transpose(b, L int) {
	T_, K := a.T, a.K
	start := a.colStart[b*(T_+1) : (b+1)*(T_+1)]
	clear(start)
	for t := range T_ {
		lim := Candidates(t, L)
		for _, s := range a.sel[(b*T_+t)*K : (b*T_+t+1)*K] {
			if s >= 0 && int(s) < lim {
				start[s+1]++
			}
		}
	}
	mx := 0
	for s := range T_ {
		mx = max(mx, int(start[s+1]))
		start[s+1] += start[s]
	}
	a.colMax[b] = mx
	colT, rowPos := a.colT[b*T_*K:(b+1)*T_*K], a.rowPos[b*T_*K:(b+1)*T_*K]
	cursor := make([]int32, T_)
	copy(cursor, start[:T_])
	for t := range T_ {
		lim := Candidates(t, L)
		for i, s := range a.sel[(b*T_+t)*K : (b*T_+t+1)*K] {
			if s >= 0 && int(s) < lim {
				p := cursor[s]
				colT[p], rowPos[t*K+i] = int32(t), p
				cursor[s]++
			}
		}
	}
}

// block returns the q, k, v (or gradient) rows of batch row b, head group g.
func (a *SparseMLA[T]) block(x []T, b, g, G, Hg, w int) []T {
	bg, rows := b*G+g, a.T*Hg
	return x[bg*rows*w : (bg+1)*rows*w]
}

// Forward computes out [N, H·dv] from q, kv, kva, the selection sel [N·K] and the valid lengths [B].
func (a *SparseMLA[T]) Forward(q, kv, kva []T, sel, lengths []int32, out []T) error {
	T_, H, dn, dr, dv, K := a.T, a.H, a.Dn, a.Dr, a.Dv, a.K
	dq := dn + dr
	if len(sel) != a.B*T_*K {
		return fmt.Errorf("dsa: selection has %d entries, want %d×%d", len(sel), a.B*T_, K)
	}
	a.sel, a.lengths = sel, lengths
	G, Hg := a.groups()
	for b := range a.B {
		L := min(int(lengths[b]), T_)
		a.transpose(b, L)
		clear(a.P[b*T_*K*H : (b+1)*T_*K*H])
		S := Hg * (dq + dv)
		parallelRange(T_, func(lo, hi int) { // gather q, k, v of every head group (rotated)
			for g := range G {
				QO, KV := a.block(a.qo, b, g, G, Hg, dq+dv), a.block(a.kv, b, g, G, Hg, dq+dv)
				for t := lo; t < hi; t++ {
					n := b*T_ + t
					for hh := 0; hh < Hg; hh++ {
						h := g*Hg + hh
						qr, kr, vr := QO[t*S+hh*dq:t*S+(hh+1)*dq], KV[t*S+hh*dq:t*S+(hh+1)*dq], KV[t*S+Hg*dq+hh*dv:t*S+Hg*dq+(hh+1)*dv]
						copy(qr, q[n*H*dq+h*dq:n*H*dq+(h+1)*dq])
						kernels.Rope(a.Rope, qr[dn:], t, true, false)
						kvr := kv[n*H*(dn+dv)+h*(dn+dv) : n*H*(dn+dv)+(h+1)*(dn+dv)]
						copy(kr[:dn], kvr[:dn])
						copy(kr[dn:], kva[n*(a.KVr+dr)+a.KVr:(n+1)*(a.KVr+dr)])
						kernels.Rope(a.Rope, kr[dn:], t, true, false)
						copy(vr, kvr[dn:])
					}
				}
			}
		})
		for g := range G {
			QO, KV := a.block(a.qo, b, g, G, Hg, dq+dv), a.block(a.kv, b, g, G, Hg, dq+dv)
			parallelRange(T_, func(lo, hi int) {
				idx, slot, sc := make([]int32, K), make([]int32, K), make([]T, Hg*K)
				for t := lo; t < hi; t++ {
					n := b*T_ + t
					m := compact(sel[n*K:(n+1)*K], Candidates(t, L), idx, slot)
					og := out[n*H*dv+g*Hg*dv : n*H*dv+(g+1)*Hg*dv] // the group's heads, side by side
					clear(og)
					if m == 0 {
						continue
					}
					// Gather the m selected keys once for the group's heads: scores, softmax, weighted values.
					kernels.GatherDotHeads(sc, K, QO[t*S:t*S+Hg*dq], Hg, KV, S, idx[:m], a.Scale)
					for hh := 0; hh < Hg; hh++ {
						kernels.SoftmaxRowFast(sc[hh*K : hh*K+m])
					}
					kernels.GatherAxpyHeads(og, Hg, sc, K, KV[Hg*dq:], S, idx[:m])
					P := a.P[n*K*H : (n+1)*K*H]
					for hh := 0; hh < Hg; hh++ {
						for i, p := range sc[hh*K : hh*K+m] {
							P[int(slot[i])*H+g*Hg+hh] = p
						}
					}
				}
			})
		}
	}
	return nil
}

// Backward accumulates dq, dkv, dkva (any may be nil) from dout [N, H·dv], after Forward.
func (a *SparseMLA[T]) Backward(dout, dQin, dKV, dKVA []T) {
	T_, H, dn, dr, dv, K := a.T, a.H, a.Dn, a.Dr, a.Dv, a.K
	dq := dn + dr
	G, Hg := a.groups()
	if a.ds == nil {
		a.ds, a.colW = make([]T, len(a.P)), make([]T, T_*K*2*H)
	}
	for b := range a.B {
		L := min(int(a.lengths[b]), T_)
		for g := range G {
			S := Hg * (dq + dv)
			QO, KV := a.block(a.qo, b, g, G, Hg, dq+dv), a.block(a.kv, b, g, G, Hg, dq+dv)
			dQ := a.block(a.dq, b, g, G, Hg, dq)
			// Per query: dp_s = dO·V_s;  dS_s = p_s·(dp_s − Σ p·dp)·τ (kept for the keys);  dq_t = Σ dS_s·K_s.
			parallelRange(T_, func(lo, hi int) {
				idx, slot, pc, dp := make([]int32, K), make([]int32, K), make([]T, Hg*K), make([]T, Hg*K)
				for t := lo; t < hi; t++ {
					n := b*T_ + t
					dqt := dQ[t*Hg*dq : (t+1)*Hg*dq]
					clear(dqt)
					copy(QO[t*S+Hg*dq:(t+1)*S], dout[n*H*dv+g*Hg*dv:n*H*dv+(g+1)*Hg*dv]) // dO next to q, for the per-key pass
					m := compact(a.sel[n*K:(n+1)*K], Candidates(t, L), idx, slot)
					if m == 0 {
						continue
					}
					P, dS := a.P[n*K*H:(n+1)*K*H], a.ds[n*K*H:(n+1)*K*H]
					for hh := 0; hh < Hg; hh++ {
						for i, s := range slot[:m] {
							pc[hh*K+i] = P[int(s)*H+g*Hg+hh]
						}
					}
					dOg := dout[n*H*dv+g*Hg*dv : n*H*dv+(g+1)*Hg*dv]
					kernels.GatherDotHeads(dp, K, dOg, Hg, KV[Hg*dq:], S, idx[:m], 1)
					for hh := 0; hh < Hg; hh++ {
						p, d := pc[hh*K:hh*K+m], dp[hh*K:hh*K+m]
						var sum T
						for i, v := range p {
							sum += v * d[i]
						}
						for i, v := range p {
							d[i] = v * (d[i] - sum) * a.Scale
							dS[int(slot[i])*H+g*Hg+hh] = d[i]
						}
					}
					kernels.GatherAxpyHeads(dqt, Hg, dp, K, KV, S, idx[:m])
				}
			})
		}
		// p and dS of every valid pair in transposed order, all heads side by side (one write per pair).
		rowPos := a.rowPos[b*T_*K : (b+1)*T_*K]
		parallelRange(T_, func(lo, hi int) {
			for t := lo; t < hi; t++ {
				n, lim := b*T_+t, Candidates(t, L)
				for i, s := range a.sel[n*K : (n+1)*K] {
					if s >= 0 && int(s) < lim {
						c := int(rowPos[t*K+i]) * 2 * H
						copy(a.colW[c:c+H], a.P[(n*K+i)*H:(n*K+i+1)*H])
						copy(a.colW[c+H:c+2*H], a.ds[(n*K+i)*H:(n*K+i+1)*H])
					}
				}
			}
		})
		for g := range G {
			S := Hg * (dq + dv)
			QO := a.block(a.qo, b, g, G, Hg, dq+dv)
			dQ, dK, dV := a.block(a.dq, b, g, G, Hg, dq), a.block(a.dk, b, g, G, Hg, dq), a.block(a.dv, b, g, G, Hg, dv)
			// Per key s, over the queries that selected it: dV_s = Σ_t p_{t,s}·dO_t,  dK_s = Σ_t dS_{t,s}·q_t.
			start := a.colStart[b*(T_+1) : (b+1)*(T_+1)]
			colT := a.colT[b*T_*K : (b+1)*T_*K]
			cmax := a.colMax[b]
			parallelInterleaved(T_, func(lo, hi int) {
				wp, wd, rk := make([]T, Hg*cmax), make([]T, Hg*cmax), make([]T, dr)
				for s := lo; s < hi; s++ {
					dks, dvs := dK[s*Hg*dq:(s+1)*Hg*dq], dV[s*Hg*dv:(s+1)*Hg*dv]
					clear(dks)
					clear(dvs)
					if c0, c1 := int(start[s]), int(start[s+1]); c0 < c1 {
						a.keyGrads(dks, dvs, QO, S, Hg, g, cmax, colT[c0:c1], c0, wp, wd)
					}
					a.finishRow(b, g, Hg, s, dQ, dK, dV, dQin, dKV, dKVA, rk)
				}
			})
		}
	}
}

// HeadMeanProbs writes the attention probabilities averaged over heads, dst [N, K] (slot order of the
// selection): the target of the sparse-stage indexer loss (Eq. 4).
func (a *SparseMLA[T]) HeadMeanProbs(dst []T) {
	H, K := a.H, a.K
	inv := 1 / T(H)
	kernels.For(a.B*a.T, H*K, func(n int) {
		d, P := dst[n*K:(n+1)*K], a.P[n*K*H:(n+1)*K*H]
		for i := range d {
			var s T
			for _, p := range P[i*H : (i+1)*H] {
				s += p
			}
			d[i] = s * inv
		}
	})
}

// keyGrads computes, for one key and head group, dV_s = Σ_t p_{t,s}·dO_t and dK_s = Σ_t dS_{t,s}·q_t over the
// queries ts that selected it (transposed positions c0, c0+1, ...), gathering their q and dO rows from QO.
func (a *SparseMLA[T]) keyGrads(dks, dvs, QO []T, S, Hg, g, cmax int, ts []int32, c0 int, wp, wd []T) {
	H, dq := a.H, a.Dn+a.Dr
	for j := range ts {
		c := (c0+j)*2*H + g*Hg
		for hh := 0; hh < Hg; hh++ {
			wp[hh*cmax+j], wd[hh*cmax+j] = a.colW[c+hh], a.colW[c+H+hh]
		}
	}
	kernels.GatherAxpyHeads(dvs, Hg, wp, cmax, QO[Hg*dq:], S, ts)
	kernels.GatherAxpyHeads(dks, Hg, wd, cmax, QO, S, ts)
}

// finishRow undoes the rotations of token t's gradients in head group g and adds them to the op's input
// gradients (any may be nil). The rope key is shared by all heads: their gradients are summed into dKVA in
// head order (groups run one after the other). rk is scratch of length dr.
func (a *SparseMLA[T]) finishRow(b, g, Hg, t int, dQ, dK, dV, dQin, dKV, dKVA, rk []T) {
	H, dn, dr, dv := a.H, a.Dn, a.Dr, a.Dv
	dq, n := dn+dr, b*a.T+t
	for hh := 0; hh < Hg; hh++ {
		h, r := g*Hg+hh, t*Hg+hh
		kernels.Rope(a.Rope, dQ[r*dq+dn:(r+1)*dq], t, true, true)
		if dQin != nil {
			kernels.Axpy(1, dQ[r*dq:(r+1)*dq], dQin[n*H*dq+h*dq:n*H*dq+(h+1)*dq])
		}
		if dKV != nil {
			kvr := dKV[n*H*(dn+dv)+h*(dn+dv) : n*H*(dn+dv)+(h+1)*(dn+dv)]
			kernels.Axpy(1, dK[r*dq:r*dq+dn], kvr[:dn])
			kernels.Axpy(1, dV[r*dv:(r+1)*dv], kvr[dn:])
		}
		if dKVA != nil {
			copy(rk, dK[r*dq+dn:(r+1)*dq])
			kernels.Rope(a.Rope, rk, t, true, true)
			kernels.Axpy(1, rk, dKVA[n*(a.KVr+dr)+a.KVr:(n+1)*(a.KVr+dr)])
		}
	}
}

// sparse.go: MLA attention restricted to the selected keys (spec §1.1 Eq. 2, §1.3), in MHA mode for training.
// Per query n = b·T+t and head i, with the selection S_n (k positions, shared by the heads):
//
//	Q_t = [q^C_{t,i} ; RoPE(q^R_{t,i}, t)],  K_s = [k^C_{s,i} ; RoPE(k^R_s, s)],  V_s = v_{s,i}
//	p_{n,i,·} = softmax_{s ∈ S_n}(Q_t·K_s·τ),  o_{t,i} = Σ_{s ∈ S_n} p_{n,i,s} V_s
//
// with MLA's interleaved RoPE and the same input/output layout as the dense kernel of package model (q
// [N, H·(dn+dr)], kv [N, H·(dn+dv)], kva [N, kvr+dr], out [N, H·dv]). Forward gathers the k selected keys of
// each query, backward scatter-adds their gradients: the work and memory are O(T·k) per head, never O(T²).
// Selected positions outside the query's candidates (s ≥ Candidates(t, L)) and −1 slots are ignored.
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

	// P [B·H, T, K]: the attention probability of each slot after Forward (0 for unused slots).
	P []T

	q, k, v    []T // [B·H, T, dq], [B·H, T, dq], [B·H, T, dv]
	dq, dk, dv []T
	dkr        []T // [B·H, T, dr]
	lengths    []int32
	sel        []int32
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
		P: make([]T, BH*T_*K),
		q: make([]T, BH*T_*dq), k: make([]T, BH*T_*dq), v: make([]T, BH*T_*d.Dv),
		dq: make([]T, BH*T_*dq), dk: make([]T, BH*T_*dq), dv: make([]T, BH*T_*d.Dv), dkr: make([]T, BH*T_*d.Dr)}
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

// Forward computes out [N, H·dv] from q, kv, kva, the selection sel [N·K] and the valid lengths [B].
func (a *SparseMLA[T]) Forward(q, kv, kva []T, sel, lengths []int32, out []T) error {
	T_, H, dn, dr, dv, K := a.T, a.H, a.Dn, a.Dr, a.Dv, a.K
	dq := dn + dr
	if len(sel) != a.B*T_*K {
		return fmt.Errorf("dsa: selection has %d entries, want %d×%d", len(sel), a.B*T_, K)
	}
	a.sel, a.lengths = sel, lengths
	kernels.For(a.B*H, T_*K*(dq+dv)*2, func(bh int) {
		b, h := bh/H, bh%H
		Q, Kk, V := a.q[bh*T_*dq:(bh+1)*T_*dq], a.k[bh*T_*dq:(bh+1)*T_*dq], a.v[bh*T_*dv:(bh+1)*T_*dv]
		for t := 0; t < T_; t++ {
			n := b*T_ + t
			copy(Q[t*dq:(t+1)*dq], q[n*H*dq+h*dq:n*H*dq+(h+1)*dq])
			kernels.Rope(a.Rope, Q[t*dq+dn:(t+1)*dq], t, true, false)
			kvr := kv[n*H*(dn+dv)+h*(dn+dv) : n*H*(dn+dv)+(h+1)*(dn+dv)]
			copy(Kk[t*dq:t*dq+dn], kvr[:dn])
			copy(Kk[t*dq+dn:(t+1)*dq], kva[n*(a.KVr+dr)+a.KVr:(n+1)*(a.KVr+dr)])
			kernels.Rope(a.Rope, Kk[t*dq+dn:(t+1)*dq], t, true, false)
			copy(V[t*dv:(t+1)*dv], kvr[dn:])
		}
		L := min(int(lengths[b]), T_)
		idx, slot, pc := make([]int32, K), make([]int32, K), make([]T, K)
		for t := 0; t < T_; t++ {
			n := b*T_ + t
			P := a.P[(bh*T_+t)*K : (bh*T_+t+1)*K]
			clear(P)
			o := out[n*H*dv+h*dv : n*H*dv+(h+1)*dv]
			clear(o)
			m := compact(sel[n*K:(n+1)*K], Candidates(t, L), idx, slot)
			if m == 0 {
				continue
			}
			// Gather the m selected keys: scores, softmax, then the weighted sum of their values.
			kernels.GatherDot(pc[:m], Q[t*dq:(t+1)*dq], Kk, dq, idx[:m], a.Scale)
			kernels.SoftmaxRowFast(pc[:m])
			kernels.GatherAxpy(o, pc[:m], V, dv, idx[:m])
			for i, p := range pc[:m] {
				P[slot[i]] = p
			}
		}
	})
	return nil
}

// Backward accumulates dq, dkv, dkva (any may be nil) from dout [N, H·dv], after Forward.
func (a *SparseMLA[T]) Backward(dout, dQin, dKV, dKVA []T) {
	T_, H, dn, dr, dv, K := a.T, a.H, a.Dn, a.Dr, a.Dv, a.K
	dq := dn + dr
	kernels.For(a.B*H, T_*K*(dq+dv)*4, func(bh int) {
		b, h := bh/H, bh%H
		Q, Kk, V := a.q[bh*T_*dq:(bh+1)*T_*dq], a.k[bh*T_*dq:(bh+1)*T_*dq], a.v[bh*T_*dv:(bh+1)*T_*dv]
		dQ, dK, dV := a.dq[bh*T_*dq:(bh+1)*T_*dq], a.dk[bh*T_*dq:(bh+1)*T_*dq], a.dv[bh*T_*dv:(bh+1)*T_*dv]
		clear(dQ)
		clear(dK)
		clear(dV)
		L := min(int(a.lengths[b]), T_)
		idx, slot, pc, dp := make([]int32, K), make([]int32, K), make([]T, K), make([]T, K)
		for t := 0; t < T_; t++ {
			n := b*T_ + t
			m := compact(a.sel[n*K:(n+1)*K], Candidates(t, L), idx, slot)
			if m == 0 {
				continue
			}
			P := a.P[(bh*T_+t)*K : (bh*T_+t+1)*K]
			for i, s := range slot[:m] {
				pc[i] = P[s]
			}
			dO := dout[n*H*dv+h*dv : n*H*dv+(h+1)*dv]
			// dp_s = dO·V_s;  dV_s += p_s·dO;  dS_s = p_s·(dp_s − Σ p·dp)·τ;  dq_t += Σ dS_s·K_s;  dK_s += dS_s·q_t.
			kernels.GatherDot(dp[:m], dO, V, dv, idx[:m], 1)
			kernels.ScatterAxpy(dV, dv, idx[:m], pc[:m], dO)
			var sum T
			for i, p := range pc[:m] {
				sum += p * dp[i]
			}
			for i, p := range pc[:m] {
				dp[i] = p * (dp[i] - sum) * a.Scale
			}
			qt := Q[t*dq : (t+1)*dq]
			kernels.GatherAxpy(dQ[t*dq:(t+1)*dq], dp[:m], Kk, dq, idx[:m])
			kernels.ScatterAxpy(dK, dq, idx[:m], dp[:m], qt)
		}
		dkr := a.dkr[bh*T_*dr : (bh+1)*T_*dr]
		for t := 0; t < T_; t++ {
			n := b*T_ + t
			kernels.Rope(a.Rope, dQ[t*dq+dn:(t+1)*dq], t, true, true)
			if dQin != nil {
				kernels.Axpy(1, dQ[t*dq:(t+1)*dq], dQin[n*H*dq+h*dq:n*H*dq+(h+1)*dq])
			}
			if dKV != nil {
				kvr := dKV[n*H*(dn+dv)+h*(dn+dv) : n*H*(dn+dv)+(h+1)*(dn+dv)]
				kernels.Axpy(1, dK[t*dq:t*dq+dn], kvr[:dn])
				kernels.Axpy(1, dV[t*dv:(t+1)*dv], kvr[dn:])
			}
			copy(dkr[t*dr:(t+1)*dr], dK[t*dq+dn:(t+1)*dq])
			kernels.Rope(a.Rope, dkr[t*dr:(t+1)*dr], t, true, true)
		}
	})
	if dKVA == nil {
		return
	}
	// The rope key is shared by all heads: sum their gradients (rows are disjoint across b).
	kernels.For(a.B, T_*H*dr, func(b int) {
		for h := 0; h < H; h++ {
			dkr := a.dkr[(b*H+h)*T_*dr:]
			for t := 0; t < T_; t++ {
				n := b*T_ + t
				kernels.Axpy(1, dkr[t*dr:(t+1)*dr], dKVA[n*(a.KVr+dr)+a.KVr:(n+1)*(a.KVr+dr)])
			}
		}
	})
}

// HeadMeanProbs writes the attention probabilities averaged over heads, dst [N, K] (slot order of the
// selection): the target of the sparse-stage indexer loss (Eq. 4).
func (a *SparseMLA[T]) HeadMeanProbs(dst []T) {
	T_, H, K := a.T, a.H, a.K
	inv := 1 / T(H)
	kernels.For(a.B*T_, H*K, func(n int) {
		b, t := n/T_, n%T_
		d := dst[n*K : (n+1)*K]
		clear(d)
		for h := 0; h < H; h++ {
			kernels.Axpy(inv, a.P[((b*H+h)*T_+t)*K:((b*H+h)*T_+t+1)*K], d)
		}
	})
}

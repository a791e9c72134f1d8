// attention.go: the fused MLA attention core (DeepSeek-V2/V3 multi-head latent attention, dsv32-spec.md §1.3),
// in MHA mode for training: per head i,
//
//	Q_t = [q^C_{t,i} ; RoPE(q^R_{t,i}, t)],  K_s = [k^C_{s,i} ; RoPE(k^R_s, s)],  V_s = v_{s,i}
//	S = Q·Kᵀ·τ, τ = (qk_nope + qk_rope)^−½;  P = softmax(S + mask);  O = P·V
//
// computed per block of attnBlock queries over the keys the block can see (causal, unpadded), so the masked
// upper triangle is not multiplied.
// with the interleaved RoPE layout of MLA (§8). The mask is causal, hides padded keys (s ≥ length of the row),
// keys of earlier documents when the row packs several (AttnMask.DocStart), and, when an allowed-key set is
// given (DSA's top-k selection), every key outside the query's set.
// Inputs: q [N, H·(dn+dr)] (q_b_proj output, per head [nope | rope]), kv [N, H·(dn+dv)] (kv_b_proj output,
// per head [k_nope | v]), kvA [N, kvr+dr] (kv_a_proj_with_mqa output; only its last dr columns, the shared rope
// key, are read here). Output [N, H·dv], heads contiguous, ready for o_proj.

package model

import (
	"fmt"
	"math"

	"gorgonia.org/tensor"

	"github.com/sparrow-rl/sparrow/dsa"
	"github.com/sparrow-rl/sparrow/internal/kernels"
)

// AttnMask is the per-step side input of attention. The key-padding mask is a graph input (row lengths
// [B], Int32); this adds the optional allowed-key sets.
type AttnMask struct {
	// Allowed, when non-nil, restricts query n = b·T+t to the keys Allowed[n·K : (n+1)·K] (positions within the
	// row; entries < 0 are unused slots). The causal and padding masks still apply on top.
	Allowed []int32
	K       int
	// DocStart, when non-empty, is [B·T]: query n = b·T+t sees no key before row position DocStart[n] (the
	// start of its document in a packed row).
	DocStart []int32
}

type attnKernel[T Float] struct {
	B, T, H, Dn, Dr, Dv, KVr int
	block                    int // query block of the causal GEMMs (AttnBlock; tests set small ones)
	scale                    T
	rope                     *kernels.RopeTable
	mask                     *AttnMask

	q, k, v, p []T // [B·H, T, dq], [B·H, T, dq], [B·H, T, dv], [B·H, T, T]
	dp, dq, dk []T
	dv, dkr    []T // dkr: [B·H, T, dr] gradient of the rotated shared key before the head sum
	allow      []bool
	lengths    []int32
}

func (k *attnKernel[T]) SetInts(ints [][]int32) { k.lengths = ints[3] }

func newAttnKernel[T Float](B, T_ int, c mlaDims, rope *kernels.RopeTable, mask *AttnMask) *attnKernel[T] {
	return &attnKernel[T]{B: B, T: T_, H: c.H, Dn: c.Dn, Dr: c.Dr, Dv: c.Dv, KVr: c.KVr, block: AttnBlock,
		scale: T(1 / math.Sqrt(float64(c.Dn+c.Dr))), rope: rope, mask: mask}
}

// NewAttentionKernel returns the dense attention kernel of the training graph for B rows of T_ positions, to
// drive outside a graph (the attention benchmark): OutShape allocates its buffers, and the row lengths [B]
// reach it through IntInputs as the fourth input.
func NewAttentionKernel[T Float](B, T_ int, d dsa.MLADims, rope *kernels.RopeTable, mask *AttnMask) Kernel[T] {
	return newAttnKernel[T](B, T_, mlaDims(d), rope, mask)
}

// AttnBlock is the query block of the causal attention GEMMs of the training graph: block [r0, r0+AttnBlock)
// multiplies only the keys [0, r0+AttnBlock) it can see (and none past the row's length), which skips 3/8 of
// the products at T = 256 (T·(T+AttnBlock)/2 of T² entries).
const AttnBlock = 64

// mlaDims are the attention widths of a layer.
type mlaDims struct{ H, Dn, Dr, Dv, KVr int }

func (k *attnKernel[T]) Name() string    { return "mla_attention" }
func (k *attnKernel[T]) DiffWRT() []bool { return []bool{true, true, true, false} }
func (k *attnKernel[T]) OutShape(in []tensor.Shape) (tensor.Shape, error) {
	if err := wantShapes(in, 4, "mla_attention"); err != nil {
		return nil, err
	}
	N := k.B * k.T
	dq := k.Dn + k.Dr
	if !in[0].Eq(tensor.Shape{N, k.H * dq}) || !in[1].Eq(tensor.Shape{N, k.H * (k.Dn + k.Dv)}) || !in[2].Eq(tensor.Shape{N, k.KVr + k.Dr}) || !in[3].Eq(tensor.Shape{k.B}) {
		return nil, fmt.Errorf("mla_attention: inputs %v %v %v do not fit B=%d T=%d heads=%d", in[0], in[1], in[2], k.B, k.T, k.H)
	}
	if k.T > k.rope.MaxPos {
		return nil, fmt.Errorf("mla_attention: length %d exceeds the RoPE table (%d positions)", k.T, k.rope.MaxPos)
	}
	BH := k.B * k.H
	k.q, k.k, k.v = make([]T, BH*k.T*dq), make([]T, BH*k.T*dq), make([]T, BH*k.T*k.Dv)
	k.p, k.dp = make([]T, BH*k.T*k.T), make([]T, BH*k.T*k.T)
	k.dq, k.dk, k.dv = make([]T, BH*k.T*dq), make([]T, BH*k.T*dq), make([]T, BH*k.T*k.Dv)
	k.dkr = make([]T, BH*k.T*k.Dr)
	k.allow = make([]bool, BH*k.T)
	return tensor.Shape{N, k.H * k.Dv}, nil
}

func (k *attnKernel[T]) length(b int) int {
	return min(int(k.lengths[b]), k.T)
}

func (k *attnKernel[T]) Forward(in [][]T, out []T) error {
	q, kv, kva := in[0], in[1], in[2]
	T_, H, dn, dr, dv := k.T, k.H, k.Dn, k.Dr, k.Dv
	dq := dn + dr
	if m := k.mask; m != nil && m.Allowed != nil && len(m.Allowed) != k.B*T_*m.K {
		return fmt.Errorf("mla_attention: allowed-key set has %d entries, want %d×%d", len(m.Allowed), k.B*T_, m.K)
	}
	kernels.For(k.B*H, T_*T_*(dq+dv)*2, func(bh int) {
		b, h := bh/H, bh%H
		Q, K, V := k.q[bh*T_*dq:(bh+1)*T_*dq], k.k[bh*T_*dq:(bh+1)*T_*dq], k.v[bh*T_*dv:(bh+1)*T_*dv]
		for t := 0; t < T_; t++ {
			n := b*T_ + t
			qr := q[n*H*dq+h*dq : n*H*dq+(h+1)*dq]
			copy(Q[t*dq:(t+1)*dq], qr)
			kernels.Rope(k.rope, Q[t*dq+dn:(t+1)*dq], t, true, false)
			kvr := kv[n*H*(dn+dv)+h*(dn+dv) : n*H*(dn+dv)+(h+1)*(dn+dv)]
			copy(K[t*dq:t*dq+dn], kvr[:dn])
			copy(K[t*dq+dn:(t+1)*dq], kva[n*(k.KVr+dr)+k.KVr:(n+1)*(k.KVr+dr)])
			kernels.Rope(k.rope, K[t*dq+dn:(t+1)*dq], t, true, false)
			copy(V[t*dv:(t+1)*dv], kvr[dn:])
		}
		P := k.p[bh*T_*T_ : (bh+1)*T_*T_]
		L := k.length(b)
		vis := max(L, 1) // keys any query of the row sees (a padded query sees the valid prefix)
		allow := k.allow[bh*T_ : (bh+1)*T_]
		negInf := T(math.Inf(-1))
		for r0 := 0; r0 < T_; r0 += k.block {
			r1 := min(r0+k.block, T_)
			c1 := min(r1, vis) // causal and unpadded: the queries [r0, r1) see at most the keys [0, c1)
			// S[r0:r1, 0:c1] = τ·Q[r0:r1]·K[0:c1]ᵀ
			kernels.GemmSerial(false, true, r1-r0, c1, dq, k.scale, Q[r0*dq:], dq, K, dq, 0, P[r0*T_:], T_)
			for t := r0; t < r1; t++ {
				row := P[t*T_ : (t+1)*T_]
				lim := min(t+1, L)
				if t >= L { // a padded query: let it see the valid prefix so its row stays finite (its loss is masked)
					lim = vis
				}
				if m := k.mask; m != nil && m.Allowed != nil {
					clear(allow)
					n := b*T_ + t
					for _, s := range m.Allowed[n*m.K : (n+1)*m.K] {
						if s >= 0 && int(s) < T_ {
							allow[s] = true
						}
					}
					for s := 0; s < lim; s++ {
						if !allow[s] {
							row[s] = negInf
						}
					}
				}
				if m := k.mask; m != nil && len(m.DocStart) > 0 && t < L {
					for s := 0; s < min(int(m.DocStart[b*T_+t]), lim); s++ {
						row[s] = negInf
					}
				}
				// softmax over the visible prefix [0, lim) (vectorised exp); the keys after it get probability 0
				kernels.SoftmaxRowFast(row[:lim])
				clear(row[lim:])
			}
			// O[r0:r1] = P[r0:r1, 0:c1]·V[0:c1] written straight into out[b, r0:r1, h·dv : (h+1)·dv].
			kernels.GemmSerial(false, false, r1-r0, dv, c1, 1, P[r0*T_:], T_, V, dv, 0, out[(b*T_+r0)*H*dv+h*dv:], H*dv)
		}
	})
	return nil
}

func (k *attnKernel[T]) Backward(in [][]T, out, dout []T, din [][]T) error {
	T_, H, dn, dr, dv := k.T, k.H, k.Dn, k.Dr, k.Dv
	dq := dn + dr
	dQin, dKV, dKVA := din[0], din[1], din[2]
	kernels.For(k.B*H, T_*T_*(dq+dv)*4, func(bh int) {
		b, h := bh/H, bh%H
		Q, K, V := k.q[bh*T_*dq:(bh+1)*T_*dq], k.k[bh*T_*dq:(bh+1)*T_*dq], k.v[bh*T_*dv:(bh+1)*T_*dv]
		P, dP := k.p[bh*T_*T_:(bh+1)*T_*T_], k.dp[bh*T_*T_:(bh+1)*T_*T_]
		dQ, dK, dV := k.dq[bh*T_*dq:(bh+1)*T_*dq], k.dk[bh*T_*dq:(bh+1)*T_*dq], k.dv[bh*T_*dv:(bh+1)*T_*dv]
		vis := max(k.length(b), 1)
		// Row blocks as in the forward pass: dV and dK accumulate over them.
		clear(dV)
		clear(dK)
		for r0 := 0; r0 < T_; r0 += k.block {
			r1 := min(r0+k.block, T_)
			c1 := min(r1, vis)
			m := r1 - r0
			Pb, dPb := P[r0*T_:], dP[r0*T_:]
			dO := dout[(b*T_+r0)*H*dv+h*dv:]
			// dV[0:c1] += P[r0:r1, 0:c1]ᵀ·dO[r0:r1], dP[r0:r1, 0:c1] = dO[r0:r1]·V[0:c1]ᵀ
			kernels.GemmSerial(true, false, c1, dv, m, 1, Pb, T_, dO, H*dv, 1, dV, dv)
			kernels.GemmSerial(false, true, m, c1, dv, 1, dO, H*dv, V, dv, 0, dPb, T_)
			// dS = P ⊙ (dP − rowsum(dP ⊙ P)), scaled by τ here so that dQ = dS·K, dK = dSᵀ·Q (P is 0 past c1).
			for t := r0; t < r1; t++ {
				kernels.SoftmaxGradRow(P[t*T_:t*T_+c1], dP[t*T_:t*T_+c1], k.scale)
			}
			// dQ[r0:r1] = dS[r0:r1, 0:c1]·K[0:c1], dK[0:c1] += dS[r0:r1, 0:c1]ᵀ·Q[r0:r1]
			kernels.GemmSerial(false, false, m, dq, c1, 1, dPb, T_, K, dq, 0, dQ[r0*dq:], dq)
			kernels.GemmSerial(true, false, c1, dq, m, 1, dPb, T_, Q[r0*dq:], dq, 1, dK, dq)
		}
		dkr := k.dkr[bh*T_*dr : (bh+1)*T_*dr]
		for t := 0; t < T_; t++ {
			n := b*T_ + t
			kernels.Rope(k.rope, dQ[t*dq+dn:(t+1)*dq], t, true, true)
			kernels.Axpy(1, dQ[t*dq:(t+1)*dq], dQin[n*H*dq+h*dq:n*H*dq+(h+1)*dq])
			kv := dKV[n*H*(dn+dv)+h*(dn+dv) : n*H*(dn+dv)+(h+1)*(dn+dv)]
			kernels.Axpy(1, dK[t*dq:t*dq+dn], kv[:dn])
			kernels.Axpy(1, dV[t*dv:(t+1)*dv], kv[dn:])
			copy(dkr[t*dr:(t+1)*dr], dK[t*dq+dn:(t+1)*dq])
			kernels.Rope(k.rope, dkr[t*dr:(t+1)*dr], t, true, true)
		}
	})
	// The rope key is shared by all heads: sum their gradients (rows are disjoint across b).
	kernels.For(k.B, T_*H*dr, func(b int) {
		for h := 0; h < H; h++ {
			dkr := k.dkr[(b*H+h)*T_*dr:]
			for t := 0; t < T_; t++ {
				n := b*T_ + t
				kernels.Axpy(1, dkr[t*dr:(t+1)*dr], dKVA[n*(k.KVr+dr)+k.KVr:(n+1)*(k.KVr+dr)])
			}
		}
	})
	return nil
}

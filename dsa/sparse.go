// sparse.go: MLA attention restricted to the selected keys (spec §1.1 Eq. 2), in the absorbed MQA mode of
// §1.3 ("DSA is implemented on the MQA mode because sparse kernels need each KV entry shared"). Every head
// attends to ONE shared latent entry per key,
//
//	c_s = [c^KV_s ; RoPE(k^R_s, s)]                                  (kvr + dr numbers, kv_a_layernorm applied)
//
// with the absorbed query and output of head i (W^UK_i, W^UV_i: the k_nope and v rows of kv_b_proj),
//
//	q̃_{t,i} = [q^C_{t,i}·W^UK_i ; RoPE(q^R_{t,i}, t)],   p_{t,i,·} = softmax_{s ∈ S_t}(q̃_{t,i}·c_s·τ)
//	õ_{t,i} = Σ_{s ∈ S_t} p_{t,i,s} c^KV_s,                o_{t,i} = õ_{t,i}·W^UVᵀ_i
//
// which is exactly MHA-mode MLA (k^C_{s,i} = W^UK_i c^KV_s, v_{s,i} = W^UV_i c^KV_s) with τ unchanged,
// (dn+dr)^−½. Inputs: q [N, H·(dn+dr)], c^KV [N, kvr], kva [N, kvr+dr] (its last dr columns are the rope key),
// kv_b_proj.weight [H·(dn+dv), kvr]; output [N, H·dv]. Selected positions outside the query's candidates
// (s ≥ Candidates(t, L)) and −1 slots are ignored.
//
// The absorption and the output projection are GEMMs over all tokens (kernels.Gemm); the sparse core between
// them is O(T·k) per head and reads, per selected (query, key) pair, one latent row shared by all heads:
//
//   - Forward: scores and the latent outputs of all heads from the k gathered rows (GatherDotShared,
//     GatherAxpyShared of internal/kernels).
//   - Backward: dq̃ per query from the gathered rows, and the latent gradients Σ_i dS·q̃_i + p·dõ_i scattered
//     into the k rows (ScatterAxpyShared), one accumulator per part of the queries (covering only the keys
//     before the part's last query), summed in part order.
//
// Every per-head sum runs in a fixed order; the parts follow the worker count (kernels.Threads), so results
// are reproducible for a given thread count.

package dsa

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/blas/gonum"

	"github.com/sparrow-rl/sparrow/internal/kernels"
)

// MLADims are the attention widths of a layer.
type MLADims struct{ H, Dn, Dr, Dv, KVr int }

// SparseMQA is the sparse attention op over a batch [B, T] keeping k keys per query, in MQA mode.
type SparseMQA[T Float] struct {
	MLADims
	B, T, K int
	Scale   T
	Rope    *kernels.RopeTable

	// P [B·T, K, H]: the attention probability of each slot and head after Forward (0 for unused slots).
	P []T

	lat     []T // [N, W], W = kvr+dr: the latent entries [c^KV ; RoPE(k^R)]
	qt      []T // [N, H, W]: the absorbed queries
	ot      []T // [N, H, kvr]: the latent outputs õ
	dot     []T // [N, H, kvr]: dõ (Backward)
	dqt     []T // [N, H, W]: dq̃ (Backward)
	dlat    []T // the latent gradients of one batch row, one accumulator [bounds[p+1], W] per part p (Backward)
	lengths []int32
	sel     []int32
}

// NewSparseMQA allocates the kernel's buffers.
func NewSparseMQA[T Float](d MLADims, B, T_, K int, rope *kernels.RopeTable) (*SparseMQA[T], error) {
	if K <= 0 {
		return nil, fmt.Errorf("dsa: index_topk %d must be > 0", K)
	}
	if T_ > rope.MaxPos || rope.R != d.Dr {
		return nil, fmt.Errorf("dsa: length %d / rope width %d do not fit the RoPE table (%d positions, width %d)", T_, d.Dr, rope.MaxPos, rope.R)
	}
	N, W := B*T_, d.KVr+d.Dr
	return &SparseMQA[T]{MLADims: d, B: B, T: T_, K: K, Scale: T(1 / math.Sqrt(float64(d.Dn+d.Dr))), Rope: rope,
		P: make([]T, N*K*d.H), lat: make([]T, N*W), qt: make([]T, N*d.H*W), ot: make([]T, N*d.H*d.KVr)}, nil
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

// parts splits the queries of a row of valid length L into at most w contiguous ranges of about equal work
// (the number of keys each query attends to): bounds[p] … bounds[p+1].
func (a *SparseMQA[T]) parts(L, w int) []int {
	work := func(t int) int { return min(Candidates(t, L), a.K) + 8 } // + the per-query overhead
	total := 0
	for t := range a.T {
		total += work(t)
	}
	bounds := []int{0}
	acc := 0
	for t := range a.T {
		acc += work(t)
		if len(bounds) < w && acc*w >= total*len(bounds) {
			bounds = append(bounds, t+1)
		}
	}
	if bounds[len(bounds)-1] != a.T {
		bounds = append(bounds, a.T)
	}
	return bounds
}

// gemmHeads runs one GEMM per head: C_h = op(A_h)·op(B_h) + beta·C_h, the head's operand starting at offset
// h·offX of X. Row-wise products (tA false: A and C have m rows, one per token) go in blocks of gemmRows
// tokens, all heads of a block before the next: the heads' C columns of a token lie in one row of a wide
// matrix, and writing one head's column block over all tokens at once is twice as slow (one TLB entry per
// row).
func gemmHeads[T Float](H int, tA, tB bool, m, n, k int, a []T, offA, lda int, b []T, offB, ldb int, beta T, c []T, offC, ldc int) {
	if tA {
		for h := range H {
			kernels.Gemm(tA, tB, m, n, k, 1, a[h*offA:], lda, b[h*offB:], ldb, beta, c[h*offC:], ldc)
		}
		return
	}
	for r := 0; r < m; r += gemmRows {
		rows := min(gemmRows, m-r)
		for h := range H {
			kernels.Gemm(false, tB, rows, n, k, 1, a[r*lda+h*offA:], lda, b[h*offB:], ldb, beta, c[r*ldc+h*offC:], ldc)
		}
	}
}

// gemmRows is the token block of gemmHeads (a variable for the tests).
var gemmRows = 512

// Forward computes out [N, H·dv] from q, ckv, kva, kv_b_proj.weight wkvb, the selection sel [N·K] and the
// valid lengths [B].
func (a *SparseMQA[T]) Forward(q, ckv, kva, wkvb []T, sel, lengths []int32, out []T) error {
	T_, H, dn, dr, dv, kvr, K := a.T, a.H, a.Dn, a.Dr, a.Dv, a.KVr, a.K
	dq, W, N := dn+dr, kvr+dr, a.B*a.T
	if len(sel) != N*K {
		return fmt.Errorf("dsa: selection has %d entries, want %d×%d", len(sel), N, K)
	}
	if len(q) != N*H*dq || len(ckv) != N*kvr || len(kva) != N*W || len(wkvb) != H*(dn+dv)*kvr || len(out) != N*H*dv {
		return fmt.Errorf("dsa: sparse attention inputs of %d, %d, %d, %d and output of %d elements do not fit N=%d heads=%d", len(q), len(ckv), len(kva), len(wkvb), len(out), N, H)
	}
	a.sel, a.lengths = sel, lengths
	// Latent entries and the rope half of the absorbed queries, then q̃_nope = q_nope·W^UK per head.
	parallelRange(N, func(lo, hi int) {
		for n := lo; n < hi; n++ {
			t := n % T_
			l := a.lat[n*W : (n+1)*W]
			copy(l, ckv[n*kvr:(n+1)*kvr])
			copy(l[kvr:], kva[n*W+kvr:(n+1)*W])
			kernels.Rope(a.Rope, l[kvr:], t, true, false)
			for h := range H {
				r := a.qt[(n*H+h)*W+kvr : (n*H+h+1)*W]
				copy(r, q[n*H*dq+h*dq+dn:n*H*dq+(h+1)*dq])
				kernels.Rope(a.Rope, r, t, true, false)
			}
		}
	})
	gemmHeads(H, false, false, N, kvr, dn, q, dq, H*dq, wkvb, (dn+dv)*kvr, kvr, 0, a.qt, W, H*W)
	clear(a.P)
	for b := range a.B {
		L := min(int(lengths[b]), T_)
		lat := a.lat[b*T_*W : (b+1)*T_*W]
		parallelRange(T_, func(lo, hi int) {
			idx, slot, sc := make([]int32, K), make([]int32, K), make([]T, H*K)
			for t := lo; t < hi; t++ {
				n := b*T_ + t
				ot := a.ot[n*H*kvr : (n+1)*H*kvr]
				clear(ot)
				m := compact(sel[n*K:(n+1)*K], Candidates(t, L), idx, slot)
				if m == 0 {
					continue
				}
				kernels.GatherDotShared(sc, K, a.qt[n*H*W:(n+1)*H*W], H, lat, W, idx[:m], a.Scale, nil)
				for h := range H {
					kernels.SoftmaxRowFast(sc[h*K : h*K+m])
				}
				kernels.GatherAxpyShared(ot, H, sc, K, lat, W, idx[:m])
				P := a.P[n*K*H : (n+1)*K*H]
				for h := range H {
					for i, p := range sc[h*K : h*K+m] {
						P[int(slot[i])*H+h] = p
					}
				}
			}
		})
	}
	gemmHeads(H, false, true, N, dv, kvr, a.ot, kvr, H*kvr, wkvb[dn*kvr:], (dn+dv)*kvr, kvr, 0, out, dv, H*dv)
	return nil
}

// Backward accumulates the gradients of q, ckv, kva and kv_b_proj.weight (any may be nil) from dout
// [N, H·dv], after Forward with the same q and wkvb.
func (a *SparseMQA[T]) Backward(q, wkvb, dout, dQ, dCKV, dKVA, dW []T) {
	T_, H, dn, dr, dv, kvr, K := a.T, a.H, a.Dn, a.Dr, a.Dv, a.KVr, a.K
	dq, W, N := dn+dr, kvr+dr, a.B*a.T
	if a.dot == nil {
		a.dot, a.dqt = make([]T, N*H*kvr), make([]T, N*H*W)
	}
	// dõ = dO·W^UV and dW^UV += dOᵀ·õ per head.
	gemmHeads(H, false, false, N, kvr, dv, dout, dv, H*dv, wkvb[dn*kvr:], (dn+dv)*kvr, kvr, 0, a.dot, kvr, H*kvr)
	if dW != nil {
		gemmHeads(H, true, false, dv, kvr, N, dout, dv, H*dv, a.ot, kvr, H*kvr, 1, dW[dn*kvr:], (dn+dv)*kvr, kvr)
	}
	w := max(kernels.Threads(), 1)
	if len(a.dlat) < w*T_*W {
		a.dlat = make([]T, w*T_*W)
	}
	for b := range a.B {
		L := min(int(a.lengths[b]), T_)
		lat := a.lat[b*T_*W : (b+1)*T_*W]
		bounds := a.parts(L, w)
		np := len(bounds) - 1
		// Part p's queries select keys before bounds[p+1] only: its accumulator has that many rows.
		off := make([]int, np+1)
		for p := range np {
			off[p+1] = off[p] + bounds[p+1]*W
		}
		// Per query: dp = dõ·c^KV_s;  dS = p·(dp − Σ p·dp)·τ;  dq̃ = Σ dS·c_s;  the rows c_s get dS·q̃ + p·dõ.
		kernels.For(np, 1<<30, func(p int) {
			acc := a.dlat[off[p]:off[p+1]]
			clear(acc)
			idx, slot, pc, ds := make([]int32, K), make([]int32, K), make([]T, H*K), make([]T, H*K)
			for t := bounds[p]; t < bounds[p+1]; t++ {
				n := b*T_ + t
				dqt := a.dqt[n*H*W : (n+1)*H*W]
				clear(dqt)
				m := compact(a.sel[n*K:(n+1)*K], Candidates(t, L), idx, slot)
				if m == 0 {
					continue
				}
				P := a.P[n*K*H : (n+1)*K*H]
				for h := range H {
					for i, s := range slot[:m] {
						pc[h*K+i] = P[int(s)*H+h]
					}
				}
				dot := a.dot[n*H*kvr : (n+1)*H*kvr]
				kernels.GatherDotShared(ds, K, dot, H, lat, W, idx[:m], 1, acc) // and the rows of acc scattered below
				for h := range H {
					p, d := pc[h*K:h*K+m], ds[h*K:h*K+m]
					var sum T
					for i, v := range p {
						sum += v * d[i]
					}
					for i, v := range p {
						d[i] = v * (d[i] - sum) * a.Scale
					}
				}
				kernels.GatherAxpyShared(dqt, H, ds, K, lat, W, idx[:m])
				kernels.ScatterAxpyShared(acc, W, idx[:m], ds, K, a.qt[n*H*W:(n+1)*H*W], H)
				kernels.ScatterAxpyShared(acc, W, idx[:m], pc, K, dot, H)
			}
		})
		// Sum the parts' latent gradients into the last part's (which covers every key; the others in part order),
		// undo the rotations, add to the inputs' gradients.
		parallelRange(T_, func(lo, hi int) {
			for t := lo; t < hi; t++ {
				n := b*T_ + t
				g := a.dlat[off[np-1]+t*W : off[np-1]+(t+1)*W]
				for p := range np - 1 {
					if t < bounds[p+1] {
						kernels.Axpy(1, a.dlat[off[p]+t*W:off[p]+(t+1)*W], g)
					}
				}
				kernels.Rope(a.Rope, g[kvr:], t, true, true)
				if dCKV != nil {
					kernels.Axpy(1, g[:kvr], dCKV[n*kvr:(n+1)*kvr])
				}
				if dKVA != nil {
					kernels.Axpy(1, g[kvr:], dKVA[n*W+kvr:(n+1)*W])
				}
				for h := range H {
					r := a.dqt[(n*H+h)*W+kvr : (n*H+h+1)*W]
					kernels.Rope(a.Rope, r, t, true, true)
					if dQ != nil {
						kernels.Axpy(1, r, dQ[n*H*dq+h*dq+dn:n*H*dq+(h+1)*dq])
					}
				}
			}
		})
	}
	// dq_nope += dq̃_nope·W^UKᵀ and dW^UK += q_nopeᵀ·dq̃_nope per head.
	if dQ != nil {
		gemmHeads(H, false, true, N, dn, kvr, a.dqt, W, H*W, wkvb, (dn+dv)*kvr, kvr, 1, dQ, dq, H*dq)
	}
	if dW != nil {
		gemmHeads(H, true, false, dn, kvr, N, q, dq, H*dq, a.dqt, W, H*W, 1, dW, (dn+dv)*kvr, kvr)
	}
}

// HeadMeanProbs writes the attention probabilities averaged over heads, dst [N, K] (slot order of the
// selection): the target of the sparse-stage indexer loss (Eq. 4).
func (a *SparseMQA[T]) HeadMeanProbs(dst []T) {
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

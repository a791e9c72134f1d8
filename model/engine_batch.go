// engine_batch.go: batched decoding — one token for each of B sequences per step, every sequence at its own
// position over its own cache (dsv32-spec.md §1.3 absorbed MLA, §1.2 DSA decode, §5.1 MoE). The B rows go
// through the projections, the norms, the dense FFN, the shared expert and the LM head together, as
// [B, in]·Wᵀ matrix products through the kernels seam; W^UK and W^UV are applied per head to the B rows at
// once; attention runs per sequence with all H heads in one product over that sequence's cache (dense MLA
// over every cached position, or DSA over the top-k positions its lightning indexer selects); the routed
// experts run per expert over the rows routed to it, so tokens sent to the same expert are multiplied
// together, and each row adds its K expert outputs in its own selection order:
//
//	q̃_{b,i} = W^UK_iᵀ q^C_{b,i},  S_b = (Q̃_b·C_bᵀ + Q^R_b·K^R_bᵀ)·τ  [H, n_b],  o_{b,i} = W^UV_i (P_b·C_b)_i
//	y_b = Σ_{k<K} g_{b,k}·E_{id_{b,k}}(x_b) + E_shared(x_b)
//
// Session.Step and DSASession.Step are a batch of one over this code, so one-at-a-time and batched decoding
// run the same arithmetic per row; they differ only where the BLAS backend computes a row of an [m, ·]
// product differently for different m (gonum's does not; OpenBLAS may, by float rounding).

package model

import (
	"fmt"
	"math"

	"github.com/sparrow-rl/sparrow/dsa"
	"github.com/sparrow-rl/sparrow/internal/kernels"
)

// DecodeInput is one sequence's part of a batched decode step.
type DecodeInput struct {
	S     *Session
	Token int32
	// Experts, when non-nil, gives K expert ids per MoE layer to use instead of the selection (Keep Routing).
	Experts [][]int32
	// Selection, when non-nil (sparse sessions only), gives per layer the top-k positions to attend to
	// instead of the lightning indexer's selection (Keep Selection).
	Selection [][]int32
}

// Batch is the work space of batched decode steps of up to Cap sequences over one engine. It holds no
// sequence state (that is in each Session), so any sessions of the engine may share a step. It is not safe
// for concurrent use.
type Batch struct {
	e   *Engine
	Cap int

	x, h, qa, qn, q, kva, qt, ctx, o, ffn, logits []float32 // [B, ·]
	rstd                                          []float32 // [B]
	sc                                            []float32 // [H, n] one sequence's scores (grown)
	gl, gr                                        []float32 // [k, kvr], [k, dr]: a sparse sequence's gathered cache rows
	// MoE: affinities [B, E], gate weights and ids [B, K], per-slot expert outputs [B·K, D]
	s, w       []float32
	ids        []int32
	sel        []float64
	slots      []int // the (b·K + k) slots of the rows routed to one expert
	ein, eout  []float32
	eo         []float32
	expert     swiglu[float32]
	pos        []int
	iq, iw, ik []float32 // one sparse row's index queries [Hi, Dh], head weights [Hi], scores [Hi, n]
	khat, kr1  []float32
	iscore     []float32
	heap       []int32
}

// NewBatch allocates the work space of decode steps of up to capacity sequences.
func (e *Engine) NewBatch(capacity int) (*Batch, error) {
	if capacity < 1 {
		return nil, fmt.Errorf("engine: decode batch of %d sequences: want at least 1", capacity)
	}
	c := e.Cfg
	B, D, H := capacity, c.HiddenSize, c.NumAttentionHeads
	dq, kvr, dr := c.QHeadDim(), c.KVLoraRank, c.QKRopeHeadDim
	K, E := max(c.NumExpertsPerTok, 1), max(c.NRoutedExperts, 1)
	b := &Batch{e: e, Cap: capacity,
		x: make([]float32, B*D), h: make([]float32, B*D), ffn: make([]float32, B*D),
		qa: make([]float32, B*c.QLoraRank), qn: make([]float32, B*c.QLoraRank), q: make([]float32, B*H*dq),
		kva: make([]float32, B*(kvr+dr)), qt: make([]float32, B*H*kvr), ctx: make([]float32, B*H*kvr),
		o: make([]float32, B*H*c.VHeadDim), logits: make([]float32, B*c.VocabSize), rstd: make([]float32, B),
		s: make([]float32, B*E), w: make([]float32, B*K), ids: make([]int32, B*K), sel: make([]float64, E),
		slots: make([]int, 0, B*K), ein: make([]float32, B*K*D), eout: make([]float32, B*K*D), eo: make([]float32, B*K*D),
		expert: swiglu[float32]{D: D, I: max(c.MoEIntermediateSize, c.IntermediateSize)}, pos: make([]int, B)}
	if c.IndexNHeads > 0 {
		b.iq, b.iw = make([]float32, c.IndexNHeads*c.IndexHeadDim), make([]float32, c.IndexNHeads)
		b.khat, b.kr1 = make([]float32, c.IndexHeadDim), make([]float32, 1)
	}
	return b, nil
}

// check validates a step's inputs: room in every cache, token ids, forced ids, one row per session.
func (b *Batch) check(in []DecodeInput) error {
	c := b.e.Cfg
	if len(in) > b.Cap {
		return fmt.Errorf("engine: decode step of %d sequences exceeds the batch capacity %d", len(in), b.Cap)
	}
	for i, r := range in {
		s := r.S
		switch {
		case s == nil || s.e != b.e:
			return fmt.Errorf("engine: decode row %d: a session of another engine (or none)", i)
		case s.Len >= s.MaxLen:
			return fmt.Errorf("engine: session full (%d positions)", s.MaxLen)
		case r.Token < 0 || int(r.Token) >= c.VocabSize:
			return fmt.Errorf("engine: token id %d outside vocabulary [0, %d)", r.Token, c.VocabSize)
		case r.Selection != nil && s.TopK == 0:
			return fmt.Errorf("engine: decode row %d: forced DSA selections for a dense session", i)
		}
		for l := range c.NumHiddenLayers {
			if r.Experts != nil && c.IsMoE(l) && len(r.Experts[l]) != c.NumExpertsPerTok {
				return fmt.Errorf("engine: layer %d: %d forced experts, want %d", l, len(r.Experts[l]), c.NumExpertsPerTok)
			}
			if r.Selection != nil && len(r.Selection[l]) != s.TopK {
				return fmt.Errorf("engine: layer %d: %d forced positions, want %d", l, len(r.Selection[l]), s.TopK)
			}
		}
		for j := range i {
			if in[j].S == s {
				return fmt.Errorf("engine: decode rows %d and %d are the same session", j, i)
			}
		}
	}
	return nil
}

// Step decodes one token for every input at its session's position Len: it appends to each session's caches
// and fills its Logits, Experts and Margins (and Selected for sparse sessions).
func (b *Batch) Step(in []DecodeInput) error {
	if err := b.check(in); err != nil {
		return err
	}
	if len(in) == 0 {
		return nil
	}
	e, c := b.e, b.e.Cfg
	B, D, H := len(in), c.HiddenSize, c.NumAttentionHeads
	dn, dr, dv, kvr := c.QKNopeHeadDim, c.QKRopeHeadDim, c.VHeadDim, c.KVLoraRank
	dq := dn + dr
	emb := e.P.MustGet("model.embed_tokens.weight")
	for i, r := range in {
		copy(b.x[i*D:(i+1)*D], emb[int(r.Token)*D:(int(r.Token)+1)*D])
		b.pos[i] = r.S.Len
	}
	x, h, rstd := b.x[:B*D], b.h[:B*D], b.rstd[:B]
	for l := 0; l < c.NumHiddenLayers; l++ {
		// Projections of the B rows [B, D] → q [B, H·dq], the new latent and rope key of every row.
		kernels.RMSNorm(h, rstd, x, B, D, D, 0, e.w(l, "input_layernorm.weight"), c.RMSNormEps)
		kernels.Linear(b.qa, h, e.w(l, "self_attn.q_a_proj.weight"), B, D, c.QLoraRank, false)
		kernels.RMSNorm(b.qn, rstd, b.qa, B, c.QLoraRank, c.QLoraRank, 0, e.w(l, "self_attn.q_a_layernorm.weight"), c.RMSNormEps)
		kernels.Linear(b.q, b.qn, e.w(l, "self_attn.q_b_proj.weight"), B, c.QLoraRank, H*dq, false)
		kernels.Linear(b.kva, h, e.w(l, "self_attn.kv_a_proj_with_mqa.weight"), B, D, kvr+dr, false)
		kvNorm := e.w(l, "self_attn.kv_a_layernorm.weight")
		for i, r := range in {
			s, pos := r.S, b.pos[i]
			kernels.RMSNorm(s.latent[l][pos*kvr:(pos+1)*kvr], rstd[i:i+1], b.kva[i*(kvr+dr):], 1, kvr, kvr+dr, 0, kvNorm, c.RMSNormEps)
			kr := s.krope[l][pos*dr : (pos+1)*dr]
			copy(kr, b.kva[i*(kvr+dr)+kvr:(i+1)*(kvr+dr)])
			kernels.Rope(e.rope, kr, pos, true, false)
			for hd := 0; hd < H; hd++ {
				o := (i*H+hd)*dq + dn
				kernels.Rope(e.rope, b.q[o:o+dr], pos, true, false)
			}
		}
		// Absorption: q̃_{b,i} = W^UK_iᵀ q^C_{b,i} for the B rows of each head, qt [B, H, kvr].
		wkv := e.w(l, "self_attn.kv_b_proj.weight") // [H·(dn+dv), kvr]
		for hd := 0; hd < H; hd++ {
			wuk := wkv[hd*(dn+dv)*kvr : (hd*(dn+dv)+dn)*kvr] // [dn, kvr]
			kernels.Gemm(false, false, B, kvr, dn, 1, b.q[hd*dq:], H*dq, wuk, kvr, 0, b.qt[hd*kvr:], H*kvr)
		}
		// Attention per sequence over its own cache, all heads in one product: ctx [B, H, kvr].
		for i, r := range in {
			if r.S.TopK > 0 {
				var forced []int32
				if r.Selection != nil {
					forced = r.Selection[l]
				}
				b.sparseAttention(l, i, r.S, forced)
			} else {
				b.denseAttention(l, i, r.S)
			}
		}
		// o_{b,i} = W^UV_i ctx_{b,i} for the B rows of each head, then the output projection into the residual.
		for hd := 0; hd < H; hd++ {
			wuv := wkv[(hd*(dn+dv)+dn)*kvr : (hd+1)*(dn+dv)*kvr] // [dv, kvr]
			kernels.Gemm(false, true, B, dv, kvr, 1, b.ctx[hd*kvr:], H*kvr, wuv, kvr, 0, b.o[hd*dv:], H*dv)
		}
		kernels.Linear(x, b.o, e.w(l, "self_attn.o_proj.weight"), B, H*dv, D, true)
		kernels.RMSNorm(h, rstd, x, B, D, D, 0, e.w(l, "post_attention_layernorm.weight"), c.RMSNormEps)
		if c.IsMoE(l) {
			b.moe(l, in)
		} else {
			b.expert.I = c.IntermediateSize
			b.expert.forward(b.ffn, h, e.w(l, "mlp.gate_proj.weight"), e.w(l, "mlp.up_proj.weight"), e.w(l, "mlp.down_proj.weight"), B, false)
		}
		kernels.Axpy(1, b.ffn[:B*D], x)
	}
	kernels.RMSNorm(h, rstd, x, B, D, D, 0, e.P.MustGet("model.norm.weight"), c.RMSNormEps)
	V := c.VocabSize
	kernels.Linear(b.logits, h, e.P.MustGet("lm_head.weight"), B, D, V, false)
	for i, r := range in {
		copy(r.S.Logits, b.logits[i*V:(i+1)*V])
		r.S.Len++
	}
	return nil
}

// denseAttention writes row i's ctx [H, kvr] = softmax(S)·C over every cached position of s (absorbed MLA).
func (b *Batch) denseAttention(l, i int, s *Session) {
	c := b.e.Cfg
	H, dn, dr, kvr := c.NumAttentionHeads, c.QKNopeHeadDim, c.QKRopeHeadDim, c.KVLoraRank
	dq := dn + dr
	n := b.pos[i] + 1
	scale := float32(1 / math.Sqrt(float64(dq)))
	b.sc = grow(b.sc, H*n)
	qt, q, ctx := b.qt[i*H*kvr:(i+1)*H*kvr], b.q[i*H*dq:(i+1)*H*dq], b.ctx[i*H*kvr:(i+1)*H*kvr]
	kernels.Gemm(false, true, H, n, kvr, scale, qt, kvr, s.latent[l], kvr, 0, b.sc, n)
	kernels.Gemm(false, true, H, n, dr, scale, q[dn:], dq, s.krope[l], dr, 1, b.sc, n)
	for hd := 0; hd < H; hd++ {
		kernels.SoftmaxRow(b.sc[hd*n : (hd+1)*n])
	}
	kernels.Gemm(false, false, H, kvr, n, 1, b.sc, n, s.latent[l], kvr, 0, ctx, kvr)
}

// sparseAttention caches row i's index key, selects (or takes the forced) top-k positions of s with the
// lightning indexer (dsv32-spec.md §1.2), and writes ctx [H, kvr] = softmax(S)·C over those positions only.
func (b *Batch) sparseAttention(l, i int, s *Session, forced []int32) {
	e, c := b.e, b.e.Cfg
	H, dn, dr, kvr := c.NumAttentionHeads, c.QKNopeHeadDim, c.QKRopeHeadDim, c.KVLoraRank
	dq := dn + dr
	D, QR := c.HiddenSize, c.QLoraRank
	pos := b.pos[i]
	n := pos + 1
	d := s.dims
	wt := s.indexerWeights(l)
	keys := s.ikeys[l]
	h, qn := b.h[i*D:(i+1)*D], b.qn[i*QR:(i+1)*QR]
	dsa.Keys(d, e.rope, keys[pos*d.Dh:(pos+1)*d.Dh], b.khat, b.kr1, h, 1, pos, wt)
	sel := s.Selected[l]
	if forced != nil {
		copy(sel, forced)
	} else {
		// I_t = Σ_j w_j·ReLU(q_j·k_s) over the cached keys, then the top k.
		dsa.Queries(d, e.rope, b.iq, b.iw, qn, h, 1, pos, wt)
		b.ik = grow(b.ik, d.H*n)
		kernels.Gemm(false, true, d.H, n, d.Dh, 1, b.iq, d.Dh, keys, d.Dh, 0, b.ik, n)
		b.iscore = grow(b.iscore, n)
		sc := b.iscore
		clear(sc)
		for j := 0; j < d.H; j++ {
			wj, z := b.iw[j], b.ik[j*n:(j+1)*n]
			for t, v := range z {
				if v > 0 {
					sc[t] += wj * v
				}
			}
		}
		if len(b.heap) < len(sel) {
			b.heap = make([]int32, len(sel))
		}
		dsa.SelectRow(sel, sc, n, b.heap)
	}
	k := len(sel)
	b.gl, b.gr = grow(b.gl, k*kvr), grow(b.gr, k*dr)
	for j, t := range sel {
		if t < 0 || int(t) >= n {
			clear(b.gl[j*kvr : (j+1)*kvr])
			clear(b.gr[j*dr : (j+1)*dr])
			continue
		}
		copy(b.gl[j*kvr:(j+1)*kvr], s.latent[l][int(t)*kvr:(int(t)+1)*kvr])
		copy(b.gr[j*dr:(j+1)*dr], s.krope[l][int(t)*dr:(int(t)+1)*dr])
	}
	scale := float32(1 / math.Sqrt(float64(dq)))
	b.sc = grow(b.sc, H*k)
	qt, q, ctx := b.qt[i*H*kvr:(i+1)*H*kvr], b.q[i*H*dq:(i+1)*H*dq], b.ctx[i*H*kvr:(i+1)*H*kvr]
	kernels.Gemm(false, true, H, k, kvr, scale, qt, kvr, b.gl, kvr, 0, b.sc, k)
	kernels.Gemm(false, true, H, k, dr, scale, q[dn:], dq, b.gr, dr, 1, b.sc, k)
	for hd := 0; hd < H; hd++ {
		row := b.sc[hd*k : (hd+1)*k]
		for j, t := range sel {
			if t < 0 || int(t) >= n {
				row[j] = float32(math.Inf(-1))
			}
		}
		kernels.SoftmaxRow(row)
	}
	kernels.Gemm(false, false, H, kvr, k, 1, b.sc, k, b.gl, kvr, 0, ctx, kvr)
}

// moe computes ffn [B, D] = MoE(h) for layer l: every row's experts are selected (or forced) and recorded in
// its session, the shared expert runs on all rows, each routed expert on the rows routed to it.
func (b *Batch) moe(l int, in []DecodeInput) {
	e, c := b.e, b.e.Cfg
	mc := e.moe
	B, D, K, E := len(in), c.HiddenSize, mc.K, mc.E
	h, ffn := b.h[:B*D], b.ffn[:B*D]
	kernels.Linear(b.s, h, e.w(l, "mlp.gate.weight"), B, D, E, false)
	for j, v := range b.s[:B*E] {
		b.s[j] = kernels.Sigmoid(v)
	}
	bias := e.w(l, "mlp.gate.e_score_correction_bias")
	for i, r := range in {
		ids, s := b.ids[i*K:(i+1)*K], b.s[i*E:(i+1)*E]
		if r.Experts != nil {
			copy(ids, r.Experts[l])
			r.S.Margins[l] = math.Inf(1)
		} else {
			r.S.Margins[l] = selectExperts(ids, s, bias, mc, b.sel)
		}
		copy(r.S.Experts[l], ids)
		gateWeights(b.w[i*K:(i+1)*K], ids, s, mc)
	}
	if mc.SharedI > 0 {
		b.expert.I = mc.SharedI
		b.expert.forward(ffn, h, e.w(l, "mlp.shared_experts.gate_proj.weight"), e.w(l, "mlp.shared_experts.up_proj.weight"), e.w(l, "mlp.shared_experts.down_proj.weight"), B, false)
	} else {
		clear(ffn)
	}
	// Routed experts: gather the rows routed to expert j, run them as one [n_j, D] batch, scatter by slot.
	b.expert.I = mc.I
	for j := 0; j < E; j++ {
		slots := b.slots[:0]
		for sl, id := range b.ids[:B*K] {
			if int(id) == j {
				slots = append(slots, sl)
			}
		}
		if len(slots) == 0 {
			continue
		}
		nj := len(slots)
		for r, sl := range slots {
			row := sl / K
			copy(b.ein[r*D:(r+1)*D], h[row*D:(row+1)*D])
		}
		ew := e.experts[l][j]
		b.expert.forward(b.eout[:nj*D], b.ein[:nj*D], ew[0], ew[1], ew[2], nj, false)
		for r, sl := range slots {
			copy(b.eo[sl*D:(sl+1)*D], b.eout[r*D:(r+1)*D])
		}
		b.slots = slots
	}
	// Each row adds its experts' outputs in its own order (as one sequence decoded alone does).
	for i := range in {
		for k := 0; k < K; k++ {
			sl := i*K + k
			kernels.Axpy(b.w[sl], b.eo[sl*D:(sl+1)*D], ffn[i*D:(i+1)*D])
		}
	}
}

// engine_batch.go: batched decoding — one token for each of B sequences per step, every sequence at its own
// position over its own cache (dsv32-spec.md §1.3 absorbed MLA, §1.2 DSA decode, §5.1 MoE). The B rows go
// through the projections, the norms, the dense FFN, the shared expert and the LM head together, as
// [B, in]·Wᵀ matrix products (kernels.LinearRows); each sequence's task writes its cache entries, absorbs
// W^UK into its queries, attends with all H heads over its cache (dense MLA over every cached position, or DSA
// over the top-k positions its lightning indexer selects) and applies W^UV; the routed experts run per expert
// over the rows routed to it, gathered, so tokens sent to the same expert are multiplied together (and the
// expert's weights are read once per step), and each row adds its K expert outputs in its own selection order:
//
//	q̃_{b,i} = W^UK_iᵀ q^C_{b,i},  S_b = (Q̃_b·C_bᵀ + Q^R_b·K^R_bᵀ)·τ  [H, n_b],  o_{b,i} = W^UV_i (P_b·C_b)_i
//	y_b = Σ_{k<K} g_{b,k}·E_{id_{b,k}}(x_b) + E_shared(x_b)
//
// A step is a sequence of parallel regions on the lanes of a team (engine_team.go), about six per layer: the
// products split by output columns, those with the same input in one region (q_a ‖ kv_a; gate ‖ up with their
// SwiGLU), the sequences' tasks, the experts' gate/up/SwiGLU and then their down products by column blocks.
// A column block or a sequence is a task that writes only its own outputs, so no result depends on the lanes.
//
// Session.Step and DSASession.Step are a batch of one over this code, so one-at-a-time and batched decoding
// run the same arithmetic per row. The products over the batch's rows go through kernels.LinearRows, whose
// rows do not depend on the row count, W^UK through a per-row gathered axpy and attention per sequence, so a
// row's result is the same bits in any batch (with AVX2; elsewhere, and for shapes the row kernels do not
// take, BLAS computes them, which gonum's does row-invariantly and OpenBLAS within float rounding).

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
// for concurrent use. A step spreads its work over kernels.Threads() lanes: the output columns of the
// projections and of the experts' products (the shared one included) and the sequences' attention are
// independent tasks, each writing only its own outputs, so the result does not depend on the number of lanes or their timing.
type Batch struct {
	e   *Engine
	Cap int

	x, h, qa, qn, q, kva, qt, ctx, o, ffn, logits []float32 // [B, ·]
	a, u, act                                     []float32 // dense FFN activations [B, I]
	rstd                                          []float32 // [B]
	// MoE: affinities [B, E], gate weights and ids [B, K], the slots (b·K + k) routed to each expert, the
	// first gathered row of each expert (base) and the gathered row of each slot (slotRow); the routed
	// experts' gathered inputs and outputs [B·K, D] and activations [B·K, I], the shared expert's [B, I_s].
	s, w          []float32
	ids           []int32
	sel           []float64
	slots         [][]int
	base, slotRow []int
	ein, eout     []float32
	ea, eu, eact  []float32
	sa, su, sact  []float32
	pos           []int
	iota          []int32 // 0, 1, …: the rows of W^UK
	lanes         []lane
	team          *team                 // the lanes' helpers during a step
	prods         []product             // the products of the current linears region
	prodFn        func(ln *lane, t int) // b.prodTask, bound once
	seqFn         func(ln *lane, i int) // b.sequence, bound once
	layer         int                   // the layer of the current sequence tasks
	in            []DecodeInput         // the current step's inputs (during the step)
}

// lane is one worker's scratch for the tasks of a step.
type lane struct {
	sc, gl, gr     []float32 // a sequence's scores [H, n] and gathered cache rows [k, kvr], [k, dr]
	iq, iw, ik     []float32 // a sparse sequence's index queries [Hi, Dh], head weights [Hi], scores [Hi, n]
	khat, kr1, isc []float32
	heap           []int32
	posIdx         []int32 // 0, 1, …: the rows of attend's context axpy
	masked         []bool  // a sparse sequence's selections outside its cache
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
		a: make([]float32, B*c.IntermediateSize), u: make([]float32, B*c.IntermediateSize), act: make([]float32, B*c.IntermediateSize),
		s: make([]float32, B*E), w: make([]float32, B*K), ids: make([]int32, B*K), sel: make([]float64, E),
		slots: make([][]int, E), base: make([]int, E), slotRow: make([]int, B*K), pos: make([]int, B), lanes: make([]lane, max(kernels.Threads(), 1))}
	BK, I, SI := B*K, c.MoEIntermediateSize, c.MoEIntermediateSize*c.NSharedExperts
	b.ein, b.eout = make([]float32, BK*D), make([]float32, BK*D)
	b.ea, b.eu, b.eact = make([]float32, BK*I), make([]float32, BK*I), make([]float32, BK*I)
	b.sa, b.su, b.sact = make([]float32, B*SI), make([]float32, B*SI), make([]float32, B*SI)
	for i := range b.slots {
		b.slots[i] = make([]int, 0, B*K)
	}
	b.iota = make([]int32, c.QKNopeHeadDim)
	for i := range b.iota {
		b.iota[i] = int32(i)
	}
	b.team = newTeam(b.lanes)
	b.prodFn, b.seqFn = b.prodTask, b.sequence
	for i := range b.lanes {
		ln := &b.lanes[i]
		if c.IndexNHeads > 0 {
			ln.iq, ln.iw = make([]float32, c.IndexNHeads*c.IndexHeadDim), make([]float32, c.IndexNHeads)
			ln.khat, ln.kr1 = make([]float32, c.IndexHeadDim), make([]float32, 1)
		}
	}
	return b, nil
}

// parallel runs task(ln, i) for i in [0, n) over the step's lanes (the team), each lane taking the next task
// when it finishes one (so tasks of unequal cost balance); every task writes only its own outputs.
func (b *Batch) parallel(n int, task func(ln *lane, i int)) {
	b.team.run(n, task)
}

// splitFlops is the least product (2·m·in·out) whose output columns linears spreads over the lanes, and
// splitWeights the least weight matrix (in·out) it spreads whatever the rows (streaming it is the cost).
const (
	splitFlops   = 1 << 18
	splitWeights = 1 << 16
)

// product is one y = x·Wᵀ (+ y when acc) of a step for linears: x [m, in] (row stride ldx), W [out, in], y [m,
// out] (row stride ldy). With swiglu set (a gate product whose up product is u, both [m, out] with row stride
// ldy), a part also writes act = SiLU(y)⊙u over its columns.
type product struct {
	y, x, w    []float32
	ldy, ldx   int
	m, in, out int
	acc        bool
	// swiglu: the up product's weights [out, in], its output and the activation (laid out as y)
	wu, u, act []float32
	swiglu     bool
	parts      int // column blocks
	chunk      int // their width (a multiple of 8)
}

// split splits p's output columns over lanes lanes (in blocks of a multiple of 8) when the product pays for
// it: decode's products have few rows, which a row split cannot use. The split depends on the shapes only, and
// no output depends on it.
func (p *product) split(lanes int) {
	p.parts, p.chunk = 1, p.out
	if n := min(lanes, p.out/32); n > 1 && (2*p.m*p.in*p.out >= splitFlops || p.in*p.out >= splitWeights) {
		p.parts, p.chunk = n, ((p.out+n-1)/n+7)/8*8
	}
}

// part computes p's output columns [k·chunk, (k+1)·chunk) with kernels.LinearRows (and their SwiGLU).
func (p *product) part(k int) {
	o0, o1 := k*p.chunk, min((k+1)*p.chunk, p.out)
	if o0 >= o1 {
		return
	}
	kernels.LinearRows(p.y[o0:], p.ldy, p.x, p.ldx, p.w[o0*p.in:], p.m, p.in, o1-o0, p.acc)
	if !p.swiglu {
		return
	}
	kernels.LinearRows(p.u[o0:], p.ldy, p.x, p.ldx, p.wu[o0*p.in:], p.m, p.in, o1-o0, false)
	for r := range p.m {
		row := r*p.ldy + o0
		kernels.SwiGLU(p.act[row:row+o1-o0], p.y[row:row+o1-o0], p.u[row:row+o1-o0])
	}
}

// linears runs the products ps (independent of each other) in one parallel region, each split by columns.
func (b *Batch) linears(ps ...product) {
	b.prods = append(b.prods[:0], ps...)
	b.runProducts()
}

// runProducts runs the products of b.prods in one parallel region, each split by columns.
func (b *Batch) runProducts() {
	n := 0
	for i := range b.prods {
		b.prods[i].split(len(b.lanes))
		n += b.prods[i].parts
	}
	b.parallel(n, b.prodFn)
}

// prodTask runs task t of the products of linears: part t of the product it falls in.
func (b *Batch) prodTask(_ *lane, t int) {
	for i := range b.prods {
		p := &b.prods[i]
		if t < p.parts {
			p.part(t)
			return
		}
		t -= p.parts
	}
}

// linear computes y = x·Wᵀ (+ y when accumulate) for x [m, in] (row stride ldx), W [out, in], y [m, out] (row
// stride ldy), its output columns split over the lanes.
func (b *Batch) linear(y []float32, ldy int, x []float32, ldx int, w []float32, m, in, out int, accumulate bool) {
	b.linears(product{y: y, ldy: ldy, x: x, ldx: ldx, w: w, m: m, in: in, out: out, acc: accumulate})
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
	b.team.start()
	defer b.team.stop()
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
		// Projections of the B rows [B, D]: q^A [B, q_lora] and the new latent and rope key of every row [B,
		// kvr+dr] in one region, then q [B, H·dq].
		kernels.RMSNorm(h, rstd, x, B, D, D, 0, e.w(l, "input_layernorm.weight"), c.RMSNormEps)
		b.linears(product{y: b.qa, ldy: c.QLoraRank, x: h, ldx: D, w: e.w(l, "self_attn.q_a_proj.weight"), m: B, in: D, out: c.QLoraRank},
			product{y: b.kva, ldy: kvr + dr, x: h, ldx: D, w: e.w(l, "self_attn.kv_a_proj_with_mqa.weight"), m: B, in: D, out: kvr + dr})
		kernels.RMSNorm(b.qn, rstd, b.qa, B, c.QLoraRank, c.QLoraRank, 0, e.w(l, "self_attn.q_a_layernorm.weight"), c.RMSNormEps)
		b.linear(b.q, H*dq, b.qn, c.QLoraRank, e.w(l, "self_attn.q_b_proj.weight"), B, c.QLoraRank, H*dq, false)
		// Per sequence: its cache entries, absorbed queries, attention and W^UV outputs o [B, H·dv].
		b.layer, b.in = l, in
		b.parallel(B, b.seqFn)
		b.linear(x, D, b.o, H*dv, e.w(l, "self_attn.o_proj.weight"), B, H*dv, D, true)
		kernels.RMSNorm(h, rstd, x, B, D, D, 0, e.w(l, "post_attention_layernorm.weight"), c.RMSNormEps)
		if c.IsMoE(l) {
			b.moe(l, in)
		} else {
			b.denseFFN(l, B)
		}
		kernels.Axpy(1, b.ffn[:B*D], x)
	}
	b.in = nil
	kernels.RMSNorm(h, rstd, x, B, D, D, 0, e.P.MustGet("model.norm.weight"), c.RMSNormEps)
	V := c.VocabSize
	b.linear(b.logits, V, h, D, e.P.MustGet("lm_head.weight"), B, D, V, false)
	for i, r := range in {
		copy(r.S.Logits, b.logits[i*V:(i+1)*V])
		r.S.Len++
	}
	return nil
}

// sequence is the attention task of row i of the current step's layer b.layer (dsv32-spec.md §1.3): it
// normalises and ropes the row's new latent and rope key into its session's cache, ropes its queries, absorbs
// W^UK into them (q̃_{b,i} = W^UK_iᵀ q^C_{b,i} = Σ_p q^C_{b,i,p}·W^UK_i[p], qt [H, kvr]), attends over the cache
// (ctx [H, kvr]) and applies W^UV per head (o [H·dv]). Everything it writes belongs to row i.
func (b *Batch) sequence(ln *lane, i int) {
	e, c, l, r := b.e, b.e.Cfg, b.layer, b.in[i]
	H, dn, dr, dv, kvr := c.NumAttentionHeads, c.QKNopeHeadDim, c.QKRopeHeadDim, c.VHeadDim, c.KVLoraRank
	dq := dn + dr
	s, pos := r.S, b.pos[i]
	kernels.RMSNorm(s.latent[l][pos*kvr:(pos+1)*kvr], b.rstd[i:i+1], b.kva[i*(kvr+dr):], 1, kvr, kvr+dr, 0, e.w(l, "self_attn.kv_a_layernorm.weight"), c.RMSNormEps)
	kr := s.krope[l][pos*dr : (pos+1)*dr]
	copy(kr, b.kva[i*(kvr+dr)+kvr:(i+1)*(kvr+dr)])
	kernels.Rope(e.rope, kr, pos, true, false)
	wkv := e.w(l, "self_attn.kv_b_proj.weight") // [H·(dn+dv), kvr]
	for hd := 0; hd < H; hd++ {
		o := (i*H+hd)*dq + dn
		kernels.Rope(e.rope, b.q[o:o+dr], pos, true, false)
		wuk := wkv[hd*(dn+dv)*kvr : (hd*(dn+dv)+dn)*kvr] // [dn, kvr]
		qt, qc := b.qt[(i*H+hd)*kvr:(i*H+hd+1)*kvr], b.q[(i*H+hd)*dq:(i*H+hd)*dq+dn]
		clear(qt)
		kernels.GatherAxpy(qt, qc, wuk, kvr, b.iota)
		if kernels.GemmRecorder != nil { // the absorption is a product [1, dn]·[dn, kvr], counted as such
			kernels.GemmRecorder(kernels.GemmShape{M: 1, N: kvr, K: dn})
		}
	}
	b.attention(ln, l, i, r)
	for hd := 0; hd < H; hd++ {
		wuv := wkv[(hd*(dn+dv)+dn)*kvr : (hd+1)*(dn+dv)*kvr] // [dv, kvr]
		kernels.LinearRows(b.o[(i*H+hd)*dv:], dv, b.ctx[(i*H+hd)*kvr:], kvr, wuv, 1, kvr, dv, false)
	}
}

// attention writes row i's ctx [H, kvr] for its session's attention (dense or sparse).
func (b *Batch) attention(ln *lane, l, i int, r DecodeInput) {
	if r.S.TopK == 0 {
		b.denseAttention(ln, l, i, r.S)
		return
	}
	var forced []int32
	if r.Selection != nil {
		forced = r.Selection[l]
	}
	b.sparseAttention(ln, l, i, r.S, forced)
}

// denseFFN computes ffn [B, D] = W_down·(SiLU(W_gate·h) ⊙ W_up·h) for layer l's dense SwiGLU FFN (as
// swiglu.forward, with split products): the gate and up products and the activation in one region, by column
// blocks, then the down product.
func (b *Batch) denseFFN(l, B int) {
	e, c := b.e, b.e.Cfg
	D, I := c.HiddenSize, c.IntermediateSize
	a, u, act := b.a[:B*I], b.u[:B*I], b.act[:B*I]
	b.linears(product{y: a, ldy: I, x: b.h, ldx: D, w: e.w(l, "mlp.gate_proj.weight"), m: B, in: D, out: I,
		swiglu: true, wu: e.w(l, "mlp.up_proj.weight"), u: u, act: act})
	b.linear(b.ffn, D, act, I, e.w(l, "mlp.down_proj.weight"), B, I, D, false)
}

// denseAttention writes row i's ctx [H, kvr] = softmax(S)·C over every cached position of s (absorbed MLA).
func (b *Batch) denseAttention(ln *lane, l, i int, s *Session) {
	b.attend(ln, i, s.latent[l], s.krope[l], b.pos[i]+1, nil)
}

// attend writes row i's ctx [H, kvr] = softmax(S)·C over the n rows of lat [n, kvr] and kr [n, dr] (the cached
// positions, or the selected ones gathered): the scores S = (Q̃·Cᵀ + Q^R·K^Rᵀ)·τ [H, n] as row dots
// (kernels.LinearRows over the first n − n mod 4 rows, plain loops over the rest), −∞ where masked[j] (a
// selection outside the cache), the softmax of the training graph's attention (SoftmaxRowFast), and each
// head's context as one gathered axpy over the rows.
func (b *Batch) attend(ln *lane, i int, lat, kr []float32, n int, masked []bool) {
	c := b.e.Cfg
	H, dn, dr, kvr := c.NumAttentionHeads, c.QKNopeHeadDim, c.QKRopeHeadDim, c.KVLoraRank
	dq := dn + dr
	n4 := n &^ 3
	scale := float32(1 / math.Sqrt(float64(dq)))
	ln.sc = grow(ln.sc, H*n)
	for t := len(ln.posIdx); t < n; t++ {
		ln.posIdx = append(ln.posIdx, int32(t))
	}
	qt, q, ctx := b.qt[i*H*kvr:(i+1)*H*kvr], b.q[i*H*dq:(i+1)*H*dq], b.ctx[i*H*kvr:(i+1)*H*kvr]
	if n4 > 0 {
		kernels.LinearRows(ln.sc, n, qt, kvr, lat, H, kvr, n4, false)
		kernels.LinearRows(ln.sc, n, q[dn:], dq, kr, H, dr, n4, true)
	}
	if kernels.GemmRecorder != nil { // the rest of the scores and the context, counted as the products they are
		if n > n4 {
			kernels.GemmRecorder(kernels.GemmShape{TransB: true, M: H, N: n - n4, K: kvr})
			kernels.GemmRecorder(kernels.GemmShape{TransB: true, M: H, N: n - n4, K: dr})
		}
		kernels.GemmRecorder(kernels.GemmShape{M: H, N: kvr, K: n})
	}
	for t := n4; t < n; t++ {
		for hd := 0; hd < H; hd++ {
			var sc, sr float32
			for p, v := range qt[hd*kvr : (hd+1)*kvr] {
				sc += v * lat[t*kvr+p]
			}
			for p, v := range q[hd*dq+dn : (hd+1)*dq] {
				sr += v * kr[t*dr+p]
			}
			ln.sc[hd*n+t] = sc + sr
		}
	}
	for hd := 0; hd < H; hd++ {
		row := ln.sc[hd*n : (hd+1)*n]
		for t := range row {
			row[t] *= scale
			if masked != nil && masked[t] {
				row[t] = float32(math.Inf(-1))
			}
		}
		kernels.SoftmaxRowFast(row)
		ch := ctx[hd*kvr : (hd+1)*kvr]
		clear(ch)
		kernels.GatherAxpy(ch, row, lat, kvr, ln.posIdx[:n])
	}
}

// sparseAttention caches row i's index key, selects (or takes the forced) top-k positions of s with the
// lightning indexer (dsv32-spec.md §1.2), and writes ctx [H, kvr] = softmax(S)·C over those positions only.
func (b *Batch) sparseAttention(ln *lane, l, i int, s *Session, forced []int32) {
	e, c := b.e, b.e.Cfg
	dr, kvr := c.QKRopeHeadDim, c.KVLoraRank
	D, QR := c.HiddenSize, c.QLoraRank
	pos := b.pos[i]
	n := pos + 1
	d := s.dims
	wt := s.indexerWeights(l)
	keys := s.ikeys[l]
	h, qn := b.h[i*D:(i+1)*D], b.qn[i*QR:(i+1)*QR]
	dsa.Keys(d, e.rope, keys[pos*d.Dh:(pos+1)*d.Dh], ln.khat, ln.kr1, h, 1, pos, wt)
	sel := s.Selected[l]
	if forced != nil {
		copy(sel, forced)
	} else {
		// I_t = Σ_j w_j·ReLU(q_j·k_s) over the cached keys, then the top k.
		dsa.Queries(d, e.rope, ln.iq, ln.iw, qn, h, 1, pos, wt)
		ln.ik = grow(ln.ik, d.H*n)
		kernels.Gemm(false, true, d.H, n, d.Dh, 1, ln.iq, d.Dh, keys, d.Dh, 0, ln.ik, n)
		ln.isc = grow(ln.isc, n)
		sc := ln.isc
		clear(sc)
		for j := 0; j < d.H; j++ {
			wj, z := ln.iw[j], ln.ik[j*n:(j+1)*n]
			for t, v := range z {
				if v > 0 {
					sc[t] += wj * v
				}
			}
		}
		if len(ln.heap) < len(sel) {
			ln.heap = make([]int32, len(sel))
		}
		dsa.SelectRow(sel, sc, n, ln.heap)
	}
	k := len(sel)
	ln.gl, ln.gr, ln.masked = grow(ln.gl, k*kvr), grow(ln.gr, k*dr), growBool(ln.masked, k)
	for j, t := range sel {
		ln.masked[j] = t < 0 || int(t) >= n
		if ln.masked[j] {
			clear(ln.gl[j*kvr : (j+1)*kvr])
			clear(ln.gr[j*dr : (j+1)*dr])
			continue
		}
		copy(ln.gl[j*kvr:(j+1)*kvr], s.latent[l][int(t)*kvr:(int(t)+1)*kvr])
		copy(ln.gr[j*dr:(j+1)*dr], s.krope[l][int(t)*dr:(int(t)+1)*dr])
	}
	b.attend(ln, i, ln.gl, ln.gr, k, ln.masked)
}

// moe computes ffn [B, D] = MoE(h) for layer l: every row's experts are selected (or forced) and recorded in
// its session; each routed expert's rows are gathered (expert j's n_j rows contiguous from base_j in ein [B·K,
// D]) so that they go through the expert as one [n_j, D] product; the shared expert (all rows, writing ffn)
// and the routed experts run as two regions of column blocks: gate, up and SwiGLU, then down. Then each row
// adds its K experts' outputs in its own selection order, as one sequence decoded alone does.
func (b *Batch) moe(l int, in []DecodeInput) {
	e, c := b.e, b.e.Cfg
	mc := e.moe
	B, D, K, E, I := len(in), c.HiddenSize, mc.K, mc.E, mc.I
	h, ffn := b.h[:B*D], b.ffn[:B*D]
	b.linear(b.s, E, h, D, e.w(l, "mlp.gate.weight"), B, D, E, false)
	for j, v := range b.s[:B*E] {
		b.s[j] = kernels.Sigmoid(v)
	}
	bias := e.w(l, "mlp.gate.e_score_correction_bias")
	for j := range b.slots {
		b.slots[j] = b.slots[j][:0]
	}
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
		for k, id := range ids {
			b.slots[id] = append(b.slots[id], i*K+k)
		}
	}
	// Gather: slot sl's row is row slotRow[sl] of ein and eout.
	base := 0
	for j := range E {
		for r, sl := range b.slots[j] {
			row := sl / K
			copy(b.ein[(base+r)*D:(base+r+1)*D], h[row*D:(row+1)*D])
			b.slotRow[sl] = base + r
		}
		b.base[j] = base
		base += len(b.slots[j])
	}
	// Gate, up and SwiGLU of every expert, then its down product.
	SI := mc.SharedI
	b.prods = b.prods[:0]
	if SI > 0 {
		b.prods = append(b.prods, product{y: b.sa[:B*SI], ldy: SI, x: h, ldx: D, w: e.w(l, "mlp.shared_experts.gate_proj.weight"), m: B, in: D, out: SI,
			swiglu: true, wu: e.w(l, "mlp.shared_experts.up_proj.weight"), u: b.su[:B*SI], act: b.sact[:B*SI]})
	}
	for j := range E {
		if nj := len(b.slots[j]); nj > 0 {
			r0, ew := b.base[j], e.experts[l][j]
			b.prods = append(b.prods, product{y: b.ea[r0*I:], ldy: I, x: b.ein[r0*D:], ldx: D, w: ew[0], m: nj, in: D, out: I,
				swiglu: true, wu: ew[1], u: b.eu[r0*I:], act: b.eact[r0*I:]})
		}
	}
	b.runProducts()
	b.prods = b.prods[:0]
	if SI > 0 {
		b.prods = append(b.prods, product{y: ffn, ldy: D, x: b.sact[:B*SI], ldx: SI, w: e.w(l, "mlp.shared_experts.down_proj.weight"), m: B, in: SI, out: D})
	} else {
		clear(ffn)
	}
	for j := range E {
		if nj := len(b.slots[j]); nj > 0 {
			r0 := b.base[j]
			b.prods = append(b.prods, product{y: b.eout[r0*D:], ldy: D, x: b.eact[r0*I:], ldx: I, w: e.experts[l][j][2], m: nj, in: I, out: D})
		}
	}
	b.runProducts()
	for i := range in {
		for k := 0; k < K; k++ {
			sl := i*K + k
			r := b.slotRow[sl]
			kernels.Axpy(b.w[sl], b.eout[r*D:(r+1)*D], ffn[i*D:(i+1)*D])
		}
	}
}

// growBool returns b resized to n, reallocating only when its capacity is short (the contents are not kept).
func growBool(b []bool, n int) []bool {
	if cap(b) < n {
		return make([]bool, n)
	}
	return b[:n]
}

// grow returns b resized to n, reallocating only when its capacity is short (the contents are not kept).
func grow[T Float](b []T, n int) []T {
	if cap(b) < n {
		return make([]T, n)
	}
	return b[:n]
}

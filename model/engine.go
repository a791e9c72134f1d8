// engine.go: the inference engine — prefill and one-token decode over the same parameter memory as the
// training graph, with no autodiff. The cache holds, per layer and position, the normalised MLA KV latent
// c^KV (kv_lora_rank numbers) and the rotated shared rope key k^R (qk_rope_head_dim numbers): 576 numbers per
// token at DeepSeek-V3.2 scale. Decode runs MLA in MQA ("absorbed") mode (dsv32-spec.md §1.3):
//
//	q̃_i = W^UK_iᵀ q^C_i,  score_s = (q̃_i·c^KV_s + q^R_i·k^R_s)·τ,  o_i = W^UV_i Σ_s p_s c^KV_s
//
// which equals the training graph's MHA mode in exact arithmetic; prefill runs the training kernels' forward
// pass on the prompt (MHA mode) and fills the cache. Routing uses the same selection code as training, so the
// recorded expert ids can be replayed there (Keep Routing).

package model

import (
	"fmt"
	"math"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/internal/kernels"
)

// Engine runs the network for inference over shared parameters.
type Engine struct {
	P    *Params
	Cfg  configs.Model
	rope *kernels.RopeTable
	moe  moeConfig
	// layer[l] maps a tensor name without its "model.layers.{l}." prefix to its memory in P; experts[l][j]
	// holds expert j's gate, up and down projections. Looking weights up this way builds no strings per token.
	layer   []map[string][]float32
	experts [][][3][]float32
}

// w returns layer l's tensor by its name inside the layer (e.g. "self_attn.q_a_proj.weight").
func (e *Engine) w(l int, name string) []float32 {
	d, ok := e.layer[l][name]
	if !ok {
		panic("model: engine: no tensor " + LayerPrefix(l) + name)
	}
	return d
}

// NewEngine wraps p; the engine reads p.Data directly, so optimizer updates are visible at once.
func NewEngine(p *Params) *Engine {
	c := p.Config
	e := &Engine{P: p, Cfg: c, rope: kernels.NewRopeTable(c.QKRopeHeadDim, c.MaxPositionEmbeddings, c.RopeTheta), moe: moeConfigOf(c)}
	e.layer = make([]map[string][]float32, c.NumHiddenLayers)
	e.experts = make([][][3][]float32, c.NumHiddenLayers)
	for l := range e.layer {
		e.layer[l] = map[string][]float32{}
		if c.IsMoE(l) {
			e.experts[l] = make([][3][]float32, c.NRoutedExperts)
			for j := range e.experts[l] {
				pre := ExpertPrefix(l, j)
				e.experts[l][j] = [3][]float32{p.MustGet(pre + "gate_proj.weight"), p.MustGet(pre + "up_proj.weight"), p.MustGet(pre + "down_proj.weight")}
			}
		}
	}
	for i, sp := range p.Specs {
		if sp.Layer >= 0 {
			e.layer[sp.Layer][sp.Name[len(LayerPrefix(sp.Layer)):]] = p.Data[i]
		}
	}
	return e
}

// Session is one sequence's decoding state: the latent KV cache and scratch buffers.
type Session struct {
	e      *Engine
	MaxLen int
	Len    int         // positions cached so far
	latent [][]float32 // per layer [MaxLen, kvr]
	krope  [][]float32 // per layer [MaxLen, dr]
	// Experts[l] holds the K expert ids chosen at the last decoded position for MoE layer l (nil for dense).
	Experts [][]int32
	// Logits of the last position, [vocab].
	Logits []float32

	x, h, qa, qn, q, kva, qt, sc, ctx, o, ffn []float32
	ids                                       []int32
	eout                                      []float32
	// Margins[l] is the selection margin of the last decoded position in MoE layer l (see selectExperts).
	Margins []float64
	w, s    []float32
	sel     []float64
	expert  swiglu[float32]
}

// NewSession allocates a cache for up to maxLen positions.
func (e *Engine) NewSession(maxLen int) (*Session, error) {
	c := e.Cfg
	if maxLen <= 0 || maxLen > c.MaxPositionEmbeddings {
		return nil, fmt.Errorf("engine: session length %d outside [1, max_position_embeddings=%d]", maxLen, c.MaxPositionEmbeddings)
	}
	H, dq := c.NumAttentionHeads, c.QHeadDim()
	s := &Session{e: e, MaxLen: maxLen}
	s.latent = make([][]float32, c.NumHiddenLayers)
	s.krope = make([][]float32, c.NumHiddenLayers)
	s.Experts = make([][]int32, c.NumHiddenLayers)
	s.Margins = make([]float64, c.NumHiddenLayers)
	s.eout = make([]float32, c.HiddenSize)
	for l := range s.latent {
		s.latent[l] = make([]float32, maxLen*c.KVLoraRank)
		s.krope[l] = make([]float32, maxLen*c.QKRopeHeadDim)
		if c.IsMoE(l) {
			s.Experts[l] = make([]int32, c.NumExpertsPerTok)
		}
	}
	D := c.HiddenSize
	s.x, s.h, s.o, s.ffn = make([]float32, D), make([]float32, D), make([]float32, H*c.VHeadDim), make([]float32, D)
	s.qa, s.qn, s.q = make([]float32, c.QLoraRank), make([]float32, c.QLoraRank), make([]float32, H*dq)
	s.kva = make([]float32, c.KVLoraRank+c.QKRopeHeadDim)
	s.qt, s.ctx, s.sc = make([]float32, c.KVLoraRank), make([]float32, c.KVLoraRank), make([]float32, maxLen)
	s.Logits = make([]float32, c.VocabSize)
	s.ids, s.w = make([]int32, max(c.NumExpertsPerTok, 1)), make([]float32, max(c.NumExpertsPerTok, 1))
	s.s, s.sel = make([]float32, max(c.NRoutedExperts, 1)), make([]float64, max(c.NRoutedExperts, 1))
	s.expert = swiglu[float32]{D: D, I: max(c.MoEIntermediateSize, c.IntermediateSize, c.MoEIntermediateSize*c.NSharedExperts)}
	return s, nil
}

// Reset empties the cache so the session can decode a new sequence.
func (s *Session) Reset() { s.Len = 0 }

// Truncate drops cached positions from n on (n ≤ Len).
func (s *Session) Truncate(n int) {
	if n < s.Len {
		s.Len = max(n, 0)
	}
}

// Step decodes one token at position Len: it updates the cache and fills Logits and Experts.
// forced, when non-nil, gives K expert ids per MoE layer to use instead of the selection.
func (s *Session) Step(token int32, forced [][]int32) error {
	e, c := s.e, s.e.Cfg
	if s.Len >= s.MaxLen {
		return fmt.Errorf("engine: session full (%d positions)", s.MaxLen)
	}
	if token < 0 || int(token) >= c.VocabSize {
		return fmt.Errorf("engine: token id %d outside vocabulary [0, %d)", token, c.VocabSize)
	}
	D, H, dn, dr, dv, kvr := c.HiddenSize, c.NumAttentionHeads, c.QKNopeHeadDim, c.QKRopeHeadDim, c.VHeadDim, c.KVLoraRank
	dq := dn + dr
	pos := s.Len
	p := e.P
	copy(s.x, p.MustGet("model.embed_tokens.weight")[int(token)*D:(int(token)+1)*D])
	var rstd [1]float32
	scale := float32(1 / math.Sqrt(float64(dq)))
	for l := 0; l < c.NumHiddenLayers; l++ {
		kernels.RMSNorm(s.h, rstd[:], s.x, 1, D, D, 0, e.w(l, "input_layernorm.weight"), c.RMSNormEps)
		kernels.Linear(s.qa, s.h, e.w(l, "self_attn.q_a_proj.weight"), 1, D, c.QLoraRank, false)
		kernels.RMSNorm(s.qn, rstd[:], s.qa, 1, c.QLoraRank, c.QLoraRank, 0, e.w(l, "self_attn.q_a_layernorm.weight"), c.RMSNormEps)
		kernels.Linear(s.q, s.qn, e.w(l, "self_attn.q_b_proj.weight"), 1, c.QLoraRank, H*dq, false)
		kernels.Linear(s.kva, s.h, e.w(l, "self_attn.kv_a_proj_with_mqa.weight"), 1, D, kvr+dr, false)
		lat := s.latent[l][pos*kvr : (pos+1)*kvr]
		kernels.RMSNorm(lat, rstd[:], s.kva, 1, kvr, kvr+dr, 0, e.w(l, "self_attn.kv_a_layernorm.weight"), c.RMSNormEps)
		kr := s.krope[l][pos*dr : (pos+1)*dr]
		copy(kr, s.kva[kvr:])
		kernels.Rope(e.rope, kr, pos, true, false)
		wkv := e.w(l, "self_attn.kv_b_proj.weight") // [H·(dn+dv), kvr]
		n := pos + 1
		for i := 0; i < H; i++ {
			qi := s.q[i*dq : (i+1)*dq]
			kernels.Rope(e.rope, qi[dn:], pos, true, false)
			wuk := wkv[i*(dn+dv)*kvr : (i*(dn+dv)+dn)*kvr] // [dn, kvr]
			// q̃ = W^UKᵀ q^C  [kvr]
			kernels.Gemm(false, false, 1, kvr, dn, 1, qi[:dn], dn, wuk, kvr, 0, s.qt, kvr)
			sc := s.sc[:n]
			kernels.Gemm(false, true, 1, n, kvr, scale, s.qt, kvr, s.latent[l], kvr, 0, sc, n)
			kernels.Gemm(false, true, 1, n, dr, scale, qi[dn:], dr, s.krope[l], dr, 1, sc, n)
			kernels.SoftmaxRow(sc)
			kernels.Gemm(false, false, 1, kvr, n, 1, sc, n, s.latent[l], kvr, 0, s.ctx, kvr)
			wuv := wkv[(i*(dn+dv)+dn)*kvr : (i+1)*(dn+dv)*kvr] // [dv, kvr]
			kernels.Linear(s.o[i*dv:(i+1)*dv], s.ctx, wuv, 1, kvr, dv, false)
		}
		kernels.Linear(s.x, s.o, e.w(l, "self_attn.o_proj.weight"), 1, H*dv, D, true)
		kernels.RMSNorm(s.h, rstd[:], s.x, 1, D, D, 0, e.w(l, "post_attention_layernorm.weight"), c.RMSNormEps)
		if c.IsMoE(l) {
			var f []int32
			if forced != nil {
				f = forced[l]
			}
			if err := s.moe(l, f); err != nil {
				return err
			}
		} else {
			s.expert.I = c.IntermediateSize
			s.expert.forward(s.ffn, s.h, e.w(l, "mlp.gate_proj.weight"), e.w(l, "mlp.up_proj.weight"), e.w(l, "mlp.down_proj.weight"), 1, false)
		}
		kernels.Axpy(1, s.ffn, s.x)
	}
	kernels.RMSNorm(s.h, rstd[:], s.x, 1, D, D, 0, p.MustGet("model.norm.weight"), c.RMSNormEps)
	kernels.Linear(s.Logits, s.h, p.MustGet("lm_head.weight"), 1, D, c.VocabSize, false)
	s.Len++
	return nil
}

// moe computes s.ffn = MoE(s.h) for layer l, recording the chosen experts.
func (s *Session) moe(l int, forced []int32) error {
	e, c := s.e, s.e.Cfg
	mc := e.moe
	D := c.HiddenSize
	kernels.Linear(s.s, s.h, e.w(l, "mlp.gate.weight"), 1, D, mc.E, false)
	for i, v := range s.s {
		s.s[i] = kernels.Sigmoid(v)
	}
	ids := s.Experts[l]
	if forced != nil {
		if len(forced) != mc.K {
			return fmt.Errorf("engine: layer %d: %d forced experts, want %d", l, len(forced), mc.K)
		}
		copy(ids, forced)
		s.Margins[l] = math.Inf(1)
	} else {
		s.Margins[l] = selectExperts(ids, s.s, e.w(l, "mlp.gate.e_score_correction_bias"), mc, s.sel)
	}
	gateWeights(s.w, ids, s.s, mc)
	if mc.SharedI > 0 {
		s.expert.I = mc.SharedI
		s.expert.forward(s.ffn, s.h, e.w(l, "mlp.shared_experts.gate_proj.weight"), e.w(l, "mlp.shared_experts.up_proj.weight"), e.w(l, "mlp.shared_experts.down_proj.weight"), 1, false)
	} else {
		clear(s.ffn)
	}
	s.expert.I = mc.I
	for k, id := range ids {
		ew := e.experts[l][id]
		out := s.eout
		s.expert.forward(out, s.h, ew[0], ew[1], ew[2], 1, false)
		kernels.Axpy(s.w[k], out, s.ffn)
	}
	return nil
}

// Prefill decodes tokens one position at a time from the current length, recording the experts of every
// position ([len(tokens)][layer][K], nil rows for dense layers) and the log-probability each position assigns to
// the next prompt token (logp[i] = log p(tokens[i+1]); the last entry is the log-partition-free logits of the
// final position, left in Logits).
func (s *Session) Prefill(tokens []int32, experts [][][]int32, logp []float32) error {
	for i, t := range tokens {
		if err := s.Step(t, nil); err != nil {
			return fmt.Errorf("engine: prefill position %d: %w", i, err)
		}
		if experts != nil {
			experts[i] = s.copyExperts(experts[i])
		}
		if logp != nil && i+1 < len(tokens) {
			logp[i] = LogSoftmaxAt(s.Logits, tokens[i+1])
		}
	}
	return nil
}

func (s *Session) copyExperts(dst [][]int32) [][]int32 {
	if dst == nil {
		dst = make([][]int32, len(s.Experts))
	}
	for l, ids := range s.Experts {
		if ids != nil {
			dst[l] = append(dst[l][:0], ids...)
		}
	}
	return dst
}

// LogSoftmaxAt returns log softmax(logits)[id], computed in float64.
func LogSoftmaxAt(logits []float32, id int32) float32 {
	m := math.Inf(-1)
	for _, v := range logits {
		m = math.Max(m, float64(v))
	}
	var s float64
	for _, v := range logits {
		s += math.Exp(float64(v) - m)
	}
	return float32(float64(logits[id]) - m - math.Log(s))
}

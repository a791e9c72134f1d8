// prefill.go: batched prefill. The prompt's positions go through the layers together, with the same fused
// kernels as the training graph's forward pass (MHA-mode MLA attention over the whole prompt, MoE dispatch
// of all positions at once) instead of one decode step per token; the latent cache, the rotated rope keys and
// the experts chosen at every position are recorded exactly as decode would record them, and decode then
// continues from the cache.

package model

import (
	"fmt"

	"gorgonia.org/tensor"

	"github.com/sparrow-rl/sparrow/internal/kernels"
)

// PrefillBatch runs the prompt tokens through the network at once into an empty session. It fills the cache,
// Logits (of the last position), Experts (of the last position) and, when experts is not nil, the experts of
// every position: experts[i][l] (K ids; nil for dense layers). A session that already holds positions
// prefills token by token instead (the batched kernels attend within the prompt only), and so does a sparse
// session (the batched kernels are dense MLA and fill no indexer keys).
func (s *Session) PrefillBatch(tokens []int32, experts [][][]int32) error {
	if s.Len > 0 || len(tokens) < 2 || s.TopK > 0 {
		return s.Prefill(tokens, experts, nil)
	}
	e, c := s.e, s.e.Cfg
	n := len(tokens)
	if n > s.MaxLen {
		return fmt.Errorf("engine: prompt of %d tokens exceeds the session (%d positions)", n, s.MaxLen)
	}
	D, H, dn, dr, dv, kvr := c.HiddenSize, c.NumAttentionHeads, c.QKNopeHeadDim, c.QKRopeHeadDim, c.VHeadDim, c.KVLoraRank
	dq := dn + dr
	for i, t := range tokens {
		if t < 0 || int(t) >= c.VocabSize {
			return fmt.Errorf("engine: token id %d at position %d outside vocabulary [0, %d)", t, i, c.VocabSize)
		}
	}
	lengths := [][]int32{nil, nil, nil, {int32(n)}}
	x := make([]float32, n*D)
	emb := e.P.MustGet("model.embed_tokens.weight")
	for i, t := range tokens {
		copy(x[i*D:(i+1)*D], emb[int(t)*D:(int(t)+1)*D])
	}
	h := make([]float32, n*D)
	qa, qn := make([]float32, n*c.QLoraRank), make([]float32, n*c.QLoraRank)
	q, kva := make([]float32, n*H*dq), make([]float32, n*(kvr+dr))
	lat, kv := make([]float32, n*kvr), make([]float32, n*H*(dn+dv))
	o, ffn := make([]float32, n*H*dv), make([]float32, n*D)
	rstd := make([]float32, n)
	rope := kernels.NewRopeTable(dr, n, c.RopeTheta)
	if experts != nil {
		for i := 0; i < n && i < len(experts); i++ {
			if experts[i] == nil {
				experts[i] = make([][]int32, c.NumHiddenLayers)
			}
		}
	}
	for l := 0; l < c.NumHiddenLayers; l++ {
		kernels.RMSNorm(h, rstd, x, n, D, D, 0, e.w(l, "input_layernorm.weight"), c.RMSNormEps)
		kernels.Linear(qa, h, e.w(l, "self_attn.q_a_proj.weight"), n, D, c.QLoraRank, false)
		kernels.RMSNorm(qn, rstd, qa, n, c.QLoraRank, c.QLoraRank, 0, e.w(l, "self_attn.q_a_layernorm.weight"), c.RMSNormEps)
		kernels.Linear(q, qn, e.w(l, "self_attn.q_b_proj.weight"), n, c.QLoraRank, H*dq, false)
		kernels.Linear(kva, h, e.w(l, "self_attn.kv_a_proj_with_mqa.weight"), n, D, kvr+dr, false)
		kernels.RMSNorm(lat, rstd, kva, n, kvr, kvr+dr, 0, e.w(l, "self_attn.kv_a_layernorm.weight"), c.RMSNormEps)
		kernels.Linear(kv, lat, e.w(l, "self_attn.kv_b_proj.weight"), n, kvr, H*(dn+dv), false)
		copy(s.latent[l][:n*kvr], lat)
		for i := 0; i < n; i++ {
			kr := s.krope[l][i*dr : (i+1)*dr]
			copy(kr, kva[i*(kvr+dr)+kvr:(i+1)*(kvr+dr)])
			kernels.Rope(e.rope, kr, i, true, false)
		}
		ak := newAttnKernel[float32](1, n, mlaDims{H: H, Dn: dn, Dr: dr, Dv: dv, KVr: kvr}, rope, &AttnMask{})
		if _, err := ak.OutShape([]tensor.Shape{{n, H * dq}, {n, H * (dn + dv)}, {n, kvr + dr}, {1}}); err != nil {
			return err
		}
		ak.SetInts(lengths)
		if err := ak.Forward([][]float32{q, kv, kva, nil}, o); err != nil {
			return err
		}
		kernels.Linear(x, o, e.w(l, "self_attn.o_proj.weight"), n, H*dv, D, true)
		kernels.RMSNorm(h, rstd, x, n, D, D, 0, e.w(l, "post_attention_layernorm.weight"), c.RMSNormEps)
		if c.IsMoE(l) {
			route := &Routing{AuxScale: 1}
			mk := &moeKernel[float32]{c: e.moe, Tn: n, route: route}
			in := [][]float32{h, e.w(l, "mlp.gate.weight"), e.w(l, "mlp.gate.e_score_correction_bias")}
			shapes := []tensor.Shape{{n, D}, {c.NRoutedExperts, D}, {c.NRoutedExperts}}
			for j := 0; j < c.NRoutedExperts; j++ {
				ew := e.experts[l][j]
				in = append(in, ew[0], ew[1], ew[2])
				shapes = append(shapes, tensor.Shape{e.moe.I, D}, tensor.Shape{e.moe.I, D}, tensor.Shape{D, e.moe.I})
			}
			if e.moe.SharedI > 0 {
				in = append(in, e.w(l, "mlp.shared_experts.gate_proj.weight"), e.w(l, "mlp.shared_experts.up_proj.weight"), e.w(l, "mlp.shared_experts.down_proj.weight"))
				shapes = append(shapes, tensor.Shape{e.moe.SharedI, D}, tensor.Shape{e.moe.SharedI, D}, tensor.Shape{D, e.moe.SharedI})
			}
			in = append(in, nil)
			shapes = append(shapes, tensor.Shape{1})
			if _, err := mk.OutShape(shapes); err != nil {
				return err
			}
			ints := make([][]int32, len(in))
			ints[len(in)-1] = lengths[3]
			mk.SetInts(ints)
			if err := mk.Forward(in, ffn); err != nil {
				return err
			}
			K := c.NumExpertsPerTok
			copy(s.Experts[l], route.Chosen[(n-1)*K:n*K])
			if experts != nil {
				for i := 0; i < n && i < len(experts); i++ {
					experts[i][l] = append(experts[i][l][:0], route.Chosen[i*K:(i+1)*K]...)
				}
			}
		} else {
			f := swiglu[float32]{D: D, I: c.IntermediateSize}
			f.forward(ffn, h, e.w(l, "mlp.gate_proj.weight"), e.w(l, "mlp.up_proj.weight"), e.w(l, "mlp.down_proj.weight"), n, false)
		}
		kernels.Axpy(1, ffn, x)
	}
	last := x[(n-1)*D : n*D]
	kernels.RMSNorm(h[:D], rstd[:1], last, 1, D, D, 0, e.P.MustGet("model.norm.weight"), c.RMSNormEps)
	kernels.Linear(s.Logits, h[:D], e.P.MustGet("lm_head.weight"), 1, D, c.VocabSize, false)
	s.Len = n
	return nil
}

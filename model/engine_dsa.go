// engine_dsa.go: decoding with DeepSeek Sparse Attention (dsv32-spec.md §1.2 step 9, §1.3). Next to the MLA
// latent cache, a DSASession keeps per layer the indexer key cache (one index_head_dim vector per position,
// rotated, as in the reference implementation). Each new token computes its index queries and head weights,
// scores every cached position with the lightning indexer (O(L·H^I·d^I), cheap), selects the top-k, and runs
// absorbed (MQA-mode) MLA over those k latent entries only: one gather serves all heads. The selected positions
// of every layer are kept in Selected for the caller (the RL stage may record and replay them via forced).

package model

import (
	"fmt"
	"math"

	"github.com/sparrow-rl/sparrow/dsa"
	"github.com/sparrow-rl/sparrow/internal/kernels"
)

// DSASession is a Session that decodes with sparse attention.
type DSASession struct {
	*Session
	TopK int
	// Selected[l] holds the positions layer l attended to at the last decoded position (ascending, −1 = unused).
	Selected [][]int32

	ikeys        [][]float32 // per layer [MaxLen, Dh]
	dims         dsa.IndexerDims
	iq, iw, khat []float32
	rstd         []float32
	iscore, isc  []float32
	heap         []int32
	dot          func(x, y []float32) float32
	axpy         func(a float32, x, y []float32)
}

// NewDSASession allocates a sparse-attention decoding session for up to maxLen positions keeping topk keys per
// query (0 = the model's index_topk).
func (e *Engine) NewDSASession(maxLen, topk int) (*DSASession, error) {
	c := e.Cfg
	if c.IndexNHeads <= 0 {
		return nil, fmt.Errorf("engine: DSA decode needs an indexer (model.index_n_heads is 0)")
	}
	if topk <= 0 {
		topk = c.IndexTopk
	}
	s, err := e.NewSession(maxLen)
	if err != nil {
		return nil, err
	}
	d := dsa.IndexerDims{D: c.HiddenSize, QR: c.QLoraRank, H: c.IndexNHeads, Dh: c.IndexHeadDim, Dr: c.QKRopeHeadDim}
	if err := d.Validate(e.rope); err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	ds := &DSASession{Session: s, TopK: topk, dims: d,
		iq: make([]float32, d.H*d.Dh), iw: make([]float32, d.H), khat: make([]float32, d.Dh), rstd: make([]float32, 1),
		iscore: make([]float32, maxLen), isc: make([]float32, topk), heap: make([]int32, topk)}
	ds.dot, ds.axpy = dsa.Level1[float32]()
	ds.ikeys = make([][]float32, c.NumHiddenLayers)
	ds.Selected = make([][]int32, c.NumHiddenLayers)
	for l := range ds.ikeys {
		ds.ikeys[l] = make([]float32, maxLen*d.Dh)
		ds.Selected[l] = make([]int32, topk)
	}
	return ds, nil
}

func (s *DSASession) indexerWeights(l int) dsa.IndexerWeights[float32] {
	p, pre := s.e.P, LayerPrefix(l)+"self_attn.indexer."
	return dsa.IndexerWeights[float32]{WQ: p.MustGet(pre + "wq_b.weight"), WK: p.MustGet(pre + "wk.weight"),
		KNorm: p.MustGet(pre + "k_norm.weight"), KBias: p.MustGet(pre + "k_norm.bias"), WW: p.MustGet(pre + "weights_proj.weight")}
}

// Step decodes one token at position Len with sparse attention. forcedExperts as in Session.Step; forcedSel,
// when non-nil, gives per layer the k positions to attend to instead of the indexer's selection.
func (s *DSASession) Step(token int32, forcedExperts [][]int32, forcedSel [][]int32) error {
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
	d := s.dims
	copy(s.x, p.MustGet("model.embed_tokens.weight")[int(token)*D:(int(token)+1)*D])
	var rstd [1]float32
	scale := float32(1 / math.Sqrt(float64(dq)))
	for l := 0; l < c.NumHiddenLayers; l++ {
		pre := LayerPrefix(l)
		kernels.RMSNorm(s.h, rstd[:], s.x, 1, D, D, 0, p.MustGet(pre+"input_layernorm.weight"), c.RMSNormEps)
		kernels.Linear(s.qa, s.h, p.MustGet(pre+"self_attn.q_a_proj.weight"), 1, D, c.QLoraRank, false)
		kernels.RMSNorm(s.qn, rstd[:], s.qa, 1, c.QLoraRank, c.QLoraRank, 0, p.MustGet(pre+"self_attn.q_a_layernorm.weight"), c.RMSNormEps)
		kernels.Linear(s.q, s.qn, p.MustGet(pre+"self_attn.q_b_proj.weight"), 1, c.QLoraRank, H*dq, false)
		kernels.Linear(s.kva, s.h, p.MustGet(pre+"self_attn.kv_a_proj_with_mqa.weight"), 1, D, kvr+dr, false)
		lat := s.latent[l][pos*kvr : (pos+1)*kvr]
		kernels.RMSNorm(lat, rstd[:], s.kva, 1, kvr, kvr+dr, 0, p.MustGet(pre+"self_attn.kv_a_layernorm.weight"), c.RMSNormEps)
		kr := s.krope[l][pos*dr : (pos+1)*dr]
		copy(kr, s.kva[kvr:])
		kernels.Rope(e.rope, kr, pos, true, false)

		// Lightning indexer: cache this position's key, score every cached position, keep the top k.
		wt := s.indexerWeights(l)
		keys := s.ikeys[l]
		dsa.Keys(d, e.rope, keys[pos*d.Dh:(pos+1)*d.Dh], s.khat, s.rstd, s.h, 1, pos, wt)
		dsa.Queries(d, e.rope, s.iq, s.iw, s.qn, s.h, 1, pos, wt)
		n := pos + 1
		sel := s.Selected[l]
		if forcedSel != nil {
			if len(forcedSel[l]) != s.TopK {
				return fmt.Errorf("engine: layer %d: %d forced positions, want %d", l, len(forcedSel[l]), s.TopK)
			}
			copy(sel, forcedSel[l])
		} else {
			sc := s.iscore[:n]
			clear(sc)
			for j := 0; j < d.H; j++ {
				qj := s.iq[j*d.Dh : (j+1)*d.Dh]
				wj := s.iw[j]
				for t := 0; t < n; t++ {
					if z := s.dot(qj, keys[t*d.Dh:(t+1)*d.Dh]); z > 0 {
						sc[t] += wj * z
					}
				}
			}
			dsa.SelectRow(sel, sc, n, s.heap)
		}

		// Absorbed MLA over the selected latent entries.
		wkv := p.MustGet(pre + "self_attn.kv_b_proj.weight") // [H·(dn+dv), kvr]
		for i := 0; i < H; i++ {
			qi := s.q[i*dq : (i+1)*dq]
			kernels.Rope(e.rope, qi[dn:], pos, true, false)
			wuk := wkv[i*(dn+dv)*kvr : (i*(dn+dv)+dn)*kvr] // [dn, kvr]
			kernels.Gemm(false, false, 1, kvr, dn, 1, qi[:dn], dn, wuk, kvr, 0, s.qt, kvr)
			sc := s.isc
			for k, t := range sel {
				if t < 0 || int(t) >= n {
					sc[k] = float32(math.Inf(-1))
					continue
				}
				sc[k] = (s.dot(s.qt, s.latent[l][int(t)*kvr:(int(t)+1)*kvr]) + s.dot(qi[dn:], s.krope[l][int(t)*dr:(int(t)+1)*dr])) * scale
			}
			kernels.SoftmaxRow(sc)
			clear(s.ctx)
			for k, t := range sel {
				if sc[k] != 0 {
					s.axpy(sc[k], s.latent[l][int(t)*kvr:(int(t)+1)*kvr], s.ctx)
				}
			}
			wuv := wkv[(i*(dn+dv)+dn)*kvr : (i+1)*(dn+dv)*kvr] // [dv, kvr]
			kernels.Linear(s.o[i*dv:(i+1)*dv], s.ctx, wuv, 1, kvr, dv, false)
		}
		kernels.Linear(s.x, s.o, p.MustGet(pre+"self_attn.o_proj.weight"), 1, H*dv, D, true)
		kernels.RMSNorm(s.h, rstd[:], s.x, 1, D, D, 0, p.MustGet(pre+"post_attention_layernorm.weight"), c.RMSNormEps)
		if c.IsMoE(l) {
			var f []int32
			if forcedExperts != nil {
				f = forcedExperts[l]
			}
			if err := s.moe(l, f); err != nil {
				return err
			}
		} else {
			s.expert.I = c.IntermediateSize
			s.expert.forward(s.ffn, s.h, p.MustGet(pre+"mlp.gate_proj.weight"), p.MustGet(pre+"mlp.up_proj.weight"), p.MustGet(pre+"mlp.down_proj.weight"), 1, false)
		}
		kernels.Axpy(1, s.ffn, s.x)
	}
	kernels.RMSNorm(s.h, rstd[:], s.x, 1, D, D, 0, p.MustGet("model.norm.weight"), c.RMSNormEps)
	kernels.Linear(s.Logits, s.h, p.MustGet("lm_head.weight"), 1, D, c.VocabSize, false)
	s.Len++
	return nil
}

// CopyFrom makes s a copy of o's state (latent, rope and indexer-key caches up to o.Len, last logits, experts
// and selections), so that the G samples of a group share one prefill of their prompt. Both must come from the
// same engine with the same top-k, and s must hold at least o.Len positions.
func (s *DSASession) CopyFrom(o *DSASession) error {
	if s.TopK != o.TopK || s.MaxLen < o.Len {
		return fmt.Errorf("engine: copying a DSA session of top-k %d and %d positions into one of top-k %d and length %d", o.TopK, o.Len, s.TopK, s.MaxLen)
	}
	s.Session.CopyFrom(o.Session)
	dh := s.dims.Dh
	for l := range s.ikeys {
		copy(s.ikeys[l][:o.Len*dh], o.ikeys[l][:o.Len*dh])
		copy(s.Selected[l], o.Selected[l])
	}
	return nil
}

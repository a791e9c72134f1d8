// engine_dsa.go: decoding with DeepSeek Sparse Attention (dsv32-spec.md §1.2 step 9, §1.3). Next to the MLA
// latent cache, a DSASession keeps per layer the indexer key cache (one index_head_dim vector per position,
// rotated, as in the reference implementation). Each new token computes its index queries and head weights,
// scores every cached position with the lightning indexer (O(L·H^I·d^I), cheap), selects the top-k, and runs
// absorbed (MQA-mode) MLA over those k latent entries only: one gather serves all heads. The selected positions
// of every layer are kept in Selected for the caller (the RL stage may record and replay them via forced).

package model

import (
	"fmt"

	"github.com/sparrow-rl/sparrow/dsa"
)

// DSASession is a Session that decodes with sparse attention (its TopK, Selected and indexer key cache are
// the embedded Session's; the arithmetic of a step is Batch's).
type DSASession struct {
	*Session
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
	s.TopK, s.dims = topk, d
	s.ikeys = make([][]float32, c.NumHiddenLayers)
	s.Selected = make([][]int32, c.NumHiddenLayers)
	for l := range s.ikeys {
		s.ikeys[l] = make([]float32, maxLen*d.Dh)
		s.Selected[l] = make([]int32, topk)
	}
	return &DSASession{Session: s}, nil
}

func (s *Session) indexerWeights(l int) dsa.IndexerWeights[float32] {
	p, pre := s.e.P, LayerPrefix(l)+"self_attn.indexer."
	return dsa.IndexerWeights[float32]{WQ: p.MustGet(pre + "wq_b.weight"), WK: p.MustGet(pre + "wk.weight"),
		KNorm: p.MustGet(pre + "k_norm.weight"), KBias: p.MustGet(pre + "k_norm.bias"), WW: p.MustGet(pre + "weights_proj.weight")}
}

// Step decodes one token at position Len with sparse attention. forcedExperts as in Session.Step; forcedSel,
// when non-nil, gives per layer the k positions to attend to instead of the indexer's selection.
func (s *DSASession) Step(token int32, forcedExperts [][]int32, forcedSel [][]int32) error {
	return s.stepOne(DecodeInput{S: s.Session, Token: token, Experts: forcedExperts, Selection: forcedSel})
}

// CopyFrom makes s a copy of o's state (latent, rope and indexer-key caches up to o.Len, last logits, experts
// and selections), so that the G samples of a group share one prefill of their prompt. Both must come from the
// same engine with the same top-k, and s must hold at least o.Len positions.
func (s *DSASession) CopyFrom(o *DSASession) error {
	return s.Session.CopyFrom(o.Session)
}

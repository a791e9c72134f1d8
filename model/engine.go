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
	"github.com/sparrow-rl/sparrow/dsa"
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

// Session is one sequence's decoding state: the latent KV cache (and, for a sparse session, the indexer key
// cache) with the last position's outputs. The arithmetic of a step is Batch's: Step is a batch of one.
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
	// Margins[l] is the selection margin of the last decoded position in MoE layer l (see selectExperts).
	Margins []float64

	// Sparse sessions (NewDSASession): TopK keys per query; Selected[l] holds the positions layer l attended
	// to at the last decoded position (ascending, −1 = unused); ikeys[l] is the indexer key cache [MaxLen, Dh].
	TopK     int
	Selected [][]int32
	ikeys    [][]float32
	dims     dsa.IndexerDims

	one *Batch // the work space of Step (a batch of one), allocated at the first Step
}

// NewSession allocates a cache for up to maxLen positions.
func (e *Engine) NewSession(maxLen int) (*Session, error) {
	c := e.Cfg
	if maxLen <= 0 || maxLen > c.MaxPositionEmbeddings {
		return nil, fmt.Errorf("engine: session length %d outside [1, max_position_embeddings=%d]", maxLen, c.MaxPositionEmbeddings)
	}
	s := &Session{e: e, MaxLen: maxLen}
	s.latent = make([][]float32, c.NumHiddenLayers)
	s.krope = make([][]float32, c.NumHiddenLayers)
	s.Experts = make([][]int32, c.NumHiddenLayers)
	s.Margins = make([]float64, c.NumHiddenLayers)
	for l := range s.latent {
		s.latent[l] = make([]float32, maxLen*c.KVLoraRank)
		s.krope[l] = make([]float32, maxLen*c.QKRopeHeadDim)
		if c.IsMoE(l) {
			s.Experts[l] = make([]int32, c.NumExpertsPerTok)
		}
	}
	s.Logits = make([]float32, c.VocabSize)
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

// Step decodes one token at position Len: it updates the cache and fills Logits and Experts (and Selected,
// by the indexer's choice, for a sparse session). forced, when non-nil, gives K expert ids per MoE layer to use
// instead of the selection.
func (s *Session) Step(token int32, forced [][]int32) error {
	return s.stepOne(DecodeInput{S: s, Token: token, Experts: forced})
}

// stepOne runs a batch of one.
func (s *Session) stepOne(in DecodeInput) error {
	if s.one == nil {
		b, err := s.e.NewBatch(1)
		if err != nil {
			return err
		}
		s.one = b
	}
	return s.one.Step([]DecodeInput{in})
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

// params.go names every tensor the way Hugging Face DeepSeek-V3.2 checkpoints do, with its shape
// (Linear weights [out, in], applied as y = x·Wᵀ), and owns the parameter memory shared by the training
// graph and the inference engine.

package model

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/internal/kernels"
)

// Role says how a tensor is trained.
type Role int

const (
	Weight    Role = iota // a matrix trained by the optimizer with weight decay
	NormScale             // a norm scale (or bias): trained, no weight decay
	Buffer                // not trained by the optimizer (e_score_correction_bias: updated by the balancing rule)
)

// Spec is the name, shape and role of one tensor.
type Spec struct {
	Name  string
	Shape []int
	Role  Role
	Layer int // decoder layer, -1 outside the layers
}

// Size is the number of elements.
func (s Spec) Size() int {
	n := 1
	for _, d := range s.Shape {
		n *= d
	}
	return n
}

// LayerPrefix is "model.layers.{i}.".
func LayerPrefix(i int) string { return fmt.Sprintf("model.layers.%d.", i) }

// ExpertPrefix is "model.layers.{i}.mlp.experts.{j}.".
func ExpertPrefix(i, j int) string { return fmt.Sprintf("model.layers.%d.mlp.experts.%d.", i, j) }

// Specs lists every tensor of the network in a fixed order (the order of the safetensors file and of the
// optimizer state). Indexer tensors (self_attn.indexer.*) are included when index_n_heads > 0.
func Specs(c configs.Model) []Spec {
	D, H := c.HiddenSize, c.NumAttentionHeads
	qh := c.QKNopeHeadDim + c.QKRopeHeadDim
	var s []Spec
	add := func(name string, role Role, layer int, shape ...int) {
		s = append(s, Spec{Name: name, Shape: shape, Role: role, Layer: layer})
	}
	add("model.embed_tokens.weight", Weight, -1, c.VocabSize, D)
	for i := 0; i < c.NumHiddenLayers; i++ {
		p := LayerPrefix(i)
		add(p+"input_layernorm.weight", NormScale, i, D)
		add(p+"self_attn.q_a_proj.weight", Weight, i, c.QLoraRank, D)
		add(p+"self_attn.q_a_layernorm.weight", NormScale, i, c.QLoraRank)
		add(p+"self_attn.q_b_proj.weight", Weight, i, H*qh, c.QLoraRank)
		add(p+"self_attn.kv_a_proj_with_mqa.weight", Weight, i, c.KVLoraRank+c.QKRopeHeadDim, D)
		add(p+"self_attn.kv_a_layernorm.weight", NormScale, i, c.KVLoraRank)
		add(p+"self_attn.kv_b_proj.weight", Weight, i, H*(c.QKNopeHeadDim+c.VHeadDim), c.KVLoraRank)
		add(p+"self_attn.o_proj.weight", Weight, i, D, H*c.VHeadDim)
		if c.IndexNHeads > 0 {
			add(p+"self_attn.indexer.wq_b.weight", Weight, i, c.IndexNHeads*c.IndexHeadDim, c.QLoraRank)
			add(p+"self_attn.indexer.wk.weight", Weight, i, c.IndexHeadDim, D)
			add(p+"self_attn.indexer.k_norm.weight", NormScale, i, c.IndexHeadDim)
			add(p+"self_attn.indexer.k_norm.bias", NormScale, i, c.IndexHeadDim)
			add(p+"self_attn.indexer.weights_proj.weight", Weight, i, c.IndexNHeads, D)
		}
		add(p+"post_attention_layernorm.weight", NormScale, i, D)
		if c.IsMoE(i) {
			add(p+"mlp.gate.weight", Weight, i, c.NRoutedExperts, D)
			add(p+"mlp.gate.e_score_correction_bias", Buffer, i, c.NRoutedExperts)
			for j := 0; j < c.NRoutedExperts; j++ {
				e := ExpertPrefix(i, j)
				add(e+"gate_proj.weight", Weight, i, c.MoEIntermediateSize, D)
				add(e+"up_proj.weight", Weight, i, c.MoEIntermediateSize, D)
				add(e+"down_proj.weight", Weight, i, D, c.MoEIntermediateSize)
			}
			if c.NSharedExperts > 0 {
				inner := c.MoEIntermediateSize * c.NSharedExperts
				add(p+"mlp.shared_experts.gate_proj.weight", Weight, i, inner, D)
				add(p+"mlp.shared_experts.up_proj.weight", Weight, i, inner, D)
				add(p+"mlp.shared_experts.down_proj.weight", Weight, i, D, inner)
			}
		} else {
			add(p+"mlp.gate_proj.weight", Weight, i, c.IntermediateSize, D)
			add(p+"mlp.up_proj.weight", Weight, i, c.IntermediateSize, D)
			add(p+"mlp.down_proj.weight", Weight, i, D, c.IntermediateSize)
		}
	}
	add("model.norm.weight", NormScale, -1, D)
	add("lm_head.weight", Weight, -1, c.VocabSize, D)
	return s
}

// Params is the parameter memory of one network: one float32 slice per tensor, in Specs order.
// The training graph and the inference engine both read (and the optimizer writes) these slices.
type Params struct {
	Config configs.Model
	Specs  []Spec
	Data   [][]float32
	index  map[string]int
}

// NewParams allocates zeroed parameters for c: the tensors lie in one buffer (kernels.HugeSlab: on 2 MB pages
// when it is large, which a batched decode step, streaming all the weights, reads faster), each starting a
// multiple of 16 floats (64 bytes) into it and capped at its own length.
func NewParams(c configs.Model) *Params {
	p := &Params{Config: c, Specs: Specs(c), index: map[string]int{}}
	p.Data = make([][]float32, len(p.Specs))
	const line = 16 // float32 per 64-byte cache line
	offs, n := make([]int, len(p.Specs)), 0
	for i, s := range p.Specs {
		offs[i] = n
		n += (s.Size() + line - 1) / line * line
	}
	slab := kernels.HugeSlab(n)
	for i, s := range p.Specs {
		p.Data[i] = slab[offs[i] : offs[i]+s.Size() : offs[i]+s.Size()]
		p.index[s.Name] = i
	}
	return p
}

// Init fills the parameters the usual way for a seed: Linear and embedding weights ~ N(0, initializer_range²),
// output projections (o_proj, down_proj) scaled by 1/sqrt(2·layers) as in GPT-2, norm scales 1, biases and
// e_score_correction_bias 0.
func (p *Params) Init(seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	std := p.Config.InitializerRange
	outScale := 1 / math.Sqrt(2*float64(max(p.Config.NumHiddenLayers, 1)))
	for i, s := range p.Specs {
		d := p.Data[i]
		switch {
		case s.Role == Buffer || hasSuffix(s.Name, ".bias"):
			clear(d)
		case s.Role == NormScale:
			for k := range d {
				d[k] = 1
			}
		default:
			sd := std
			if hasSuffix(s.Name, "o_proj.weight") || hasSuffix(s.Name, "down_proj.weight") {
				sd *= outScale
			}
			for k := range d {
				d[k] = float32(rng.NormFloat64() * sd)
			}
		}
	}
}

// Get returns the slice of the named tensor, or nil.
func (p *Params) Get(name string) []float32 {
	if i, ok := p.index[name]; ok {
		return p.Data[i]
	}
	return nil
}

// Index returns the position of the named tensor in Specs.
func (p *Params) Index(name string) (int, bool) { i, ok := p.index[name]; return i, ok }

// MustGet is Get for names the code itself builds; a missing name is a programming error.
func (p *Params) MustGet(name string) []float32 {
	d := p.Get(name)
	if d == nil {
		panic("model: no tensor " + name)
	}
	return d
}

// Count returns the total number of parameters and the number active per token (routed experts counted
// num_experts_per_tok times, buffers excluded).
func (p *Params) Count() (total, active int) {
	c := p.Config
	for _, s := range p.Specs {
		if s.Role == Buffer {
			continue
		}
		total += s.Size()
		if contains(s.Name, ".mlp.experts.") {
			if c.NRoutedExperts > 0 {
				active += s.Size() * c.NumExpertsPerTok / c.NRoutedExperts
			}
			continue
		}
		active += s.Size()
	}
	return total, active
}

// Clone returns a deep copy.
func (p *Params) Clone() *Params {
	q := NewParams(p.Config)
	for i := range p.Data {
		copy(q.Data[i], p.Data[i])
	}
	return q
}

func hasSuffix(s, suf string) bool { return len(s) >= len(suf) && s[len(s)-len(suf):] == suf }

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

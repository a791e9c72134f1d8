// Model hyper-parameters of the DeepSeek-V3.2 decoder (dsv32-spec.md §0, §5, §8).
//
// The YAML keys are the Hugging Face config.json keys of DeepSeek-V3.2 checkpoints, so the `model:`
// section of a recipe and the config.json of a checkpoint describe a network with the same words.
// Keys that only Sparrow uses (balancing speed, initialisation) have their own names and are written to
// config.json as extra keys, which Hugging Face tooling ignores.

package configs

import (
	"errors"
	"fmt"
)

// Model is the architecture of the policy network.
type Model struct {
	VocabSize             int     `yaml:"vocab_size" json:"vocab_size"`
	HiddenSize            int     `yaml:"hidden_size" json:"hidden_size"`
	NumHiddenLayers       int     `yaml:"num_hidden_layers" json:"num_hidden_layers"`
	NumAttentionHeads     int     `yaml:"num_attention_heads" json:"num_attention_heads"`
	QLoraRank             int     `yaml:"q_lora_rank" json:"q_lora_rank"`
	KVLoraRank            int     `yaml:"kv_lora_rank" json:"kv_lora_rank"`
	QKNopeHeadDim         int     `yaml:"qk_nope_head_dim" json:"qk_nope_head_dim"`
	QKRopeHeadDim         int     `yaml:"qk_rope_head_dim" json:"qk_rope_head_dim"`
	VHeadDim              int     `yaml:"v_head_dim" json:"v_head_dim"`
	IntermediateSize      int     `yaml:"intermediate_size" json:"intermediate_size"`
	MoEIntermediateSize   int     `yaml:"moe_intermediate_size" json:"moe_intermediate_size"`
	NRoutedExperts        int     `yaml:"n_routed_experts" json:"n_routed_experts"`
	NSharedExperts        int     `yaml:"n_shared_experts" json:"n_shared_experts"`
	NumExpertsPerTok      int     `yaml:"num_experts_per_tok" json:"num_experts_per_tok"`
	NGroup                int     `yaml:"n_group" json:"n_group"`
	TopkGroup             int     `yaml:"topk_group" json:"topk_group"`
	RoutedScalingFactor   float64 `yaml:"routed_scaling_factor" json:"routed_scaling_factor"`
	NormTopkProb          bool    `yaml:"norm_topk_prob" json:"norm_topk_prob"`
	FirstKDenseReplace    int     `yaml:"first_k_dense_replace" json:"first_k_dense_replace"`
	IndexNHeads           int     `yaml:"index_n_heads" json:"index_n_heads"`
	IndexHeadDim          int     `yaml:"index_head_dim" json:"index_head_dim"`
	IndexTopk             int     `yaml:"index_topk" json:"index_topk"`
	RopeTheta             float64 `yaml:"rope_theta" json:"rope_theta"`
	MaxPositionEmbeddings int     `yaml:"max_position_embeddings" json:"max_position_embeddings"`
	RMSNormEps            float64 `yaml:"rms_norm_eps" json:"rms_norm_eps"`
	InitializerRange      float64 `yaml:"initializer_range" json:"initializer_range"`

	// Sparrow's own keys.
	BiasUpdateSpeed float64 `yaml:"bias_update_speed" json:"bias_update_speed"` // γ of aux-loss-free balancing (§5.2)
	AuxLossAlpha    float64 `yaml:"aux_loss_alpha" json:"aux_loss_alpha"`       // α of the sequence-wise balance loss; 0 = off
}

// DefaultModel is a genuine DeepSeek-V3.2 at laptop scale: 4 layers (1 dense, 3 MoE), 8 routed experts in
// 4 groups (2 kept), 2 active + 1 shared, MLA with both latents. About 1 M parameters, 0.5 M active per token.
func DefaultModel() Model {
	return Model{
		VocabSize:             272,
		HiddenSize:            128,
		NumHiddenLayers:       4,
		NumAttentionHeads:     4,
		QLoraRank:             64,
		KVLoraRank:            32,
		QKNopeHeadDim:         32,
		QKRopeHeadDim:         16,
		VHeadDim:              32,
		IntermediateSize:      384,
		MoEIntermediateSize:   64,
		NRoutedExperts:        8,
		NSharedExperts:        1,
		NumExpertsPerTok:      2,
		NGroup:                4,
		TopkGroup:             2,
		RoutedScalingFactor:   2.5,
		NormTopkProb:          true,
		FirstKDenseReplace:    1,
		IndexNHeads:           4,
		IndexHeadDim:          32,
		IndexTopk:             64,
		RopeTheta:             10000,
		MaxPositionEmbeddings: 4096,
		RMSNormEps:            1e-6,
		InitializerRange:      0.1, // ≈ 1/√hidden: 0.02 leaves MLA attention in a long plateau (trainer/init_test.go)
		BiasUpdateSpeed:       0.001,
		AuxLossAlpha:          0,
	}
}

// IsMoE reports whether decoder layer i uses the MoE FFN (layers ≥ first_k_dense_replace).
func (m Model) IsMoE(layer int) bool { return m.NRoutedExperts > 0 && layer >= m.FirstKDenseReplace }

// QHeadDim is the per-head query/key width, qk_nope_head_dim + qk_rope_head_dim.
func (m Model) QHeadDim() int { return m.QKNopeHeadDim + m.QKRopeHeadDim }

// Validate checks ranges and cross-field rules. Errors name the key ("model.n_group: ...").
func (m Model) Validate() error {
	var errs []error
	pos := func(key string, v int) {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("model.%s: must be > 0, got %d", key, v))
		}
	}
	nonneg := func(key string, v int) {
		if v < 0 {
			errs = append(errs, fmt.Errorf("model.%s: must be >= 0, got %d", key, v))
		}
	}
	pos("vocab_size", m.VocabSize)
	pos("hidden_size", m.HiddenSize)
	pos("num_hidden_layers", m.NumHiddenLayers)
	pos("num_attention_heads", m.NumAttentionHeads)
	pos("q_lora_rank", m.QLoraRank)
	pos("kv_lora_rank", m.KVLoraRank)
	pos("qk_nope_head_dim", m.QKNopeHeadDim)
	pos("qk_rope_head_dim", m.QKRopeHeadDim)
	pos("v_head_dim", m.VHeadDim)
	pos("intermediate_size", m.IntermediateSize)
	pos("max_position_embeddings", m.MaxPositionEmbeddings)
	nonneg("n_routed_experts", m.NRoutedExperts)
	nonneg("n_shared_experts", m.NSharedExperts)
	nonneg("first_k_dense_replace", m.FirstKDenseReplace)
	nonneg("index_n_heads", m.IndexNHeads)
	nonneg("index_head_dim", m.IndexHeadDim)
	nonneg("index_topk", m.IndexTopk)
	if m.QKRopeHeadDim%2 != 0 {
		errs = append(errs, fmt.Errorf("model.qk_rope_head_dim: must be even (RoPE rotates pairs), got %d", m.QKRopeHeadDim))
	}
	if m.NRoutedExperts > 0 {
		pos("moe_intermediate_size", m.MoEIntermediateSize)
		pos("num_experts_per_tok", m.NumExpertsPerTok)
		pos("n_group", m.NGroup)
		pos("topk_group", m.TopkGroup)
		if m.NumExpertsPerTok > m.NRoutedExperts {
			errs = append(errs, fmt.Errorf("model.num_experts_per_tok: %d exceeds n_routed_experts %d", m.NumExpertsPerTok, m.NRoutedExperts))
		}
		if m.NGroup > 0 && m.NRoutedExperts%m.NGroup != 0 {
			errs = append(errs, fmt.Errorf("model.n_group: %d does not divide n_routed_experts %d", m.NGroup, m.NRoutedExperts))
		}
		if m.TopkGroup > m.NGroup {
			errs = append(errs, fmt.Errorf("model.topk_group: %d exceeds n_group %d", m.TopkGroup, m.NGroup))
		}
		if m.NGroup > 0 && m.TopkGroup > 0 && m.NRoutedExperts%m.NGroup == 0 &&
			m.TopkGroup*(m.NRoutedExperts/m.NGroup) < m.NumExpertsPerTok {
			errs = append(errs, fmt.Errorf("model.topk_group: %d kept groups of %d experts cannot supply num_experts_per_tok %d",
				m.TopkGroup, m.NRoutedExperts/m.NGroup, m.NumExpertsPerTok))
		}
		if m.NGroup > 0 && m.NRoutedExperts%m.NGroup == 0 && m.NRoutedExperts/m.NGroup < 2 && m.NGroup > 1 {
			errs = append(errs, fmt.Errorf("model.n_group: groups need at least 2 experts each (group score = sum of top-2), got %d per group", m.NRoutedExperts/m.NGroup))
		}
		if m.RoutedScalingFactor <= 0 {
			errs = append(errs, fmt.Errorf("model.routed_scaling_factor: must be > 0, got %g", m.RoutedScalingFactor))
		}
	}
	if m.FirstKDenseReplace > m.NumHiddenLayers {
		errs = append(errs, fmt.Errorf("model.first_k_dense_replace: %d exceeds num_hidden_layers %d", m.FirstKDenseReplace, m.NumHiddenLayers))
	}
	if m.IndexNHeads > 0 {
		if m.IndexHeadDim < m.QKRopeHeadDim {
			errs = append(errs, fmt.Errorf("model.index_head_dim: %d is smaller than qk_rope_head_dim %d (the indexer rotates its first qk_rope_head_dim dims)", m.IndexHeadDim, m.QKRopeHeadDim))
		}
		if m.IndexTopk <= 0 {
			errs = append(errs, fmt.Errorf("model.index_topk: must be > 0 when index_n_heads > 0, got %d", m.IndexTopk))
		}
	}
	if m.RopeTheta <= 0 {
		errs = append(errs, fmt.Errorf("model.rope_theta: must be > 0, got %g", m.RopeTheta))
	}
	if m.RMSNormEps <= 0 || m.RMSNormEps > 1e-2 {
		errs = append(errs, fmt.Errorf("model.rms_norm_eps: must be in (0, 0.01], got %g", m.RMSNormEps))
	}
	if m.InitializerRange <= 0 {
		errs = append(errs, fmt.Errorf("model.initializer_range: must be > 0, got %g", m.InitializerRange))
	}
	if m.BiasUpdateSpeed < 0 {
		errs = append(errs, fmt.Errorf("model.bias_update_speed: must be >= 0, got %g", m.BiasUpdateSpeed))
	}
	if m.AuxLossAlpha < 0 {
		errs = append(errs, fmt.Errorf("model.aux_loss_alpha: must be >= 0, got %g", m.AuxLossAlpha))
	}
	return errors.Join(errs...)
}

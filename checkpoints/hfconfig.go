// hfconfig.go writes and reads the Hugging Face config.json and generation_config.json of a checkpoint
// (dsv32-spec.md §8).
//
// config.json holds every key of configs.Model (HF DeepSeek-V3.2 names, plus Sparrow's own balancing keys
// that HF tooling ignores) and the fixed DeepSeek-V3.2 keys: model_type deepseek_v32, sigmoid scoring with
// noaux_tc top-k, no rope_scaling, untied embeddings, SiLU, the special token ids. Reading a config.json
// made elsewhere ignores unknown keys, takes DefaultModel() values for missing Sparrow-only keys, and
// refuses a missing architecture key or a setting Sparrow does not implement: YaRN rope_scaling (Sparrow
// has plain RoPE only), a scoring function other than sigmoid, a top-k method other than noaux_tc, tied
// embeddings, an activation other than SiLU, attention biases, or non-interleaved MLA RoPE.

package checkpoints

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/data"
)

// ModelType and Architecture are the HF names of DeepSeek-V3.2.
const (
	ModelType    = "deepseek_v32"
	Architecture = "DeepseekV32ForCausalLM"
)

// hfConfig is config.json: the fixed DeepSeek-V3.2 keys around configs.Model (whose fields are flattened).
type hfConfig struct {
	Architectures []string `json:"architectures"`
	ModelType     string   `json:"model_type"`
	configs.Model
	NumKeyValueHeads  int              `json:"num_key_value_heads"`
	ScoringFunc       string           `json:"scoring_func"`
	TopkMethod        string           `json:"topk_method"`
	MoELayerFreq      int              `json:"moe_layer_freq"`
	RopeScaling       *json.RawMessage `json:"rope_scaling"`
	RopeInterleave    bool             `json:"rope_interleave"`
	AttentionBias     bool             `json:"attention_bias"`
	TieWordEmbeddings bool             `json:"tie_word_embeddings"`
	HiddenAct         string           `json:"hidden_act"`
	TorchDtype        string           `json:"torch_dtype"`
	BOSTokenID        int              `json:"bos_token_id"`
	EOSTokenID        int              `json:"eos_token_id"`
	PADTokenID        int              `json:"pad_token_id"`
	UseCache          bool             `json:"use_cache"`
}

// MarshalConfig renders config.json for m (validated first).
func MarshalConfig(m configs.Model) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("config.json: %w", err)
	}
	c := hfConfig{
		Architectures: []string{Architecture}, ModelType: ModelType, Model: m,
		NumKeyValueHeads: m.NumAttentionHeads, ScoringFunc: "sigmoid", TopkMethod: "noaux_tc", MoELayerFreq: 1,
		RopeInterleave: true, HiddenAct: "silu", TorchDtype: "float32",
		BOSTokenID: data.BOS, EOSTokenID: data.EOS, PADTokenID: data.PAD, UseCache: true,
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("config.json: %w", err)
	}
	return append(b, '\n'), nil
}

// sparrowOnlyKeys are configs.Model keys that a config.json made elsewhere may lack; they take
// DefaultModel() values. Every other configs.Model key is required.
var sparrowOnlyKeys = map[string]bool{"initializer_range": true, "bias_update_speed": true, "aux_loss_alpha": true}

// UnmarshalConfig parses a config.json (what names it in errors) into a validated configs.Model.
func UnmarshalConfig(b []byte, what string) (configs.Model, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return configs.Model{}, fmt.Errorf("%s: bad JSON: %w", what, err)
	}
	m := configs.DefaultModel()
	// Required keys: every json tag of configs.Model except Sparrow's own.
	rt := reflect.TypeOf(m)
	for i := 0; i < rt.NumField(); i++ {
		key, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
		if key == "" || key == "-" || sparrowOnlyKeys[key] {
			continue
		}
		if v, ok := raw[key]; !ok || string(bytes.TrimSpace(v)) == "null" {
			return configs.Model{}, fmt.Errorf("%s: missing key %q", what, key)
		}
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return configs.Model{}, fmt.Errorf("%s: %w", what, err)
	}
	str := func(key string) (string, bool, error) {
		v, ok := raw[key]
		if !ok || string(bytes.TrimSpace(v)) == "null" {
			return "", false, nil
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return "", true, fmt.Errorf("%s: key %q: want a string, got %s", what, key, v)
		}
		return s, true, nil
	}
	boolean := func(key string) (bool, bool, error) {
		v, ok := raw[key]
		if !ok || string(bytes.TrimSpace(v)) == "null" {
			return false, false, nil
		}
		var x bool
		if err := json.Unmarshal(v, &x); err != nil {
			return false, true, fmt.Errorf("%s: key %q: want a boolean, got %s", what, key, v)
		}
		return x, true, nil
	}
	mt, ok, err := str("model_type")
	switch {
	case err != nil:
		return configs.Model{}, err
	case !ok:
		return configs.Model{}, fmt.Errorf("%s: missing key %q", what, "model_type")
	case mt != ModelType:
		return configs.Model{}, fmt.Errorf("%s: model_type %q is not supported (want %q)", what, mt, ModelType)
	}
	for _, c := range []struct{ key, want, why string }{
		{"scoring_func", "sigmoid", "Sparrow's gate is the DeepSeek-V3 sigmoid gate"},
		{"topk_method", "noaux_tc", "Sparrow routes with aux-loss-free group-limited top-k"},
		{"hidden_act", "silu", "Sparrow's FFNs are SwiGLU"},
	} {
		s, ok, err := str(c.key)
		if err != nil {
			return configs.Model{}, err
		}
		if ok && s != c.want {
			return configs.Model{}, fmt.Errorf("%s: %s %q is not supported, want %q (%s)", what, c.key, s, c.want, c.why)
		}
	}
	if v, ok := raw["rope_scaling"]; ok && string(bytes.TrimSpace(v)) != "null" {
		return configs.Model{}, fmt.Errorf("%s: YaRN rope_scaling not supported: rope_scaling must be null, got %s", what, bytes.TrimSpace(v))
	}
	for _, c := range []struct {
		key  string
		want bool
		why  string
	}{
		{"tie_word_embeddings", false, "DeepSeek-V3.2 has an untied lm_head"},
		{"attention_bias", false, "DeepSeek-V3.2 attention has no biases"},
		{"rope_interleave", true, "Sparrow's MLA rotates interleaved pairs"},
	} {
		x, ok, err := boolean(c.key)
		if err != nil {
			return configs.Model{}, err
		}
		if ok && x != c.want {
			return configs.Model{}, fmt.Errorf("%s: %s: %v is not supported (%s)", what, c.key, x, c.why)
		}
	}
	if err := m.Validate(); err != nil {
		return configs.Model{}, fmt.Errorf("%s: %w", what, err)
	}
	return m, nil
}

// GenerationConfig is generation_config.json: the special ids and default sampling.
type GenerationConfig struct {
	BOSTokenID  int     `json:"bos_token_id"`
	EOSTokenID  int     `json:"eos_token_id"`
	PADTokenID  int     `json:"pad_token_id"`
	DoSample    bool    `json:"do_sample"`
	Temperature float64 `json:"temperature"`
	TopP        float64 `json:"top_p"`
}

// DefaultGenerationConfig samples from the full distribution (temperature 1, top-p 1).
func DefaultGenerationConfig() GenerationConfig {
	return GenerationConfig{BOSTokenID: data.BOS, EOSTokenID: data.EOS, PADTokenID: data.PAD, DoSample: true, Temperature: 1, TopP: 1}
}

// MarshalGenerationConfig renders generation_config.json.
func MarshalGenerationConfig(g GenerationConfig) ([]byte, error) {
	b, err := json.MarshalIndent(g, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("generation_config.json: %w", err)
	}
	return append(b, '\n'), nil
}

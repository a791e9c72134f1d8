// Tests of config.json and generation_config.json: the fixed DeepSeek-V3.2 keys, round trip, a config made
// elsewhere (unknown keys, missing Sparrow-only keys), and every refusal.
package checkpoints

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/sparrow-rl/sparrow/configs"
)

func TestMarshalConfigKeys(t *testing.T) {
	b, err := MarshalConfig(configs.DefaultModel())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]any{
		"model_type": "deepseek_v32", "scoring_func": "sigmoid", "topk_method": "noaux_tc", "rope_scaling": nil,
		"tie_word_embeddings": false, "hidden_act": "silu", "torch_dtype": "float32",
		"bos_token_id": 256.0, "eos_token_id": 257.0, "pad_token_id": 258.0,
		"hidden_size": 128.0, "n_routed_experts": 8.0, "index_topk": 64.0, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
		"norm_topk_prob": true, "bias_update_speed": 0.001, "aux_loss_alpha": 0.0, "num_key_value_heads": 4.0,
	} {
		got, ok := m[key]
		if !ok || got != want {
			t.Errorf("config.json %s = %v (present %v), want %v", key, got, ok, want)
		}
	}
	if a, _ := m["architectures"].([]any); len(a) != 1 || a[0] != "DeepseekV32ForCausalLM" {
		t.Errorf("architectures = %v", m["architectures"])
	}
	back, err := UnmarshalConfig(b, "config.json")
	if err != nil {
		t.Fatal(err)
	}
	if back != configs.DefaultModel() {
		t.Errorf("round trip: %+v", back)
	}
	bad := configs.DefaultModel()
	bad.NGroup = 3
	if _, err := MarshalConfig(bad); err == nil || !strings.Contains(err.Error(), "model.n_group") {
		t.Errorf("invalid model: err = %v", err)
	}
}

// foreignConfig is a config.json as an HF tool would write it for a tiny DeepSeek-V3.2: extra keys Sparrow
// does not know, none of Sparrow's own keys.
const foreignConfig = `{
  "architectures": ["DeepseekV32ForCausalLM"], "model_type": "deepseek_v32", "transformers_version": "4.58.0",
  "attention_bias": false, "attention_dropout": 0.0, "ep_size": 1, "first_k_dense_replace": 1,
  "hidden_act": "silu", "hidden_size": 64, "index_head_dim": 32, "index_n_heads": 2, "index_topk": 16,
  "initializer_range": 0.01, "intermediate_size": 96, "kv_lora_rank": 16, "max_position_embeddings": 512,
  "moe_intermediate_size": 32, "moe_layer_freq": 1, "n_group": 2, "n_routed_experts": 4, "n_shared_experts": 1,
  "norm_topk_prob": true, "num_attention_heads": 2, "num_experts_per_tok": 2, "num_hidden_layers": 2,
  "num_key_value_heads": 2, "num_nextn_predict_layers": 0, "q_lora_rank": 32, "qk_nope_head_dim": 16,
  "qk_rope_head_dim": 8, "rms_norm_eps": 1e-06, "rope_scaling": null, "rope_theta": 10000.0,
  "routed_scaling_factor": 2.5, "scoring_func": "sigmoid", "tie_word_embeddings": false, "topk_group": 1,
  "topk_method": "noaux_tc", "torch_dtype": "bfloat16", "use_cache": true, "v_head_dim": 16, "vocab_size": 300
}`

func TestUnmarshalForeignConfig(t *testing.T) {
	m, err := UnmarshalConfig([]byte(foreignConfig), "hf/config.json")
	if err != nil {
		t.Fatal(err)
	}
	d := configs.DefaultModel()
	if m.HiddenSize != 64 || m.VocabSize != 300 || m.IndexTopk != 16 || m.TopkGroup != 1 || m.InitializerRange != 0.01 {
		t.Errorf("values: %+v", m)
	}
	if m.BiasUpdateSpeed != d.BiasUpdateSpeed || m.AuxLossAlpha != d.AuxLossAlpha {
		t.Errorf("Sparrow-only keys should take defaults: %+v", m)
	}
}

func TestUnmarshalConfigErrors(t *testing.T) {
	edit := func(f func(m map[string]any)) string {
		var m map[string]any
		if err := json.Unmarshal([]byte(foreignConfig), &m); err != nil {
			panic(err)
		}
		f(m)
		b, _ := json.Marshal(m)
		return string(b)
	}
	for _, tc := range []struct {
		what, json, want string
	}{
		{"not JSON", `{"hidden_size":`, "bad JSON"},
		{"missing hidden_size", edit(func(m map[string]any) { delete(m, "hidden_size") }), `missing key "hidden_size"`},
		{"missing index_n_heads", edit(func(m map[string]any) { delete(m, "index_n_heads") }), `missing key "index_n_heads"`},
		{"null kv_lora_rank", edit(func(m map[string]any) { m["kv_lora_rank"] = nil }), `missing key "kv_lora_rank"`},
		{"missing model_type", edit(func(m map[string]any) { delete(m, "model_type") }), `missing key "model_type"`},
		{"other model_type", edit(func(m map[string]any) { m["model_type"] = "llama" }), `model_type "llama" is not supported`},
		{"YaRN", edit(func(m map[string]any) { m["rope_scaling"] = map[string]any{"type": "yarn", "factor": 40} }), "YaRN rope_scaling not supported"},
		{"softmax gate", edit(func(m map[string]any) { m["scoring_func"] = "softmax" }), `scoring_func "softmax" is not supported`},
		{"greedy top-k", edit(func(m map[string]any) { m["topk_method"] = "greedy" }), `topk_method "greedy" is not supported`},
		{"tied embeddings", edit(func(m map[string]any) { m["tie_word_embeddings"] = true }), "tie_word_embeddings: true is not supported"},
		{"gelu", edit(func(m map[string]any) { m["hidden_act"] = "gelu" }), `hidden_act "gelu" is not supported`},
		{"attention bias", edit(func(m map[string]any) { m["attention_bias"] = true }), "attention_bias: true is not supported"},
		{"half-split MLA RoPE", edit(func(m map[string]any) { m["rope_interleave"] = false }), "rope_interleave: false is not supported"},
		{"wrong type", edit(func(m map[string]any) { m["hidden_size"] = "64" }), "hidden_size"},
		{"wrong type of a checked key", edit(func(m map[string]any) { m["tie_word_embeddings"] = "no" }), `key "tie_word_embeddings": want a boolean`},
		{"invalid model", edit(func(m map[string]any) { m["n_group"] = 3 }), "model.n_group"},
	} {
		_, err := UnmarshalConfig([]byte(tc.json), "run/config.json")
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "run/config.json") {
			t.Errorf("%s: err = %v, want %q naming the file", tc.what, err, tc.want)
		}
	}
}

func TestGenerationConfig(t *testing.T) {
	b, err := MarshalGenerationConfig(DefaultGenerationConfig())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]any{"bos_token_id": 256.0, "eos_token_id": 257.0, "pad_token_id": 258.0, "temperature": 1.0, "top_p": 1.0, "do_sample": true} {
		if m[key] != want {
			t.Errorf("generation_config.json %s = %v, want %v", key, m[key], want)
		}
	}
}

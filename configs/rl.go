// rl.go: the `rl:` section of a recipe, read by stages of kind rl (GRPO the DeepSeek-V3.2 way,
// dsv32-spec.md §3.2). Like data/optimizer/schedule/train, a stage inherits the top-level section and
// overlays its own keys. The paper publishes none of ε, β, δ, G, the temperature or top-p: the defaults are
// the peers' usual values (see grpo.DefaultConfig), and the math recipe sets its own.
package configs

import (
	"fmt"
	"math"
	"slices"
)

// RL configures GRPO post-training: the task environment, rollout sampling and the loss.
type RL struct {
	Env       string            `yaml:"env"`        // task family: math, logic, code, dataset, kvretrieval
	EnvParams map[string]string `yaml:"env_params"` // the family's difficulty knobs (see envs)

	GroupSize       int     `yaml:"group_size"`        // G completions per prompt, default 8
	PromptsPerStep  int     `yaml:"prompts_per_step"`  // groups per optimizer batch, default 8
	MiniBatches     int     `yaml:"mini_batches"`      // optimizer steps per batch of groups, default 1
	MaxPromptTokens int     `yaml:"max_prompt_tokens"` // prompt length limit (padded length = this + max_new_tokens), default 64
	MaxNewTokens    int     `yaml:"max_new_tokens"`    // completion length limit, default 96
	Temperature     float64 `yaml:"temperature"`       // sampling temperature, default 1.0
	TopP            float64 `yaml:"top_p"`             // nucleus sampling, default 1.0 (off)
	TopK            int     `yaml:"top_k"`             // top-k sampling, default 0 (off)
	Workers         int     `yaml:"workers"`           // in-process rollout workers, default 2
	MaxStaleness    int     `yaml:"max_staleness"`     // policy versions a group may lag (0 = strictly on-policy)

	EpsLow       float64 `yaml:"eps_low"`       // lower clip, default 0.2
	EpsHigh      float64 `yaml:"eps_high"`      // upper clip (clip-higher), default 0.28
	DualClip     float64 `yaml:"dual_clip"`     // dual-clip c > 1 for negative advantages, 0 = off; default 3
	KL           string  `yaml:"kl"`            // none | k1 | k2 | k3 | unbiased (Eq. 7), default unbiased
	Beta         float64 `yaml:"beta"`          // KL coefficient, default 0.001 (0 skips the reference model)
	Delta        float64 `yaml:"delta"`         // off-policy sequence masking threshold δ (Eq. 9), default 0.5; 0 = off
	Agg          string  `yaml:"agg"`           // loss aggregation, default seq-mean-token-mean (Eq. 8)
	StdNormalize bool    `yaml:"std_normalize"` // divide advantages by the group std (off in the paper)

	// DynamicSampling drops groups whose rewards are all equal (they carry no advantage) and refills the
	// batch with new prompts, at most MaxRefill extra groups per step; a batch that is still short is trained
	// as it is (never aborted).
	DynamicSampling bool `yaml:"dynamic_sampling"`
	MaxRefill       int  `yaml:"max_refill"` // default 8

	KeepRouting      bool `yaml:"keep_routing"`       // replay the sampled MoE experts in training, default true
	KeepSamplingMask bool `yaml:"keep_sampling_mask"` // renormalise π_θ over the sampler's kept set, default true

	EvalTasks int `yaml:"eval_tasks"` // held-out tasks for eval/<env>/accuracy (greedy), default 64
	EvalEvery int `yaml:"eval_every"` // steps between evaluations (0 = start and end only), default 10

	FormatReward float64 `yaml:"format_reward"` // reward for a well-formed reasoning</think>answer completion, default 0.1
	LengthBudget int     `yaml:"length_budget"` // tokens before the length penalty starts, 0 = no penalty
	LengthWeight float64 `yaml:"length_weight"` // length penalty weight λ (see envs.RewardOptions)
}

// RLEnvs lists the task families rl.env may name (the envs registry adds to it).
var RLEnvs = []string{"math", "logic", "code", "dataset", "kvretrieval"}

// RLKL lists the values of rl.kl.
var RLKL = []string{"none", "k1", "k2", "k3", "unbiased"}

// RLAgg lists the values of rl.agg.
var RLAgg = []string{"seq-mean-token-mean", "token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"}

// DefaultRL returns the defaults of the rl section.
func DefaultRL() RL {
	return RL{
		Env: "math", EnvParams: map[string]string{}, GroupSize: 8, PromptsPerStep: 8, MiniBatches: 1, MaxPromptTokens: 64, MaxNewTokens: 96,
		Temperature: 1, TopP: 1, Workers: 2,
		EpsLow: 0.2, EpsHigh: 0.28, DualClip: 3, KL: "unbiased", Beta: 0.001, Delta: 0.5, Agg: "seq-mean-token-mean",
		MaxRefill: 8, KeepRouting: true, KeepSamplingMask: true, EvalTasks: 64, EvalEvery: 10, FormatReward: 0.1,
	}
}

// RegisterGenerator adds a synthetic generator name to the ones data.generator accepts (task families call
// it at init so that `generator: math` validates).
func RegisterGenerator(name string) {
	if !slices.Contains(DataGenerators, name) {
		DataGenerators = append(DataGenerators, name)
	}
}

func validateRL(k *checker, r *RL) {
	k.oneOf("rl.env", r.Env, RLEnvs)
	k.positiveInt("rl.group_size", r.GroupSize)
	if r.GroupSize == 1 {
		k.add("rl.group_size", "must be >= 2 (advantages are relative to the group), got 1")
	}
	k.positiveInt("rl.prompts_per_step", r.PromptsPerStep)
	k.positiveInt("rl.mini_batches", r.MiniBatches)
	if r.MiniBatches > 0 && r.PromptsPerStep > 0 && r.PromptsPerStep%r.MiniBatches != 0 {
		k.add("rl.mini_batches", "%d does not divide rl.prompts_per_step %d (groups are never split)", r.MiniBatches, r.PromptsPerStep)
	}
	k.positiveInt("rl.max_prompt_tokens", r.MaxPromptTokens)
	k.positiveInt("rl.max_new_tokens", r.MaxNewTokens)
	if r.Temperature < 0 || math.IsNaN(r.Temperature) {
		k.add("rl.temperature", "must be >= 0, got %g", r.Temperature)
	}
	if !(r.TopP > 0 && r.TopP <= 1) {
		k.add("rl.top_p", "must be in (0, 1], got %g", r.TopP)
	}
	k.nonNegInt("rl.top_k", r.TopK)
	k.positiveInt("rl.workers", r.Workers)
	k.nonNegInt("rl.max_staleness", r.MaxStaleness)
	if !(r.EpsLow > 0 && r.EpsLow < 1) {
		k.add("rl.eps_low", "must be in (0, 1), got %g", r.EpsLow)
	}
	if !(r.EpsHigh > 0) {
		k.add("rl.eps_high", "must be > 0, got %g", r.EpsHigh)
	}
	if r.DualClip != 0 && !(r.DualClip > 1) {
		k.add("rl.dual_clip", "must be > 1 or 0 (off), got %g", r.DualClip)
	}
	k.oneOf("rl.kl", r.KL, RLKL)
	k.nonNeg("rl.beta", r.Beta)
	k.nonNeg("rl.delta", r.Delta)
	k.oneOf("rl.agg", r.Agg, RLAgg)
	k.nonNegInt("rl.max_refill", r.MaxRefill)
	k.nonNegInt("rl.eval_tasks", r.EvalTasks)
	k.nonNegInt("rl.eval_every", r.EvalEvery)
	k.nonNeg("rl.format_reward", r.FormatReward)
	k.nonNegInt("rl.length_budget", r.LengthBudget)
	k.nonNeg("rl.length_weight", r.LengthWeight)
	if r.Temperature == 0 && r.GroupSize > 1 {
		k.add("rl.temperature", "0 (greedy) makes every completion of a group identical; use > 0")
	}
	if r.Beta > 0 && r.KL == "none" {
		k.add("rl.beta", "%g > 0 needs rl.kl other than none", r.Beta)
	}
	_ = fmt.Sprint
}

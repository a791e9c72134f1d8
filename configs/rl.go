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
	Env       string            `yaml:"env"`        // task family: math, logic, code, dataset, kvretrieval, needle, or mix (weighted families, envs.Mix)
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
	DecodeBatch     int     `yaml:"decode_batch"`      // completions a worker (or evaluator) decodes together, default 64
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
	// KeepSelection records the DSA top-k of every position and layer at sampling (dsa_topk) and replays it in
	// the learner, the DSA analogue of Keep Routing; needs a sparse-attention policy. Default false.
	KeepSelection bool `yaml:"keep_selection"`
	// RolloutDtype is the precision of the weights the rollout engine decodes with: float32 (default, the
	// learner's own) or bfloat16 (every weight rounded to the nearest bfloat16, as an engine serving bf16
	// weights does; activations stay float32). bfloat16 makes the training–inference mismatch that Keep
	// Routing and Keep Sampling Mask guard against: the sampler's routes and kept sets are the rounded
	// model's. Workers in other processes round the weights they receive.
	RolloutDtype string `yaml:"rollout_dtype"`

	EvalTasks int `yaml:"eval_tasks"` // held-out tasks for eval/<env>/accuracy (greedy), default 64
	EvalEvery int `yaml:"eval_every"` // steps between evaluations (0 = start and end only), default 10

	// LogSamples writes the first LogSamples groups (by id) of every step, and the greedy completions of the
	// first LogSamples evaluation tasks, to <run>/rollouts.jsonl for people to read; 0 (default) = off. At
	// most prompts_per_step·4.
	LogSamples int `yaml:"log_samples"`

	FormatReward float64 `yaml:"format_reward"` // reward for a well-formed reasoning</think>answer completion, default 0.1
	LengthBudget int     `yaml:"length_budget"` // tokens before the length penalty starts, 0 = no penalty
	LengthWeight float64 `yaml:"length_weight"` // length penalty weight λ (see envs.RewardOptions)

	// Tool environments (calc, search, interpreter): multi-turn episodes (rollout/episode.go).
	MaxToolCalls int     `yaml:"max_tool_calls"` // tool calls an episode may execute, default 4
	ToolTimeoutS float64 `yaml:"tool_timeout_s"` // deadline of one tool call in seconds, default 5
	// ToolResultsInLoss trains the inserted tool results too (LossMask 1), an ablation; default false.
	ToolResultsInLoss bool `yaml:"tool_results_in_loss"`
	// ToolsNATS calls the environment's tools as NATS services (`trainer tools serve`) at this URL instead of
	// in process; ToolsPrefix is their subject prefix. ToolsMCP names MCP servers (an http(s) URL or a stdio
	// command line) whose tools replace the environment's tools of the same names.
	ToolsNATS   string   `yaml:"tools_nats"`
	ToolsPrefix string   `yaml:"tools_prefix"`
	ToolsMCP    []string `yaml:"tools_mcp"`

	Bus Bus `yaml:"bus"` // how workers and the learner talk (NATS JetStream or in-process channels)
}

// Bus configures the rollout transport (rollout/natsbus). Secrets (passwords, tokens) are never config
// keys: they come from the environment (SPARROW_NATS_PASSWORD, SPARROW_NATS_TOKEN) or the URL given on the
// command line, so that config.yaml and the logs never hold them.
type Bus struct {
	Transport    string `yaml:"transport"`     // embedded (default) | nats | inproc
	URL          string `yaml:"url"`           // transport nats: server URL(s), comma-separated, without credentials
	Prefix       string `yaml:"prefix"`        // subject/stream prefix component; "" = the config's name
	LocalWorkers bool   `yaml:"local_workers"` // start rl.workers in-process (false for `trainer learn`)
	Weights      string `yaml:"weights"`       // weight sync for out-of-process workers: objectstore (default) | s3 | none
	WeightsURL   string `yaml:"weights_url"`   // weights s3: s3://bucket/prefix of the versions (endpoint and keys from AWS_*)
	User         string `yaml:"user"`          // user name (password from SPARROW_NATS_PASSWORD)
	CredsFile    string `yaml:"creds_file"`    // NATS .creds file (JWT + nkey seed)
	TLSCA        string `yaml:"tls_ca"`        // CA bundle that signs the server's certificate
	TLSCert      string `yaml:"tls_cert"`      // client certificate (mutual TLS)
	TLSKey       string `yaml:"tls_key"`       // client key (mutual TLS)

	MaxPayload  int     `yaml:"max_payload"`    // bytes: the embedded server's max payload and the group size limit, default 8 MiB
	MaxBytes    int64   `yaml:"max_bytes"`      // trajectory stream size limit in bytes, default 1 GiB
	MaxAgeS     float64 `yaml:"max_age_s"`      // trajectory stream message age limit, default 7 days
	DupWindowS  float64 `yaml:"dup_window_s"`   // server-side de-duplication window (Nats-Msg-Id), default 120
	AckWaitS    float64 `yaml:"ack_wait_s"`     // learner's redelivery delay for groups not yet committed, default 60
	JobAckWaitS float64 `yaml:"job_ack_wait_s"` // redelivery delay of a prompt whose worker went silent, default 60
	HeartbeatS  float64 `yaml:"heartbeat_s"`    // worker heartbeat period, default 2
	WaitS       float64 `yaml:"wait_s"`         // deadline of every blocking wait (groups, weights, jobs), default 600
}

// BusTransports lists the values of rl.bus.transport.
var BusTransports = []string{"embedded", "nats", "inproc"}

// BusWeights lists the values of rl.bus.weights.
var BusWeights = []string{"objectstore", "s3", "none"}

// DefaultBus returns the defaults of rl.bus.
func DefaultBus() Bus {
	return Bus{Transport: "embedded", LocalWorkers: true, Weights: "objectstore", MaxPayload: 8 << 20, MaxBytes: 1 << 30,
		MaxAgeS: 7 * 24 * 3600, DupWindowS: 120, AckWaitS: 60, JobAckWaitS: 60, HeartbeatS: 2, WaitS: 600}
}

func validateBus(k *checker, b *Bus) {
	k.oneOf("rl.bus.transport", b.Transport, BusTransports)
	k.oneOf("rl.bus.weights", b.Weights, BusWeights)
	switch {
	case b.Weights == "s3" && b.WeightsURL == "":
		k.add("rl.bus.weights_url", "required when rl.bus.weights is s3 (e.g. s3://bucket/run/weights)")
	case b.Weights != "s3" && b.WeightsURL != "":
		k.add("rl.bus.weights_url", "set, but rl.bus.weights is %s (use s3)", b.Weights)
	case b.WeightsURL != "":
		if err := checkS3URL(b.WeightsURL); err != nil {
			k.add("rl.bus.weights_url", "%v", err)
		}
	}
	if b.Transport == "nats" && b.URL == "" {
		k.add("rl.bus.url", "required when rl.bus.transport is nats (e.g. nats://127.0.0.1:4222)")
	}
	if b.Transport != "nats" && b.URL != "" {
		k.add("rl.bus.url", "set, but rl.bus.transport is %s (use nats)", b.Transport)
	}
	if b.Transport == "inproc" && !b.LocalWorkers {
		k.add("rl.bus.local_workers", "false leaves an in-process transport without workers")
	}
	if (b.TLSCert == "") != (b.TLSKey == "") {
		k.add("rl.bus.tls_cert", "rl.bus.tls_cert and rl.bus.tls_key go together")
	}
	if b.MaxPayload < 1<<10 || b.MaxPayload > 64<<20 {
		k.add("rl.bus.max_payload", "must be in [1 KiB, 64 MiB], got %d", b.MaxPayload)
	}
	if b.MaxBytes <= 0 {
		k.add("rl.bus.max_bytes", "must be > 0, got %d", b.MaxBytes)
	}
	k.nonNeg("rl.bus.max_age_s", b.MaxAgeS)
	for _, f := range []struct {
		key string
		v   float64
	}{{"rl.bus.dup_window_s", b.DupWindowS}, {"rl.bus.ack_wait_s", b.AckWaitS}, {"rl.bus.job_ack_wait_s", b.JobAckWaitS},
		{"rl.bus.heartbeat_s", b.HeartbeatS}, {"rl.bus.wait_s", b.WaitS}} {
		if !(f.v > 0) {
			k.add(f.key, "must be > 0, got %g", f.v)
		}
	}
}

// RLRolloutDtypes lists the values of rl.rollout_dtype.
var RLRolloutDtypes = []string{"float32", "bfloat16"}

// RLToolEnvs lists the tool environments among RLEnvs (multi-turn episodes with tool calls).
var RLToolEnvs = []string{"calc", "search", "interpreter", "toolmix"}

// RLEnvs lists the task families rl.env may name (the envs registry adds to it).
var RLEnvs = []string{"math", "logic", "code", "dataset", "kvretrieval", "needle", "copy", "mix", "calc", "search", "interpreter", "toolmix"}

// RLKL lists the values of rl.kl.
var RLKL = []string{"none", "k1", "k2", "k3", "unbiased"}

// RLAgg lists the values of rl.agg.
var RLAgg = []string{"seq-mean-token-mean", "token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"}

// DefaultRL returns the defaults of the rl section.
func DefaultRL() RL {
	return RL{
		Env: "math", EnvParams: map[string]string{}, GroupSize: 8, PromptsPerStep: 8, MiniBatches: 1, MaxPromptTokens: 64, MaxNewTokens: 96,
		Temperature: 1, TopP: 1, Workers: 2, DecodeBatch: 64,
		EpsLow: 0.2, EpsHigh: 0.28, DualClip: 3, KL: "unbiased", Beta: 0.001, Delta: 0.5, Agg: "seq-mean-token-mean",
		MaxRefill: 8, KeepRouting: true, KeepSamplingMask: true, RolloutDtype: "float32", EvalTasks: 64, EvalEvery: 10, FormatReward: 0.1,
		MaxToolCalls: 4, ToolTimeoutS: 5, ToolsPrefix: "sparrow.tools", Bus: DefaultBus(),
	}
}

// Attention of a stage's starting policy, as PolicyAttention derives it from the pipeline.
const (
	AttentionDense  = "dense"
	AttentionSparse = "sparse"
)

// PolicyAttention says with which attention the weights stage i starts from were trained: sparse when the
// nearest stage before it that decides is a dsa_sparse stage, dense when it is a pretrain, sft, dsa_warmup or
// distill stage or when nothing comes before (fresh weights). rl stages keep their policy's attention and do
// not decide. When the weights come from an init_from checkpoint (of stage i, or of an rl stage on the way
// back), the checkpoint decides: attention is "" and checkpoint names it. why says which stage decided.
func (c *Config) PolicyAttention(i int) (attention, checkpoint, why string) {
	for j := i; j >= 0; j-- {
		s := c.Stages[j]
		if j < i {
			switch s.Kind {
			case KindDSASparse:
				return AttentionSparse, "", fmt.Sprintf("stage %s (%s) trains it with sparse attention", s.Name, s.Kind)
			case KindPretrain, KindSFT, KindDSAWarmup, KindDistill:
				return AttentionDense, "", fmt.Sprintf("stage %s (%s) trains it with dense attention", s.Name, s.Kind)
			}
		}
		if ref, ok := StageRef(s.InitFrom); ok {
			if k := c.stageIndex(ref); k >= 0 && k < j {
				j = k + 1 // continue the walk at the named stage (the loop's j-- lands on it)
				continue
			}
		}
		if s.InitFrom != "" {
			return "", s.InitFrom, fmt.Sprintf("stage %s starts from init_from %s", s.Name, s.InitFrom)
		}
	}
	return AttentionDense, "", "no stage before it trains the freshly initialised weights with sparse attention"
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
	k.oneOf("rl.rollout_dtype", r.RolloutDtype, RLRolloutDtypes)
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
	k.positiveInt("rl.decode_batch", r.DecodeBatch)
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
	k.nonNegInt("rl.log_samples", r.LogSamples)
	if r.PromptsPerStep > 0 && r.LogSamples > 4*r.PromptsPerStep {
		k.addRelated("rl.log_samples", []string{"rl.prompts_per_step"}, "%d exceeds 4·rl.prompts_per_step = %d", r.LogSamples, 4*r.PromptsPerStep)
	}
	k.nonNeg("rl.format_reward", r.FormatReward)
	k.nonNegInt("rl.length_budget", r.LengthBudget)
	k.nonNeg("rl.length_weight", r.LengthWeight)
	if r.Temperature == 0 && r.GroupSize > 1 {
		k.add("rl.temperature", "0 (greedy) makes every completion of a group identical; use > 0")
	}
	if r.Beta > 0 && r.KL == "none" {
		k.add("rl.beta", "%g > 0 needs rl.kl other than none", r.Beta)
	}
	k.positiveInt("rl.max_tool_calls", r.MaxToolCalls)
	if !(r.ToolTimeoutS > 0) || math.IsInf(r.ToolTimeoutS, 0) {
		k.add("rl.tool_timeout_s", "must be a finite number of seconds > 0, got %g", r.ToolTimeoutS)
	}
	if (r.ToolsNATS != "" || len(r.ToolsMCP) > 0) && !slices.Contains(RLToolEnvs, r.Env) {
		k.addRelated("rl.tools_nats", []string{"rl.tools_mcp", "rl.env"}, "remote tools need a tool environment (%v), but rl.env is %s", RLToolEnvs, r.Env)
	}
	if r.ToolsPrefix == "" {
		k.add("rl.tools_prefix", "must not be empty (the subject prefix of the tool services)")
	}
	validateBus(k, &r.Bus)
}

// validateKeepSelection checks that an rl stage (index i) with rl.keep_selection has a sparse-attention policy
// (as far as the config tells: an init_from checkpoint is checked when the stage starts).
func validateKeepSelection(k *checker, c *Config, i int) {
	if !c.Stages[i].RL.KeepSelection {
		return
	}
	if c.Model.IndexNHeads <= 0 {
		k.addRelated("rl.keep_selection", []string{"model.index_n_heads"}, "true needs a DeepSeek Sparse Attention policy, but model.index_n_heads is 0 (no indexer)")
		return
	}
	if att, _, why := c.PolicyAttention(i); att == AttentionDense {
		k.add("rl.keep_selection", "true needs a DeepSeek Sparse Attention policy (a dsa_sparse stage before this one, or init_from a sparse checkpoint), but the policy is dense: %s", why)
	}
}

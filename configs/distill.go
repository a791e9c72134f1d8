// distill.go: the `distill:` section, read by stages of kind distill: a student (the stage's init_from)
// learns from several teachers, each a checkpoint tied to the task families it is the expert of. The
// prompts, sampling, group size, workers, transport and evaluation come from the stage's rl section (a
// distill stage samples through the rl machinery); the families and their mixing weights are rl.env
// (one family, or mix with env_params.families "math:1,logic:1,code:1").

package configs

import (
	"math"
	"slices"
	"sort"
	"strings"
)

// Distillation methods.
const (
	DistillOnPolicy = "on_policy"
	DistillSFT      = "sft"
)

// DistillMethods lists the values of distill.method.
var DistillMethods = []string{DistillOnPolicy, DistillSFT}

// On-policy distillation's reverse-KL terms (distill.kl).
const (
	DistillKLSampled = "sampled" // the sampled-token estimator as a per-token advantage (grpo/distill.go)
	DistillKLExact   = "exact"   // the exact KL over each kept set as a loss term (grpo/distill_exact.go)
	DistillKLBoth    = "both"    // both, each weighted by kl_coef
)

// DistillKLs lists the values of distill.kl.
var DistillKLs = []string{DistillKLSampled, DistillKLExact, DistillKLBoth}

// Distill configures a distill stage.
type Distill struct {
	// Method is on_policy (default: the student samples, the family's teacher scores every sampled token,
	// the per-token reverse KL is the advantage (grpo/distill.go) and/or an exact loss term (distill.kl)) or sft (the teachers generate for their
	// families' training prompts, verified-correct completions are kept, the student trains on them).
	Method string `yaml:"method"`
	// Teachers maps each task family to its teacher's checkpoint: stage:<name> (an earlier stage of this
	// recipe), a checkpoint directory, or an s3:// URL. Several families may name one checkpoint.
	Teachers map[string]string `yaml:"teachers"`
	// KL (on_policy) selects the reverse-KL term: sampled (default: the sampled-token estimator as the
	// advantage −λ·(ℓ_old − ℓ_T)), exact (the exact KL over each token's kept set, λ·Σ_t w_t·KL_t added to the
	// loss with the GRPO token aggregation w_t; the workers attach the teacher over every kept set), or both.
	KL string `yaml:"kl"`
	// KLCoef is λ, the weight of the reverse-KL term(s), default 1.
	KLCoef float64 `yaml:"kl_coef"`
	// RewardWeight is α, the weight of the verifier's group advantage R − mean(R) mixed into every token's
	// advantage, default 0 (pure distillation).
	RewardWeight float64 `yaml:"reward_weight"`
	// SFTSamples (sft): completions each teacher draws per training prompt before rejection, default 4.
	SFTSamples int `yaml:"sft_samples"`
	// SFTPrompts (sft): training prompts per teacher family, default 256.
	SFTPrompts int `yaml:"sft_prompts"`
}

// DefaultDistill returns the defaults of the distill section.
func DefaultDistill() Distill {
	return Distill{Method: DistillOnPolicy, Teachers: map[string]string{}, KL: DistillKLSampled, KLCoef: 1, SFTSamples: 4, SFTPrompts: 256}
}

// TeacherFamilies returns the families of Teachers, sorted.
func (d Distill) TeacherFamilies() []string {
	fs := make([]string, 0, len(d.Teachers))
	for f := range d.Teachers {
		fs = append(fs, f)
	}
	sort.Strings(fs)
	return fs
}

// validateDistill checks stage i's distill section against the recipe.
func validateDistill(k *checker, c *Config, i int) {
	d := &c.Stages[i].Distill
	k.oneOf("distill.method", d.Method, DistillMethods)
	k.oneOf("distill.kl", d.KL, DistillKLs)
	if len(d.Teachers) == 0 {
		k.add("distill.teachers", "required: task family → teacher checkpoint (stage:<name>, a directory or s3://), e.g. {math: stage:rl_math}")
	}
	for _, f := range d.TeacherFamilies() {
		ref := d.Teachers[f]
		key := "distill.teachers." + f
		switch {
		case !slices.Contains(RLEnvs, f) || f == "mix":
			k.add(key, "%q is not a task family (one of %s)", f, strings.Join(RLEnvs[:len(RLEnvs)-1], ", "))
		case strings.TrimSpace(ref) == "":
			k.add(key, "empty checkpoint")
		}
		if name, ok := StageRef(ref); ok {
			checkStageRef(k, c, key, name, i)
		} else if strings.Contains(ref, "://") {
			if err := checkS3URL(ref); err != nil {
				k.add(key, "%v", err)
			}
		}
	}
	for _, f := range sampledFamilies(c.Stages[i].RL) {
		if _, ok := d.Teachers[f]; !ok {
			k.add("distill.teachers", "no teacher for family %s, which rl.env samples (teachers: %s)", f, strings.Join(d.TeacherFamilies(), ", "))
		}
	}
	if !(d.KLCoef >= 0) || math.IsInf(d.KLCoef, 0) {
		k.add("distill.kl_coef", "must be a finite number >= 0, got %g", d.KLCoef)
	}
	if !(d.RewardWeight >= 0) || math.IsInf(d.RewardWeight, 0) {
		k.add("distill.reward_weight", "must be a finite number >= 0, got %g", d.RewardWeight)
	}
	if d.KL != DistillKLSampled && d.Method == DistillSFT {
		k.add("distill.kl", "%q applies to method on_policy, not sft (which has no KL term)", d.KL)
	}
	if d.KLCoef == 0 && d.RewardWeight == 0 {
		k.add("distill.kl_coef", "0 with distill.reward_weight 0 leaves nothing to learn")
	}
	k.positiveInt("distill.sft_samples", d.SFTSamples)
	k.positiveInt("distill.sft_prompts", d.SFTPrompts)
}

// sampledFamilies are the task families an rl section samples: rl.env, or for a mix the names of
// env_params.families ("math:1,logic:1").
func sampledFamilies(r RL) []string {
	if r.Env != "mix" {
		return []string{r.Env}
	}
	var out []string
	for _, part := range strings.Split(r.EnvParams["families"], ",") {
		if name, _, _ := strings.Cut(strings.TrimSpace(part), ":"); name != "" {
			out = append(out, name)
		}
	}
	return out
}

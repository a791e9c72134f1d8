// rollout.go: `trainer bench rollout` — GRPO rollout throughput (completion tokens/s with G samples per
// prompt from the inference engine, W in-process workers) and the learner's step time on the same groups,
// measured in one run on a recipe's rl stage (the policy from a checkpoint, or a random one) through
// trainer.ProbeRLStep.

package bench

import (
	"context"
	"fmt"

	"github.com/sparrow-rl/sparrow/checkpoints"
	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/internal/kernels"
	"github.com/sparrow-rl/sparrow/model"
	"github.com/sparrow-rl/sparrow/trainer"
)

// RolloutBenchResult is what `trainer bench rollout --json` prints.
type RolloutBenchResult struct {
	Config            string  `json:"config"`
	Checkpoint        string  `json:"checkpoint,omitempty"`
	Groups            int     `json:"groups"`
	GroupSize         int     `json:"group_size"`
	Workers           int     `json:"workers"`
	CompletionTokens  int     `json:"completion_tokens"`
	MeanLength        float64 `json:"mean_completion_length"`
	RolloutSeconds    float64 `json:"rollout_s"`
	TokensPerS        float64 `json:"tokens_per_s"`
	GroupsPerS        float64 `json:"groups_per_s"`
	EpisodesPerS      float64 `json:"episodes_per_s"` // completions (multi-turn episodes for a tool environment) per second
	LearnerStepS      float64 `json:"learner_step_s"`
	LearnerTokensPerS float64 `json:"learner_tokens_per_s"`
	Backend           string  `json:"backend"`
}

// BenchRollout samples one step's groups with the stage's rl settings and times them and one learner step.
func BenchRollout(cfg *configs.Config, stageName, checkpoint string) (*RolloutBenchResult, error) {
	var st *configs.Stage
	for i := range cfg.Stages {
		if cfg.Stages[i].Kind == configs.KindRL && (stageName == "" || cfg.Stages[i].Name == stageName) {
			st = &cfg.Stages[i]
			break
		}
	}
	if st == nil {
		return nil, fmt.Errorf("bench rollout: config %s has no rl stage %q", cfg.Name, stageName)
	}
	var p *model.Params
	if checkpoint != "" {
		var err error
		if p, _, err = checkpoints.LoadParams(checkpoint); err != nil {
			return nil, err
		}
	} else {
		p = model.NewParams(cfg.Model)
		p.Init(uint64(cfg.Seed))
	}
	pr, err := trainer.ProbeRLStep(context.Background(), cfg, *st, p)
	if err != nil {
		return nil, err
	}
	n := pr.Groups * pr.GroupSize
	toks := float64(pr.CompletionTokens)
	return &RolloutBenchResult{Config: cfg.Name, Checkpoint: checkpoint, Groups: pr.Groups, GroupSize: pr.GroupSize,
		Workers: pr.Workers, CompletionTokens: pr.CompletionTokens, MeanLength: toks / float64(n), RolloutSeconds: pr.RolloutSeconds,
		TokensPerS: toks / pr.RolloutSeconds, GroupsPerS: float64(pr.Groups) / pr.RolloutSeconds, EpisodesPerS: float64(n) / pr.RolloutSeconds,
		LearnerStepS: pr.LearnerSeconds, LearnerTokensPerS: float64(pr.LearnerTokens) / pr.LearnerSeconds, Backend: kernels.Backend()}, nil
}

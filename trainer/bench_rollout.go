// bench_rollout.go: `trainer bench rollout` — GRPO rollout throughput (completion tokens/s with G samples per
// prompt from the inference engine, W in-process workers) and the learner's step time on the same groups,
// measured in one run on a recipe's rl stage (the policy from a checkpoint, or a random one).
package trainer

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/sparrow-rl/sparrow/checkpoints"
	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/internal/kernels"
	"github.com/sparrow-rl/sparrow/model"
	"github.com/sparrow-rl/sparrow/rollout"
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
	dir, err := os.MkdirTemp("", "sparrow-bench-rollout-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	r := &Run{Config: cfg, Dir: dir, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	s, err := newRLStage(r, *st, p)
	if err != nil {
		return nil, err
	}
	defer s.close()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, gs := range s.samplers {
		w := &rollout.Worker{Sampler: gs, Version: s.version.Load}
		wg.Add(1)
		go func() { defer wg.Done(); _ = w.Run(ctx, s.transport) }()
	}
	defer func() { cancel(); s.transport.Close(); wg.Wait() }()
	t0 := time.Now()
	groups, _, err := s.gather(ctx, nil)
	if err != nil {
		return nil, err
	}
	roll := time.Since(t0)
	slices.SortFunc(groups, func(a, b *data.Group) int {
		if a.GroupID < b.GroupID {
			return -1
		}
		return 1
	})
	toks := 0
	for _, g := range groups {
		for _, tr := range g.Trajectories {
			toks += len(tr.CompletionTokens)
		}
	}
	t1 := time.Now()
	if _, err := s.trainOn(groups); err != nil {
		return nil, err
	}
	learn := time.Since(t1)
	n := len(groups) * st.RL.GroupSize
	return &RolloutBenchResult{Config: cfg.Name, Checkpoint: checkpoint, Groups: len(groups), GroupSize: st.RL.GroupSize,
		Workers: st.RL.Workers, CompletionTokens: toks, MeanLength: float64(toks) / float64(n), RolloutSeconds: roll.Seconds(),
		TokensPerS: float64(toks) / roll.Seconds(), GroupsPerS: float64(len(groups)) / roll.Seconds(),
		LearnerStepS: learn.Seconds(), LearnerTokensPerS: float64(n*s.T) / learn.Seconds(), Backend: kernels.Backend()}, nil
}

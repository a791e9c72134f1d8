// rl_probe.go: one RL step of a stage, timed, for `trainer bench rollout` (internal/bench): the stage's
// in-process workers sample one step's groups, then the learner runs its update on them.

package trainer

import (
	"context"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/model"
	"github.com/sparrow-rl/sparrow/rollout"
)

// RLStepProbe is one RL step of a stage, timed: the groups the in-process workers sampled and the learner's update on them.
type RLStepProbe struct {
	Groups, GroupSize, Workers, CompletionTokens int
	RolloutSeconds, LearnerSeconds               float64
	LearnerTokens                                int // rows × padded length the learner's update processed
}

// ProbeRLStep samples one step's groups for the rl stage st of cfg with params (in-process workers) and runs the learner's update on them, timing both.
func ProbeRLStep(ctx context.Context, cfg *configs.Config, st configs.Stage, params *model.Params) (RLStepProbe, error) {
	dir, err := os.MkdirTemp("", "sparrow-bench-rollout-")
	if err != nil {
		return RLStepProbe{}, err
	}
	defer os.RemoveAll(dir)
	r := &Run{Config: cfg, Dir: dir, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	s, err := newRLStage(r, st, params)
	if err != nil {
		return RLStepProbe{}, err
	}
	defer s.close()
	ctx, cancel := context.WithCancel(ctx)
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
		return RLStepProbe{}, err
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
		return RLStepProbe{}, err
	}
	learn := time.Since(t1)
	n := len(groups) * st.RL.GroupSize
	return RLStepProbe{Groups: len(groups), GroupSize: st.RL.GroupSize, Workers: st.RL.Workers, CompletionTokens: toks,
		RolloutSeconds: roll.Seconds(), LearnerSeconds: learn.Seconds(), LearnerTokens: n * s.T}, nil
}

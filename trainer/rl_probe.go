// rl_probe.go: one RL step of a stage run in isolation and timed, for `trainer bench rollout`.

package trainer

import (
	"context"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/model"
)

// RLStepProbe is one RL step of a stage, timed: the groups the in-process workers sampled and the learner's
// update on them.
type RLStepProbe struct {
	Groups, GroupSize, Workers, CompletionTokens int
	RolloutSeconds, LearnerSeconds               float64
	LearnerTokens                                int // rows × padded length the learner's update processed
}

// ProbeRLStep samples one step's groups for the rl stage st of cfg with params (in-process workers) and runs
// the learner's update on them, timing both.
func ProbeRLStep(ctx context.Context, cfg *configs.Config, st configs.Stage, params *model.Params) (RLStepProbe, error) {
	dir, err := os.MkdirTemp("", "sparrow-probe-rl-")
	if err != nil {
		return RLStepProbe{}, err
	}
	defer os.RemoveAll(dir)
	st.RL.Bus.Transport, st.RL.Bus.LocalWorkers = "inproc", true
	r := &Run{Config: cfg, Dir: dir, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	s, err := newRLStage(r, st, params)
	if err != nil {
		return RLStepProbe{}, err
	}
	defer s.end(false)
	if err := s.begin(ctx, 0); err != nil {
		return RLStepProbe{}, err
	}
	t0 := time.Now()
	groups, _, err := s.collect(ctx, 0)
	if err != nil {
		return RLStepProbe{}, err
	}
	roll := time.Since(t0)
	batch, err := s.advantages(groups)
	if err != nil {
		return RLStepProbe{}, err
	}
	t1 := time.Now()
	upd, err := s.update(0, batch)
	if err != nil {
		return RLStepProbe{}, err
	}
	learn := time.Since(t1)
	return RLStepProbe{Groups: len(groups), GroupSize: st.RL.GroupSize, Workers: st.RL.Workers, CompletionTokens: batch.completionTokens,
		RolloutSeconds: roll.Seconds(), LearnerSeconds: learn.Seconds(), LearnerTokens: upd.updates * s.batch.Rows * s.batch.T}, nil
}

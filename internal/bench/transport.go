// transport.go: `trainer bench transport` — the rollout bus measured two ways in one command: the
// stream alone (BenchStream, stream.go: groups/s and MB/s for realistic groups of the recipe's model,
// encode/publish/decode time per group, weight publish and fetch time), and a short full RL run over the
// embedded server, whose metrics give the share of the learner's step spent waiting for data and the
// transport overhead (encode + publish + fetch + decode) as a share of the step.

package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/trainer"
)

// TransportBenchResult is what `trainer bench transport --json` prints.
type TransportBenchResult struct {
	Config string       `json:"config"`
	Stream StreamResult `json:"stream"`
	// the full run
	RunSteps         int     `json:"run_steps"`
	RunGroupSize     int     `json:"run_group_size"`
	RunPrompts       int     `json:"run_prompts_per_step"`
	StepS            float64 `json:"run_step_s"`
	TrainS           float64 `json:"run_train_s"`
	DataWaitFrac     float64 `json:"run_data_wait_frac"`
	TransportFrac    float64 `json:"run_transport_frac"`
	StreamOverheadMs float64 `json:"stream_overhead_ms_per_step"` // (encode+publish+decode) × prompts_per_step from the stream bench
	OverheadPctTrain float64 `json:"stream_overhead_pct_of_train_step"`
}

// BenchTransport runs both measurements on the rl settings of a recipe (its first stage run as rl).
func BenchTransport(ctx context.Context, config string, sets []string, groups, steps int) (TransportBenchResult, error) {
	base := []string{"run.progress=off", "run.plots=false", "run.tensorboard=false", "rl.eval_tasks=0", "rl.beta=0",
		"train.steps=" + fmt.Sprint(steps), "schedule.warmup_steps=1"}
	cfg, err := configs.Load(config, append(base, sets...))
	if err != nil {
		return TransportBenchResult{}, err
	}
	st := cfg.Stages[0]
	if st.Kind != configs.KindRL {
		cfg, err = configs.Load(config, append(append(base, "stages."+st.Name+".kind=rl"), sets...))
		if err != nil {
			return TransportBenchResult{}, err
		}
		st = cfg.Stages[0]
	}
	rc := st.RL
	res := TransportBenchResult{Config: cfg.Name, RunSteps: steps, RunGroupSize: rc.GroupSize, RunPrompts: rc.PromptsPerStep}
	res.Stream, err = BenchStream(ctx, StreamOptions{Model: cfg.Model, Groups: groups, GroupSize: rc.GroupSize,
		PromptTokens: 40, CompletionTokens: 100, TopK: 50})
	if err != nil {
		return res, err
	}
	dir, err := os.MkdirTemp("", "sparrow-bench-run")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	if err := trainer.Execute(ctx, cfg, trainer.Options{Dir: dir, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}); err != nil {
		return res, fmt.Errorf("bench transport: full run: %w", err)
	}
	recs, err := trainer.ReadMetrics(filepath.Join(dir, "metrics.jsonl"))
	if err != nil {
		return res, err
	}
	var n, wait, trans, step, train float64
	for _, r := range recs {
		if _, ok := r.Values["bus/data_wait_frac"]; !ok || r.Step == 1 { // step 1 includes start-up
			continue
		}
		n++
		wait += r.Values["bus/data_wait_frac"]
		trans += r.Values["bus/transport_frac"]
		step += r.Values["timing_s/rollout"] + r.Values["timing_s/train"]
		train += r.Values["timing_s/train"]
	}
	if n == 0 {
		return res, fmt.Errorf("bench transport: the run logged no bus metrics after step 1 (steps %d)", steps)
	}
	res.DataWaitFrac, res.TransportFrac, res.StepS, res.TrainS = wait/n, trans/n, step/n, train/n
	s := res.Stream
	res.StreamOverheadMs = (s.EncodeMs + s.PublishMs + s.DecodeMs) * float64(rc.PromptsPerStep)
	res.OverheadPctTrain = 100 * res.StreamOverheadMs / 1e3 / math.Max(res.TrainS, 1e-9)
	return res, nil
}

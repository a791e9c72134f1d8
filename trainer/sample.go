// sample.go: `trainer sample`. SampleEpisodes loads a checkpoint and samples completions of one prompt with
// the rollout engine as an rl stage's workers do (rollout.GroupSampler, the policy's attention from
// CheckpointAttention): a held-out task of a family, graded by its verifier, or a free prompt rendered as a
// user turn. The episodes come back as a RolloutGroup, the shape of rollouts.jsonl's train lines.

package trainer

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/sparrow-rl/sparrow/checkpoints"
	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/envs"
	"github.com/sparrow-rl/sparrow/model"
	"github.com/sparrow-rl/sparrow/rollout"
)

// SampleOptions says what SampleEpisodes samples.
type SampleOptions struct {
	Checkpoint string
	Config     *configs.Config // its seed draws the task and the samples
	// Stage gives the rl section: env_params and reward options, max_new_tokens, temperature, top_p, top_k.
	Stage configs.Stage
	// Env names a task family: its Task-th held-out task (in the order evaluations draw them) is sampled and
	// graded. Prompt, instead, is a free prompt (not graded). Exactly one of them is set.
	Env    string
	Task   int
	Prompt string
	N      int // completions
	// Greedy decodes with temperature 0 (every completion is the same); else Temperature when it is > 0,
	// else the stage's rl.temperature.
	Greedy      bool
	Temperature float64
}

// SampleEpisodes samples o.N completions of one prompt from the checkpoint's policy (see SampleOptions).
func SampleEpisodes(ctx context.Context, o SampleOptions) (*RolloutGroup, error) {
	if (o.Env == "") == (o.Prompt == "") {
		return nil, errors.New("sample: give a task family (--env) or a prompt (--prompt), not both")
	}
	if o.N <= 0 {
		return nil, fmt.Errorf("sample: --n must be > 0, got %d", o.N)
	}
	if o.Task < 0 {
		return nil, fmt.Errorf("sample: --task must be >= 0, got %d", o.Task)
	}
	ck, err := checkpoints.Load(o.Checkpoint, checkpoints.LoadOptions{WeightsOnly: true})
	if err != nil {
		return nil, fmt.Errorf("sample: %w", err)
	}
	p, err := ck.ToParams()
	if err != nil {
		return nil, fmt.Errorf("sample: %w", err)
	}
	attention, _, err := CheckpointAttention(o.Checkpoint)
	if err != nil {
		return nil, fmt.Errorf("sample: the attention of checkpoint %s: %w", o.Checkpoint, err)
	}
	tok, err := data.NewTokenizer(p.Config.VocabSize)
	if err != nil {
		return nil, fmt.Errorf("sample: %w", err)
	}
	rc := o.Stage.RL
	var fam envs.Family = freePrompt{}
	task := envs.Task{ID: "prompt", Family: freePrompt{}.Name(), Prompt: o.Prompt}
	if o.Env != "" {
		st := o.Stage
		st.RL.Env = o.Env
		if fam, err = envs.New(o.Env, familyOptions(st)); err != nil {
			return nil, fmt.Errorf("sample --env %s: %w", o.Env, err)
		}
		tasks, _ := envs.EvalTasks(fam, labeledRNG(o.Config.Seed, "eval/"+o.Env, 2), data.SplitHeldOut, o.Task+1)
		task = tasks[o.Task]
	}
	sp := rollout.SamplingParams{Temperature: rc.Temperature, TopP: rc.TopP, TopK: rc.TopK}
	switch {
	case o.Greedy:
		sp.Temperature = 0
	case o.Temperature > 0:
		sp.Temperature = o.Temperature
	}
	gs := rollout.NewGroupSampler(model.NewEngine(p), tok, fam, "sample",
		rollout.SamplerConfig{Params: sp, GroupSize: o.N, MaxNewTokens: rc.MaxNewTokens, Sparse: attention == configs.AttentionSparse,
			DecodeBatch: rc.DecodeBatch})
	g, err := gs.Sample(ctx, task, "sample-"+task.ID, ck.State.PolicyVersion, labeledRNG(o.Config.Seed, "sample/"+task.ID, 4))
	if err != nil {
		return nil, fmt.Errorf("sample: %w", err)
	}
	out := rolloutGroup(tok, RolloutKindSample, g, &task, nil)
	out.Stage, out.Step = ck.State.Stage, ck.State.StageSteps
	if o.Env == "" {
		out.Env = ""
		for i := range out.Completions {
			out.Completions[i].RewardParts = nil // not graded
		}
		return &out, nil
	}
	for i := range out.Completions {
		ok := g.Trajectories[i].RewardParts["correct"] == 1
		out.Completions[i].Correct = &ok
	}
	return &out, nil
}

// freePrompt is the family of a free prompt: it grades nothing.
type freePrompt struct{}

func (freePrompt) Name() string                            { return "prompt" }
func (freePrompt) Sample(*rand.Rand, data.Split) envs.Task { return envs.Task{} }
func (freePrompt) Verify(envs.Task, string, string) envs.Reward {
	return envs.Reward{Parts: map[string]float64{}}
}
func (freePrompt) Solution(envs.Task) (string, string) { return "", "" }

// rollout_test.go: `trainer bench rollout` (rollout.go) on the tiny model with a small rl stage: the result
// describes the step's groups and its derived rates agree with its counts; an unknown stage is refused.

package bench

import (
	"math"
	"strings"
	"testing"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/internal/kernels"
)

func rlTinyConfig(t *testing.T) *configs.Config {
	t.Helper()
	cfg, err := configs.Load("tiny", []string{"run.progress=off", "run.plots=false", "train.steps=1", "schedule.warmup_steps=1",
		"rl.env=math", "rl.env_params={digits: \"1\"}", "rl.group_size=4", "rl.prompts_per_step=2",
		"rl.max_new_tokens=12", "rl.max_prompt_tokens=32", "rl.eval_tasks=0", "rl.eval_every=0", "rl.beta=0",
		"stages.pretrain.kind=rl", "stages.pretrain.name=rl_math"})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestBenchRolloutTiny(t *testing.T) {
	cfg := rlTinyConfig(t)
	res, err := BenchRollout(cfg, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if res.Config != cfg.Name || res.Checkpoint != "" || res.Groups != 2 || res.GroupSize != 4 || res.Workers != cfg.Stages[0].RL.Workers {
		t.Fatalf("setup fields %+v", res)
	}
	if res.CompletionTokens <= 0 || res.CompletionTokens > 2*4*12 {
		t.Fatalf("completion tokens %d, want 1 … %d", res.CompletionTokens, 2*4*12)
	}
	near := func(name string, got, want float64) {
		if math.Abs(got-want) > 1e-9*math.Abs(want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	near("mean_completion_length", res.MeanLength, float64(res.CompletionTokens)/8)
	near("tokens_per_s", res.TokensPerS, float64(res.CompletionTokens)/res.RolloutSeconds)
	near("groups_per_s", res.GroupsPerS, 2/res.RolloutSeconds)
	for k, v := range map[string]float64{"rollout_s": res.RolloutSeconds, "learner_step_s": res.LearnerStepS, "learner_tokens_per_s": res.LearnerTokensPerS} {
		if !(v > 0) || math.IsInf(v, 0) {
			t.Errorf("%s = %v, want positive and finite", k, v)
		}
	}
	// The learner processes rows × padded length = groups·G·(max_prompt_tokens + max_new_tokens) tokens.
	near("learner_tokens_per_s", res.LearnerTokensPerS, float64(2*4*(32+12))/res.LearnerStepS)
	if res.Backend != kernels.Backend() {
		t.Errorf("backend %q", res.Backend)
	}
	if _, err := BenchRollout(cfg, "no-such-stage", ""); err == nil || !strings.Contains(err.Error(), `no rl stage "no-such-stage"`) {
		t.Errorf("unknown stage: error %v", err)
	}
}

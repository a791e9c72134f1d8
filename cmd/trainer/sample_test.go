// Tests of `trainer sample` on the checkpoint of a 1-step tiny rl run: N episodes printed readably for a
// held-out task and for a free prompt, --json parses as a rollouts.jsonl-shaped record, bad flags are refused.

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/trainer"
)

// tinyRLRun runs a 1-step tiny rl run and returns its run directory.
func tinyRLRun(t *testing.T) string {
	t.Helper()
	cfg, err := configs.Load("tiny", []string{"run.progress=off", "run.plots=false", "run.tensorboard=false", "train.steps=1",
		"schedule.warmup_steps=1", "rl.env=math", "rl.env_params={digits: \"1\"}", "rl.group_size=2", "rl.prompts_per_step=1",
		"rl.max_new_tokens=12", "rl.max_prompt_tokens=32", "rl.eval_tasks=0", "rl.beta=0", "rl.bus.transport=inproc",
		"stages.pretrain.kind=rl", "stages.pretrain.name=rl_math"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := trainer.Execute(context.Background(), cfg, trainer.Options{Dir: dir, Log: quietLogger()}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestSampleCmd(t *testing.T) {
	run := tinyRLRun(t)
	ckpts := filepath.Join(run, "checkpoints")
	cases := []struct {
		name    string
		args    []string
		wantErr string
		check   func(t *testing.T, out string)
	}{
		{name: "env", args: []string{"--env", "math", "--n", "3"}, check: func(t *testing.T, out string) {
			for _, want := range []string{"stage rl_math, step 1, policy version 1", "of math, reference answer", "prompt:\n", "episode 3/3", "reasoning:\n", "reward "} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			if got := strings.Count(out, "── episode "); got != 3 {
				t.Errorf("%d episodes printed, want 3:\n%s", got, out)
			}
			if !strings.Contains(out, ", correct\n") && !strings.Contains(out, ", wrong\n") {
				t.Errorf("no correctness printed:\n%s", out)
			}
		}},
		{name: "prompt greedy", args: []string{"--prompt", "What is 2+2?", "--n", "2", "--greedy"}, check: func(t *testing.T, out string) {
			if !strings.Contains(out, "prompt:\n  What is 2+2?\n") || strings.Count(out, "── episode ") != 2 {
				t.Errorf("want the prompt and 2 episodes:\n%s", out)
			}
			if strings.Contains(out, "reward") {
				t.Errorf("a free prompt is not graded:\n%s", out)
			}
		}},
		{name: "json", args: []string{"--env", "math", "--n", "2", "--temperature", "0.7", "--json"}, check: func(t *testing.T, out string) {
			var g trainer.RolloutGroup
			if err := json.Unmarshal([]byte(out), &g); err != nil {
				t.Fatalf("--json printed %q: %v", out, err)
			}
			if g.Kind != trainer.RolloutKindSample || g.Env != "math" || g.Prompt == "" || g.Answer == "" || len(g.Completions) != 2 {
				t.Errorf("record %+v: want kind sample, env math, the task and 2 completions", g)
			}
			for _, c := range g.Completions {
				if c.Correct == nil || len(c.Tokens) != c.Length {
					t.Errorf("completion %+v: want correct and one token per position", c)
				}
			}
		}},
		{name: "neither env nor prompt", args: []string{"--n", "2"}, wantErr: "give --env NAME or --prompt TEXT"},
		{name: "greedy and temperature", args: []string{"--env", "math", "--greedy", "--temperature", "1"}, wantErr: "exclude each other"},
		{name: "n = 0", args: []string{"--env", "math", "--n", "0"}, wantErr: "--n must be > 0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := newRootCmd()
			var out, errw bytes.Buffer
			root.SetOut(&out)
			root.SetErr(&errw)
			root.SetArgs(append([]string{"sample", "--checkpoint", ckpts}, tc.args...))
			err := root.Execute()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("sample: %v\n%s", err, errw.String())
			}
			tc.check(t, out.String())
		})
	}
}

func TestReadable(t *testing.T) {
	cases := []struct{ in, want string }{
		{"12+7</think>19", "12+7</think>19"},
		{"a\nb\tc", "a\nb\tc"},
		{"é\xc3", `é\xc3`},
		{"\x1b[2J", `\u001b[2J`},
		{"", ""},
	}
	for _, tc := range cases {
		if got := readable(tc.in); got != tc.want {
			t.Errorf("readable(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// Tests of `trainer eval --env` on a checkpoint inside a run directory, whose resolved config.yaml gives every
// stage its own copy of every section: a top-level --set of a stage section must still reach the evaluated
// stage.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"testing"

	"github.com/sparrow-rl/sparrow/configs"
)

func TestEvalSetReachesResolvedStage(t *testing.T) {
	run := t.TempDir()
	cfg, err := configs.Load("math", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.WriteResolved(filepath.Join(run, "config.yaml")); err != nil {
		t.Fatal(err)
	}
	ckpt := saveTinyCheckpoint(t, filepath.Join(run, "checkpoints"), 10)
	samples := filepath.Join(t.TempDir(), "samples.jsonl")
	root := newRootCmd()
	var out, errw bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errw)
	root.SetArgs([]string{"eval", "--checkpoint", ckpt, "--env", "math", "--n", "6", "--k", "0", "--samples", samples,
		"--set", `rl.env_params={"digits":"1","ops":"+"}`, "--set", "rl.max_new_tokens=4"})
	if err := root.Execute(); err != nil {
		t.Fatalf("eval: %v\n%s", err, errw.String())
	}
	var res struct{ N, Distinct int }
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || res.N != 6 {
		t.Fatalf("eval printed %q (%v)", out.String(), err)
	}
	f, err := os.Open(samples)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	oneDigit := regexp.MustCompile(`^\d\+\d=\?$`)
	n := 0
	for sc := bufio.NewScanner(f); sc.Scan(); n++ {
		var s struct{ Prompt, Completion string }
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			t.Fatal(err)
		}
		if !oneDigit.MatchString(s.Prompt) {
			t.Errorf("prompt %q: the --set rl.env_params did not reach the stage (recipe: 3 digits, + - *)", s.Prompt)
		}
		if len(s.Completion) > 4*4 { // 4 tokens of at most 4 bytes
			t.Errorf("completion %q is longer than rl.max_new_tokens=4 allows", s.Completion)
		}
	}
	if n != 6 {
		t.Errorf("%d samples, want 6", n)
	}
}

func TestStageSets(t *testing.T) {
	got := stageSets([]string{"rl.env_params={}", "seed=3", "model.hidden_size=64", "data.held_out=0.1", "stages.x.train.steps=2"}, "rl_math")
	want := []string{"stages.rl_math.rl.env_params={}", "stages.rl_math.data.held_out=0.1"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("stageSets = %q, want %q", got, want)
	}
}

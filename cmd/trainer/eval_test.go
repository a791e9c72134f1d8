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
	"strings"
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

// TestEvalTextFormat: a checkpoint whose stage was pre-trained on a family's text corpus is prompted in that
// format ("<｜User｜>…<｜Assistant｜><think>" as text, not the chat encoding's special ids); pass@k, which samples
// through the chat-format rollout engine, is refused with the reason.
func TestEvalTextFormat(t *testing.T) {
	// An sft stage without data.format trains chat documents: its checkpoint samples pass@k as usual.
	for _, kind := range []string{"pretrain", "sft"} {
		run := t.TempDir()
		yaml := filepath.Join(run, "needle.yaml")
		if err := os.WriteFile(yaml, []byte("name: needle\ndata: {source: synthetic, generator: needle, params: {length: \"64\"}}\n"+
			"stages: [{name: pretrain, kind: "+kind+"}]\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := configs.Load(yaml, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := cfg.WriteResolved(filepath.Join(run, "config.yaml")); err != nil {
			t.Fatal(err)
		}
		ckpt := saveTinyCheckpoint(t, filepath.Join(run, "checkpoints"), 10)
		eval := func(k string) (string, error) {
			root := newRootCmd()
			var out, errw bytes.Buffer
			root.SetOut(&out)
			root.SetErr(&errw)
			root.SetArgs([]string{"eval", "--checkpoint", ckpt, "--env", "needle", "--n", "2", "--k", k,
				"--set", `rl.env_params={"length":"64"}`, "--set", "rl.max_new_tokens=8"})
			err := root.Execute()
			return out.String(), err
		}
		_, err = eval("2")
		if text := kind == "pretrain"; text != (err != nil && strings.Contains(err.Error(), "text format")) {
			t.Errorf("%s: pass@k err %v, want the text format named exactly for the text-format stage", kind, err)
		}
		out, err := eval("0")
		if err != nil {
			t.Fatal(err)
		}
		var res struct{ N int }
		if err := json.Unmarshal([]byte(out), &res); err != nil || res.N != 2 {
			t.Fatalf("%s: eval printed %q (%v)", kind, out, err)
		}
	}
}

// TestEvalSeveralFamilies: --env math,logic prints one JSON object with each family's accuracy and
// pass@k, each family measured with its own knobs from a mixture's env_params.
func TestEvalSeveralFamilies(t *testing.T) {
	run := t.TempDir()
	cfg, err := configs.Load("math", []string{"rl.env=mix", `rl.env_params={"families":"math:1,logic:1","math.digits":"1","logic.sort_len":"3"}`})
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.WriteResolved(filepath.Join(run, "config.yaml")); err != nil {
		t.Fatal(err)
	}
	ckpt := saveTinyCheckpoint(t, filepath.Join(run, "checkpoints"), 10)
	root := newRootCmd()
	var out, errw bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errw)
	root.SetArgs([]string{"eval", "--checkpoint", ckpt, "--env", "math,logic", "--n", "3", "--k", "2", "--set", "rl.max_new_tokens=4"})
	if err := root.Execute(); err != nil {
		t.Fatalf("eval: %v\n%s", err, errw.String())
	}
	var res struct {
		N        int
		Accuracy map[string]float64
		PassAtK  map[string]float64 `json:"pass_at_k"`
		Families map[string]struct {
			Env      string
			Distinct int
		}
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("eval printed %q: %v", out.String(), err)
	}
	for _, env := range []string{"math", "logic"} {
		if _, ok := res.Accuracy[env]; !ok {
			t.Errorf("no accuracy of %s in %s", env, out.String())
		}
		if _, ok := res.PassAtK[env]; !ok {
			t.Errorf("no pass@k of %s", env)
		}
		if f := res.Families[env]; f.Env != env || f.Distinct == 0 {
			t.Errorf("family %s: %+v", env, f)
		}
	}
	root = newRootCmd()
	root.SetOut(&out)
	root.SetErr(&errw)
	root.SetArgs([]string{"eval", "--checkpoint", ckpt, "--env", "math,,logic"})
	if err := root.Execute(); err == nil || !strings.Contains(err.Error(), "empty family name") {
		t.Fatalf("--env math,,logic: %v", err)
	}
}

// TestRolloutDistillTeachers: `trainer rollout` serving a distill stage loads its teachers before it
// connects: stage:<name> teachers need --run-dir, and a run directory without the stage's final checkpoint
// is refused naming it.
func TestRolloutDistillTeachers(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "pass the run directory (trainer rollout --run-dir)"},
		{[]string{"--run-dir", t.TempDir()}, "stage:rl_code: no final checkpoint rl_code-30"},
	} {
		root := newRootCmd()
		var out, errw bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&errw)
		root.SetArgs(append([]string{"rollout", "specialists", "--stage", "distill", "--nats", "nats://127.0.0.1:1"}, c.args...))
		if err := root.Execute(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error with %q", c.args, err, c.want)
		}
	}
}

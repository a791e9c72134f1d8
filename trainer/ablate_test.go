// Tests of ablation files, command-line arms, and RunAblation on the tiny
// recipe: two arms of two steps each, their run directories and comparison.

package trainer

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/sparrow-rl/sparrow/configs"
)

func TestParseArm(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Arm
		err  string
	}{
		{"base", Arm{Name: "base"}, ""},
		{"k3=stages.rl_math.rl.kl=k3", Arm{Name: "k3", Set: []string{"stages.rl_math.rl.kl=k3"}}, ""},
		{"x=--set,a.b=1, c=2", Arm{Name: "x", Set: []string{"a.b=1", "c=2"}}, ""},
		{"=a=1", Arm{}, "NAME="},
		{"x=a", Arm{}, "not key=value"},
	} {
		got, err := ParseArm(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseArm(%q) error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseArm(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestLoadAblation(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "base.yaml"), []byte("name: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, text string
		base, err  string
	}{
		{"relative base", "base: base.yaml\narms: [{name: a}, {name: b, set: [seed=2]}]\n", filepath.Join(dir, "base.yaml"), ""},
		{"recipe base", "base: tiny\narms: [{name: a}]\n", "tiny", ""},
		{"no base", "arms: [{name: a}]\n", "", `key "base"`},
		{"no arms", "base: tiny\narms: []\n", "", `key "arms"`},
		{"twice", "base: tiny\narms: [{name: a}, {name: a}]\n", "", "appears twice"},
		{"bad name", "base: tiny\narms: [{name: a/b}]\n", "", "arms[0].name"},
		{"unknown key", "base: tiny\nbogus: 1\narms: [{name: a}]\n", "", "bogus"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, "abl.yaml")
			if err := os.WriteFile(p, []byte(tc.text), 0o644); err != nil {
				t.Fatal(err)
			}
			if !IsAblationFile(p) && strings.Contains(tc.text, "arms") {
				t.Errorf("IsAblationFile = false")
			}
			a, err := LoadAblation(p)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), p) {
					t.Errorf("error %v, want one naming %s and %q", err, p, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if a.Base != tc.base || a.Name != "abl" {
				t.Errorf("base %q name %q, want %q abl", a.Base, a.Name, tc.base)
			}
		})
	}
	if IsAblationFile(filepath.Join(dir, "base.yaml")) {
		t.Error("a config is not an ablation file")
	}
}

func TestRunAblationTiny(t *testing.T) {
	if testing.Short() {
		t.Skip("trains two tiny runs")
	}
	out := t.TempDir()
	a := &Ablation{
		Name: "tiny_lr", Base: "tiny",
		Set:  []string{"train.steps=2", "train.log_every=1", "train.eval_every=2", "checkpoint.every=2"},
		Last: 2,
		Arms: []Arm{{Name: "lr_low", Set: []string{"optimizer.lr=1e-4"}}, {Name: "lr_high", Set: []string{"optimizer.lr=3e-3"}}},
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cmp, err := RunAblation(context.Background(), a, AblateOptions{Out: out, Parallel: 2, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	for _, arm := range a.Arms {
		for _, f := range []string{MetricsFile, "config.yaml"} {
			if _, err := os.Stat(filepath.Join(out, arm.Name, f)); err != nil {
				t.Errorf("arm %s: %v", arm.Name, err)
			}
		}
	}
	if len(cmp.Runs) != 2 || cmp.Runs[0].Name != "lr_low" || cmp.Runs[1].Name != "lr_high" {
		t.Errorf("runs %+v", cmp.Runs)
	}
	var lr *ConfigDiff
	for i := range cmp.Config {
		if strings.HasSuffix(cmp.Config[i].Key, "optimizer.lr") {
			lr = &cmp.Config[i]
		}
	}
	if lr == nil || lr.Values[0] == lr.Values[1] {
		t.Errorf("config diff %+v lacks optimizer.lr", cmp.Config)
	}
	var loss *MetricRow
	for i := range cmp.Metrics {
		if cmp.Metrics[i].Metric == "loss" {
			loss = &cmp.Metrics[i]
		}
	}
	if loss == nil || loss.Runs[0] == nil || loss.Runs[1] == nil || loss.Runs[0].FinalStep != 2 {
		t.Fatalf("loss row %+v", loss)
	}
	txt, err := os.ReadFile(filepath.Join(out, CompareText))
	if err != nil || !strings.Contains(string(txt), "lr_high") || !strings.Contains(string(txt), "optimizer.lr") {
		t.Errorf("compare.txt: %v\n%s", err, txt)
	}
	data, err := os.ReadFile(filepath.Join(out, CompareJSON))
	if err != nil {
		t.Fatal(err)
	}
	var back Comparison
	if err := json.Unmarshal(data, &back); err != nil || len(back.Metrics) != len(cmp.Metrics) {
		t.Errorf("compare.json: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, "ablation.json")); err != nil {
		t.Error(err)
	}
	// A config error in any arm stops the grid before anything runs.
	bad := *a
	bad.Arms = []Arm{{Name: "ok"}, {Name: "broken", Set: []string{"optimizer.nope=1"}}}
	out2 := filepath.Join(t.TempDir(), "grid")
	if _, err := RunAblation(context.Background(), &bad, AblateOptions{Out: out2, Log: log}); err == nil || !strings.Contains(err.Error(), "arm broken") {
		t.Errorf("bad arm: %v", err)
	}
	if _, err := os.Stat(out2); !os.IsNotExist(err) {
		t.Errorf("grid directory created before the configs were checked: %v", err)
	}
}

// TestShippedAblations loads every ablation file of configs/ablations and the config of each of its arms.
func TestShippedAblations(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "configs", "ablations", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no ablation files: %v", err)
	}
	// The README's ablation rows, arm by arm.
	shippedArms := map[string]string{
		"grpo_math/base":                  "beta 0.01 prompts 8 mini 2 steps 30 eval 10 lr 0.0001 kl unbiased delta 0.5 keep_routing true",
		"grpo_math/k3":                    "beta 0.01 prompts 8 mini 2 steps 30 eval 10 lr 0.0001 kl k3 delta 0.5 keep_routing true",
		"grpo_math/opsm_off":              "beta 0.01 prompts 8 mini 2 steps 30 eval 10 lr 0.0001 kl unbiased delta 0 keep_routing true",
		"grpo_math/keep_routing_off":      "beta 0.01 prompts 8 mini 2 steps 30 eval 10 lr 0.0001 kl unbiased delta 0.5 keep_routing false",
		"grpo_logic/base":                 "beta 0.01 prompts 8 mini 2 steps 60 eval 20 lr 0.0001 kl unbiased delta 0.5 keep_routing true",
		"grpo_logic/k3":                   "beta 0.01 prompts 8 mini 2 steps 60 eval 20 lr 0.0001 kl k3 delta 0.5 keep_routing true",
		"grpo_logic/opsm_off":             "beta 0.01 prompts 8 mini 2 steps 60 eval 20 lr 0.0001 kl unbiased delta 0 keep_routing true",
		"grpo_logic/keep_routing_off":     "beta 0.01 prompts 8 mini 2 steps 60 eval 20 lr 0.0001 kl unbiased delta 0.5 keep_routing false",
		"grpo_logic_200/base":             "beta 0.01 prompts 4 mini 2 steps 200 eval 40 lr 0.0001 kl unbiased delta 0.5 keep_routing true",
		"grpo_logic_200/k3":               "beta 0.01 prompts 4 mini 2 steps 200 eval 40 lr 0.0001 kl k3 delta 0.5 keep_routing true",
		"grpo_logic_200/keep_routing_off": "beta 0.01 prompts 4 mini 2 steps 200 eval 40 lr 0.0001 kl unbiased delta 0.5 keep_routing false",
		"opsm_logic/opsm_on":              "beta 0.01 prompts 4 mini 4 steps 100 eval 25 lr 0.001 kl unbiased delta 0.05 keep_routing true",
		"opsm_logic/opsm_off":             "beta 0.01 prompts 4 mini 4 steps 100 eval 25 lr 0.001 kl unbiased delta 0 keep_routing true",
		"agent/base":                      "beta 0 prompts 8 mini 4 steps 20 eval 8 lr 0.0002 kl unbiased delta 0.5 keep_routing true",
		"agent/results_in_loss":           "beta 0 prompts 8 mini 4 steps 20 eval 8 lr 0.0002 kl unbiased delta 0.5 keep_routing true results_in_loss",
		"agent/keep_routing_off":          "beta 0 prompts 8 mini 4 steps 20 eval 8 lr 0.0002 kl unbiased delta 0.5 keep_routing false",
		"agent/bf16":                      "beta 0 prompts 8 mini 4 steps 20 eval 8 lr 0.0002 kl unbiased delta 0.5 keep_routing true rollout bfloat16",
		"agent/bf16_keep_routing_off":     "beta 0 prompts 8 mini 4 steps 20 eval 8 lr 0.0002 kl unbiased delta 0.5 keep_routing false rollout bfloat16",
	}
	n := 0
	for _, f := range files {
		if !IsAblationFile(f) {
			if _, err := configs.Load(f, nil); err != nil { // a base config
				t.Errorf("%s: %v", f, err)
			}
			continue
		}
		n++
		a, err := LoadAblation(f)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		for _, arm := range a.Arms {
			cfg, err := configs.Load(a.Base, append(append([]string{}, a.Set...), arm.Set...))
			if err != nil {
				t.Errorf("%s arm %s: %v", f, arm.Name, err)
				continue
			}
			if len(cfg.Stages) != 1 || cfg.Stages[0].Kind != "rl" || cfg.Stages[0].InitFrom == "" {
				t.Errorf("%s arm %s: want one rl stage with init_from, got %v", f, arm.Name, cfg.StageNames())
				continue
			}
			st := cfg.Stages[0]
			got := fmt.Sprintf("beta %g prompts %d mini %d steps %d eval %d lr %g kl %s delta %g keep_routing %v",
				st.RL.Beta, st.RL.PromptsPerStep, st.RL.MiniBatches, st.Train.Steps, st.RL.EvalEvery, st.Optimizer.LR,
				st.RL.KL, st.RL.Delta, st.RL.KeepRouting)
			if st.RL.ToolResultsInLoss {
				got += " results_in_loss"
			}
			if st.RL.RolloutDtype != "" && st.RL.RolloutDtype != "float32" {
				got += " rollout " + st.RL.RolloutDtype
			}
			if want := shippedArms[a.Name+"/"+arm.Name]; got != want {
				t.Errorf("%s arm %s:\n got %s\nwant %s", f, arm.Name, got, want)
			}
			delete(shippedArms, a.Name+"/"+arm.Name)
		}
	}
	if n < 4 {
		t.Errorf("%d ablation files, want 4", n)
	}
	for k := range shippedArms {
		t.Errorf("arm %s not shipped", k)
	}
}

// Tests of `trainer eval --env` on sparse-attention checkpoints: a dsa_sparse checkpoint and an rl checkpoint
// of a sparse policy decode with DeepSeek Sparse Attention (the same completions for the same weights, others
// than dense decoding's), a pretrain checkpoint densely, and the JSON says which ("attention").
package trainer

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/sparrow-rl/sparrow/checkpoints"
	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/model"
)

func TestEvaluateTasksAttention(t *testing.T) {
	cfg := rlTinyConfig(t, "model.index_topk=4", "rl.max_new_tokens=12")
	st := cfg.Stages[0]
	p := model.NewParams(cfg.Model)
	p.Init(5)
	save := func(name, kind, extra string) string {
		t.Helper()
		ck := &checkpoints.Checkpoint{Model: p.Config, Tensors: checkpoints.FromParams(p),
			State: checkpoints.TrainerState{Stage: strings.Split(name, "-")[0], Kind: kind, Step: 1}}
		if extra != "" {
			ck.State.Extra = map[string]json.RawMessage{attentionExtraKey: json.RawMessage(extra)}
		}
		dir, err := checkpoints.Save(t.TempDir(), name, ck)
		if err != nil {
			t.Fatal(err)
		}
		return dir
	}
	cases := []struct {
		name, kind, extra, want string
	}{
		{"pretrain-1", configs.KindPretrain, "", configs.AttentionDense},
		{"dsa_sparse-1", configs.KindDSASparse, "", configs.AttentionSparse},
		{"rl_math-1", configs.KindRL, `"sparse"`, configs.AttentionSparse},
		{"rl_math-1", configs.KindRL, `"dense"`, configs.AttentionDense},
	}
	completions := map[string][]string{} // attention → greedy completions of the first checkpoint of it
	for _, c := range cases {
		t.Run(c.kind+strings.Trim(c.extra, `"`), func(t *testing.T) {
			res, err := EvaluateTasks(save(c.name, c.kind, c.extra), cfg, st, "math", 6, 0)
			if err != nil {
				t.Fatal(err)
			}
			if res.Attention != c.want {
				t.Fatalf("attention %q, want %q", res.Attention, c.want)
			}
			b, err := json.Marshal(res)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(b), `"attention":"`+c.want+`"`) || strings.Contains(string(b), "samples") {
				t.Fatalf("JSON %s: want \"attention\":%q and no samples", b, c.want)
			}
			var got []string
			for _, s := range res.Samples {
				got = append(got, s.Completion)
			}
			if prev, ok := completions[c.want]; ok {
				if strings.Join(prev, "\x00") != strings.Join(got, "\x00") {
					t.Fatalf("the same weights decoded with %s attention gave other completions", c.want)
				}
			}
			completions[c.want] = got
		})
	}
	if strings.Join(completions[configs.AttentionDense], "\x00") == strings.Join(completions[configs.AttentionSparse], "\x00") {
		t.Fatal("sparse and dense decoding of the same weights gave the same greedy completions: the test cannot tell them apart")
	}
}

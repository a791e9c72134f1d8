// Tests of rl.keep_selection (Keep Selection, the DSA analogue of Keep Routing): off by default, refused with
// an error naming the key when the rl stage's policy is not a sparse-attention one, accepted when a
// dsa_sparse stage (or an init_from checkpoint, checked at run time) feeds the stage; and of PolicyAttention,
// which decides that from the pipeline.
package configs

import (
	"testing"
)

const dsaPipeline = `name: x
model: {index_n_heads: 2, index_head_dim: 16, index_topk: 16}
stages:
  - {name: pretrain, kind: pretrain}
  - {name: dsa_warmup, kind: dsa_warmup}
  - {name: dsa_sparse, kind: dsa_sparse}
  - {name: rl_math, kind: rl}
`

func TestKeepSelectionDefaultOff(t *testing.T) {
	c := mustParse(t, dsaPipeline)
	st, _ := c.Stage("rl_math")
	if st.RL.KeepSelection {
		t.Fatal("rl.keep_selection defaults to true, want false")
	}
	if DefaultRL().KeepSelection {
		t.Fatal("DefaultRL().KeepSelection is true, want false")
	}
}

func TestKeepSelectionValidation(t *testing.T) {
	runErrCases(t, []errCase{
		{"dense policy (pretrain only)", "stages:\n  - {name: pretrain, kind: pretrain}\n  - {name: rl_math, kind: rl, rl: {keep_selection: true}}\n", nil,
			[]string{"configs/x.yaml:3: stages[rl_math].rl.keep_selection: true needs a DeepSeek Sparse Attention policy", "stage pretrain (pretrain) trains it with dense attention"}},
		{"fresh weights", "stages:\n  - {name: rl_math, kind: rl}\n", []string{"rl.keep_selection=true"},
			[]string{"stages[rl_math].rl.keep_selection: true needs a DeepSeek Sparse Attention policy", "no stage before it"}},
		{"warm-up only (dense attention)", dsaPipeline[:len(dsaPipeline)-len("  - {name: dsa_sparse, kind: dsa_sparse}\n  - {name: rl_math, kind: rl}\n")] +
			"  - {name: rl_math, kind: rl}\n", []string{"stages.rl_math.rl.keep_selection=true"},
			[]string{"--set stages.rl_math.rl.keep_selection=true: stages[rl_math].rl.keep_selection", "stage dsa_warmup (dsa_warmup) trains it with dense attention"}},
		{"no indexer", "model: {index_n_heads: 0}\nstages:\n  - {name: s, kind: dsa_sparse}\n  - {name: rl_math, kind: rl}\n", []string{"rl.keep_selection=true"},
			[]string{"stages[rl_math].rl.keep_selection: true needs a DeepSeek Sparse Attention policy, but model.index_n_heads is 0"}},
	})
}

func TestKeepSelectionAccepted(t *testing.T) {
	cases := []struct {
		name string
		yml  string
		sets []string
	}{
		{"after dsa_sparse", dsaPipeline, []string{"rl.keep_selection=true"}},
		{"rl after rl after dsa_sparse", dsaPipeline + "  - {name: rl_logic, kind: rl, rl: {env: logic}}\n", []string{"rl.keep_selection=true"}},
		{"init_from (decided at run time)", "stages:\n  - {name: rl_math, kind: rl, init_from: ckpt/dsa_sparse-40, rl: {keep_selection: true}}\n", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := mustParse(t, c.yml, c.sets...)
			for _, st := range cfg.Stages {
				if st.Kind == KindRL && !st.RL.KeepSelection {
					t.Fatalf("stage %s: keep_selection not set", st.Name)
				}
			}
		})
	}
}

func TestPolicyAttention(t *testing.T) {
	cases := []struct {
		name       string
		yml        string
		stage      int
		attention  string
		checkpoint string
	}{
		{"fresh weights", "stages:\n  - {name: rl, kind: rl}\n", 0, AttentionDense, ""},
		{"after dsa_sparse", dsaPipeline, 3, AttentionSparse, ""},
		{"dsa_sparse itself starts dense (warm-up before it)", dsaPipeline, 2, AttentionDense, ""},
		{"rl keeps its policy's attention", dsaPipeline + "  - {name: rl2, kind: rl}\n", 4, AttentionSparse, ""},
		{"pretrain after dsa_sparse makes it dense", dsaPipeline + "  - {name: sft, kind: sft}\n  - {name: rl2, kind: rl}\n", 5, AttentionDense, ""},
		{"own init_from decides", "stages:\n  - {name: s, kind: dsa_sparse}\n  - {name: rl, kind: rl, init_from: a/b}\n", 1, "", "a/b"},
		{"init_from of an earlier rl stage decides", "stages:\n  - {name: rl, kind: rl, init_from: c/d}\n  - {name: rl2, kind: rl}\n", 1, "", "c/d"},
		{"init_from of an earlier dsa_sparse stage does not", "stages:\n  - {name: s, kind: dsa_sparse, init_from: e/f}\n  - {name: rl, kind: rl}\n", 1, AttentionSparse, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := mustParse(t, c.yml)
			att, ck, why := cfg.PolicyAttention(c.stage)
			if att != c.attention || ck != c.checkpoint || why == "" {
				t.Fatalf("PolicyAttention(%d) = %q, %q, %q; want %q, %q and a reason", c.stage, att, ck, why, c.attention, c.checkpoint)
			}
		})
	}
}

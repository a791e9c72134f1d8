// Tests of the distill section and of stage references (init_from: stage:<name>): each bad value is
// refused naming its key.

package configs

import "testing"

const branchRecipe = `
stages:
  - {name: pretrain, kind: pretrain}
  - {name: rl_a, kind: rl, init_from: "stage:pretrain"}
  - {name: rl_b, kind: rl, init_from: "stage:pretrain"}
`

func TestStageRefAndDistillErrors(t *testing.T) {
	runErrCases(t, []errCase{
		{"init_from names a missing stage", branchRecipe, []string{"stages.rl_b.init_from=stage:nope"},
			[]string{"stages[rl_b].init_from", `no stage of this recipe is called "nope"`}},
		{"init_from names a later stage", branchRecipe, []string{"stages.rl_a.init_from=stage:rl_b"},
			[]string{"stages[rl_a].init_from", "must come before this one"}},
		{"init_from names itself", branchRecipe, []string{"stages.rl_a.init_from=stage:rl_a"},
			[]string{"stages[rl_a].init_from", "must come before"}},
		{"distill without teachers", branchRecipe + "  - {name: d, kind: distill, init_from: \"stage:pretrain\"}\n", nil,
			[]string{"stages[d].distill.teachers", "required"}},
		{"distill teacher of a later stage", branchRecipe + "  - {name: d, kind: distill, distill: {teachers: {math: \"stage:e\"}}}\n  - {name: e, kind: rl}\n", nil,
			[]string{"stages[d].distill.teachers.math", "must come before"}},
		{"distill teacher of no family", branchRecipe + "  - {name: d, kind: distill, distill: {teachers: {poetry: \"stage:rl_a\"}}}\n", nil,
			[]string{"stages[d].distill.teachers.poetry", "not a task family"}},
		{"distill bad method", branchRecipe + "  - {name: d, kind: distill, distill: {method: offline, teachers: {math: \"stage:rl_a\"}}}\n", nil,
			[]string{"stages[d].distill.method"}},
		{"distill negative kl_coef", branchRecipe + "  - {name: d, kind: distill, distill: {kl_coef: -1, teachers: {math: \"stage:rl_a\"}}}\n", nil,
			[]string{"stages[d].distill.kl_coef", ">= 0"}},
		{"distill family without teacher", branchRecipe + "  - {name: d, kind: distill, rl: {env: mix, env_params: {families: \"math:1,logic:2\"}}, distill: {teachers: {math: \"stage:rl_a\"}}}\n", nil,
			[]string{"stages[d].distill.teachers", "no teacher for family logic"}},
		{"distill nothing to learn", branchRecipe + "  - {name: d, kind: distill, distill: {kl_coef: 0, teachers: {math: \"stage:rl_a\"}}}\n", nil,
			[]string{"stages[d].distill.kl_coef", "nothing to learn"}},
		{"distill unknown kl", branchRecipe + "  - {name: d, kind: distill, distill: {kl: full, teachers: {math: \"stage:rl_a\"}}}\n", nil,
			[]string{"stages[d].distill.kl", "must be one of sampled, exact, both", `"full"`}},
		{"distill exact kl with sft", branchRecipe + "  - {name: d, kind: distill, distill: {method: sft, kl: exact, teachers: {math: \"stage:rl_a\"}}}\n", nil,
			[]string{"stages[d].distill.kl", "applies to method on_policy"}},
	})
}

func TestBranchRecipeValid(t *testing.T) {
	c, err := Parse([]byte(branchRecipe+"  - {name: d, kind: distill, init_from: \"stage:pretrain\", rl: {env: mix, env_params: {families: \"math,logic\"}}, distill: {teachers: {math: \"stage:rl_a\", logic: \"stage:rl_b\"}}}\n"), "x.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if kl := c.Stages[3].Distill.KL; kl != DistillKLSampled {
		t.Fatalf("distill.kl defaults to %q, want %q", kl, DistillKLSampled)
	}
	if ref, ok := StageRef(c.Stages[3].InitFrom); !ok || ref != "pretrain" {
		t.Fatalf("StageRef(%q) = %q, %v", c.Stages[3].InitFrom, ref, ok)
	}
	if att, ck, why := c.PolicyAttention(2); att != AttentionDense || ck != "" {
		t.Fatalf("PolicyAttention of a stage branching from pretrain: %q %q (%s), want dense from the pretrain stage", att, ck, why)
	}
}

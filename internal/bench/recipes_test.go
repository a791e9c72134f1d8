package bench

import (
	"slices"
	"strings"
	"testing"

	"github.com/sparrow-rl/sparrow/configs"
)

// TestBenchRecipeIssue19 pins the embedded v32-issue19 recipe to the configuration issue 19 measured PyTorch
// on: a change to the file is a change to the published comparison.
func TestBenchRecipeIssue19(t *testing.T) {
	if got := BenchRecipes(); !slices.Contains(got, "v32-issue19") {
		t.Fatalf("BenchRecipes() = %v, want v32-issue19 among them", got)
	}
	for _, name := range []string{"v32-issue19", "v32-issue19.yaml"} {
		c, err := loadRecipe(name, nil)
		if err != nil {
			t.Fatalf("loadRecipe(%q): %v", name, err)
		}
		m := c.Model
		want := configs.DefaultModel()
		want.VocabSize, want.HiddenSize, want.NumHiddenLayers, want.FirstKDenseReplace = 300, 256, 4, 1
		want.NumAttentionHeads, want.QLoraRank, want.KVLoraRank = 4, 128, 64
		want.QKNopeHeadDim, want.QKRopeHeadDim, want.VHeadDim = 32, 16, 32
		want.IntermediateSize, want.MoEIntermediateSize = 768, 256
		want.NRoutedExperts, want.NGroup, want.TopkGroup, want.NumExpertsPerTok, want.NSharedExperts = 8, 2, 1, 2, 1
		want.IndexNHeads, want.IndexHeadDim, want.IndexTopk = 4, 32, 64
		if m != want {
			t.Errorf("%s: model\n got %+v\nwant %+v", name, m, want)
		}
		if tr := c.Stages[0].Train; tr.BatchSize != 16 || tr.SeqLen != 256 {
			t.Errorf("%s: batch %d × %d, want 16 × 256", name, tr.BatchSize, tr.SeqLen)
		}
	}
	// a training recipe still loads by name, and an unknown name lists the bench recipes too
	if _, err := loadRecipe("tiny", nil); err != nil {
		t.Errorf("loadRecipe(tiny): %v", err)
	}
	if _, err := loadRecipe("no-such-recipe", nil); err == nil || !strings.Contains(err.Error(), "v32-issue19") {
		t.Errorf("loadRecipe(no-such-recipe) = %v, want an error listing the bench recipes", err)
	}
}

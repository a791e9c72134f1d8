// Test of `trainer merge` on checkpoints: the merged checkpoint loads, and each tensor is the merge of the
// same tensor of the inputs (package merge's arithmetic, checked by hand there).

package trainer

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/sparrow-rl/sparrow/checkpoints"
	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/merge"
	"github.com/sparrow-rl/sparrow/model"
)

// saveParams writes p as a checkpoint stage-0 under dir/checkpoints and returns its directory.
func saveParams(t *testing.T, dir, stage string, p *model.Params) string {
	t.Helper()
	ck := &checkpoints.Checkpoint{Model: p.Config, Tensors: checkpoints.FromParams(p), State: checkpoints.TrainerState{Stage: stage, Kind: "pretrain"}}
	out, err := checkpoints.SaveWith(filepath.Join(dir, "checkpoints"), checkpoints.Name(stage, 0), ck, checkpoints.SaveOptions{Stages: []string{stage}})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestMergeCheckpoints(t *testing.T) {
	cfg, err := configs.Load("tiny", nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var ps []*model.Params
	var dirs []string
	for i, name := range []string{"base", "a", "b"} {
		p := model.NewParams(cfg.Model)
		p.Init(uint64(10 + i))
		ps = append(ps, p)
		dirs = append(dirs, saveParams(t, filepath.Join(dir, name), name, p))
	}
	for _, m := range merge.Methods {
		o := merge.Options{Lambda: 0.7, Density: 0.5}
		out, err := Merge(MergeOptions{Method: m, Base: dirs[0], Specialists: dirs[1:], Options: o, Out: filepath.Join(dir, "out")})
		if err != nil {
			t.Fatal(err)
		}
		if filepath.Base(out) != "merge_"+string(m)+"-0" {
			t.Fatalf("written to %s", out)
		}
		got := loadWeights(t, out)
		for k := range got.Data {
			want, err := merge.Tensor(m, ps[0].Data[k], [][]float32{ps[1].Data[k], ps[2].Data[k]}, o)
			if err != nil {
				t.Fatal(err)
			}
			for j := range want {
				if got.Data[k][j] != want[j] {
					t.Fatalf("%s: tensor %s[%d] = %v, want %v", m, got.Specs[k].Name, j, got.Data[k][j], want[j])
				}
			}
		}
	}
	// another architecture is refused
	big := cfg.Model
	big.HiddenSize = 64
	p := model.NewParams(big)
	p.Init(1)
	odd := saveParams(t, filepath.Join(dir, "odd"), "odd", p)
	if _, err := Merge(MergeOptions{Method: merge.Average, Base: dirs[0], Specialists: []string{dirs[1], odd}, Out: filepath.Join(dir, "x")}); err == nil || !strings.Contains(err.Error(), "another model configuration") {
		t.Fatalf("got %v", err)
	}
}

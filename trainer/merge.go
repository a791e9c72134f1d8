// merge.go: `trainer merge`, weight-space merges of specialists that share a base (package merge: plain
// average, task arithmetic, TIES), written as a normal checkpoint that `trainer eval` and init_from read.
// The baselines an on-policy distillation of the same specialists must beat (issue: specialists merged
// into one model).

package trainer

import (
	"fmt"
	"path/filepath"

	"github.com/sparrow-rl/sparrow/checkpoints"
	"github.com/sparrow-rl/sparrow/merge"
	"github.com/sparrow-rl/sparrow/model"
)

// MergeOptions say what to merge and where to write it.
type MergeOptions struct {
	Method      merge.Method
	Base        string   // the shared base checkpoint (task vectors are taken from it; Average reads only its layout)
	Specialists []string // checkpoints fine-tuned from Base
	merge.Options
	// Out is a run directory: the merge is written to Out/checkpoints/merge_<method>-0 and latest.
	Out string
}

// Merge merges the specialists tensor by tensor and saves the result; it returns the checkpoint's
// directory. Checkpoints with another model configuration than the base's are refused, naming them.
func Merge(o MergeOptions) (string, error) {
	if len(o.Specialists) == 0 {
		return "", fmt.Errorf("merge: no specialist checkpoint")
	}
	base, _, err := checkpoints.LoadParams(o.Base)
	if err != nil {
		return "", fmt.Errorf("merge: base: %w", err)
	}
	models := make([]*model.Params, len(o.Specialists))
	for i, dir := range o.Specialists {
		p, _, err := checkpoints.LoadParams(dir)
		if err != nil {
			return "", fmt.Errorf("merge: specialist %s: %w", dir, err)
		}
		if p.Config != base.Config {
			return "", fmt.Errorf("merge: specialist %s has another model configuration than the base %s (merges need one architecture and vocabulary)", dir, o.Base)
		}
		models[i] = p
	}
	out := base.Clone()
	for k, spec := range out.Specs {
		xs := make([][]float32, len(models))
		for i, p := range models {
			xs[i] = p.Data[k]
		}
		merged, err := merge.Tensor(o.Method, base.Data[k], xs, o.Options)
		if err != nil {
			return "", fmt.Errorf("merge: tensor %s: %w", spec.Name, err)
		}
		copy(out.Data[k], merged)
	}
	name := "merge_" + string(o.Method)
	ck := &checkpoints.Checkpoint{Model: out.Config, Tensors: checkpoints.FromParams(out),
		State: checkpoints.TrainerState{Stage: name, Kind: "merge"}}
	dir, err := checkpoints.SaveWith(filepath.Join(o.Out, "checkpoints"), checkpoints.Name(name, 0), ck, checkpoints.SaveOptions{Stages: []string{name}})
	if err != nil {
		return "", fmt.Errorf("merge: %w", err)
	}
	return dir, nil
}

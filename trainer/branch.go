// branch.go: branching pipelines. A stage may start from the final checkpoint of any earlier stage of the
// same recipe (init_from: stage:<name>), so several specialists branch from one base and a later stage (a
// distill stage's teachers) names them. The final checkpoint of every stage some other stage names is kept
// through checkpoint pruning; resume continues the interrupted stage and loads the branch points it needs
// from disk, redoing nothing that finished.

package trainer

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/sparrow-rl/sparrow/checkpoints"
	"github.com/sparrow-rl/sparrow/configs"
)

// branchRefs returns the stages named by "stage:<name>" references of the recipe (init_from and distill
// teachers).
func branchRefs(cfg *configs.Config) map[string]bool {
	refs := map[string]bool{}
	for _, st := range cfg.Stages {
		if ref, ok := configs.StageRef(st.InitFrom); ok {
			refs[ref] = true
		}
		for _, t := range st.Distill.Teachers {
			if ref, ok := configs.StageRef(t); ok {
				refs[ref] = true
			}
		}
	}
	return refs
}

// isBranchPoint says whether checkpoint inf is the final checkpoint of a stage that another stage names:
// pruning keeps it.
func (r *Run) isBranchPoint(inf checkpoints.Info) bool {
	if !branchRefs(r.Config)[inf.Stage] {
		return false
	}
	st, ok := r.Config.Stage(inf.Stage)
	return ok && inf.Step == st.Train.Steps
}

// StageFinal resolves stage:<name> references of cfg against the run directory runDir (the final
// checkpoint of the named stage), for processes other than the learner (`trainer rollout --run-dir`).
func StageFinal(cfg *configs.Config, runDir string) func(string) (string, error) {
	r := &Run{Config: cfg, Dir: runDir}
	return r.stageFinal
}

// stageFinal returns the directory of the final checkpoint of stage name in this run (its step is the
// stage's train.steps).
func (r *Run) stageFinal(name string) (string, error) {
	st, ok := r.Config.Stage(name)
	if !ok {
		return "", fmt.Errorf("stage:%s: no stage of this recipe is called %q", name, name)
	}
	infos, err := checkpoints.List(r.CheckpointsDir())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("stage:%s: %w", name, err)
	}
	for _, inf := range infos {
		if inf.Stage == name && inf.Step == st.Train.Steps {
			return inf.Dir, nil
		}
	}
	return "", fmt.Errorf("stage:%s: no final checkpoint %s in %s (has the stage finished?)", name, checkpoints.Name(name, st.Train.Steps), r.CheckpointsDir())
}

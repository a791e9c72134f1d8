// latest.go: `latest` only moves forward. Save refuses a checkpoint that would point checkpointsDir/latest
// back — at a lower step of the stage latest names, or at a stage that comes before latest's in the
// pipeline's stage order (SaveOptions.Stages) — so that a stale writer (a paused learner that wakes up after
// another one carried the run on) can never discard the steps made since. Saving the checkpoint latest names
// again is allowed.

package checkpoints

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ErrBehindLatest marks a checkpoint older than the one checkpointsDir/latest names (CheckForward).
var ErrBehindLatest = errors.New("checkpoints: latest never moves back")

// CheckForward returns an error wrapping ErrBehindLatest when the checkpoint name is older than the one
// checkpointsDir/latest names: a lower step of the same stage, or a stage that comes before latest's in
// stages (the pipeline's stage order; nil, or a stage missing from it, leaves only the same-stage rule).
// Without a readable latest file there is nothing to compare with.
func CheckForward(checkpointsDir, name string, stages []string) error {
	stage, step, err := ParseName(name)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(filepath.Join(checkpointsDir, LatestFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", filepath.Join(checkpointsDir, LatestFile), err)
	}
	latest := strings.TrimSpace(string(b))
	lstage, lstep, err := ParseName(latest)
	if err != nil {
		return nil // a damaged latest file is Latest's to report; a new checkpoint repairs it
	}
	behind := false
	if stage == lstage {
		behind = step < lstep
	} else if i, j := slices.Index(stages, stage), slices.Index(stages, lstage); i >= 0 && j >= 0 {
		behind = i < j
	}
	if behind {
		return fmt.Errorf("%w: %s is older than %s, which %s names (another trainer carried this run on? resume it from %s, or into another run directory)",
			ErrBehindLatest, name, latest, filepath.Join(checkpointsDir, LatestFile), latest)
	}
	return nil
}

// RetireDamaged lets a run resume from resumeFrom, an older checkpoint than the damaged one latest names: it
// renames the damaged checkpoint's directory to .damaged-<name> (kept for inspection; List, Prune and Latest
// skip it, and the name is free for the step to be saved again) and points latest at resumeFrom. The caller
// has verified that damaged does not load and that resumeFrom does.
func RetireDamaged(checkpointsDir, damaged, resumeFrom string) error {
	if _, _, err := ParseName(resumeFrom); err != nil {
		return err
	}
	if _, _, err := ParseName(damaged); err == nil {
		src := filepath.Join(checkpointsDir, damaged)
		if _, err := os.Stat(src); err == nil {
			dst := filepath.Join(checkpointsDir, ".damaged-"+damaged)
			for i := 1; ; i++ {
				if _, err := os.Lstat(dst); errors.Is(err, os.ErrNotExist) {
					break
				}
				dst = filepath.Join(checkpointsDir, fmt.Sprintf(".damaged-%s.%d", damaged, i))
			}
			if err := os.Rename(src, dst); err != nil {
				return fmt.Errorf("setting damaged checkpoint %s aside: %w", damaged, err)
			}
		}
	}
	return writeLatest(checkpointsDir, resumeFrom)
}

// prune.go is the retention rule for a checkpoints directory: keep the last N checkpoints by step, every
// M-th step, and whatever `latest` names; remove the rest, and the leftovers of interrupted saves.

package checkpoints

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// Prune removes complete checkpoints of checkpointsDir except the keepLast newest (List order), those whose
// step is a multiple of keepEvery (keepEvery ≤ 0: none kept for that reason), and the one latest names.
// It also removes leftovers of interrupted saves: .tmp-* directories, and .old-<name>-* directories once
// <name> exists again. Each checkpoint is first renamed to a hidden .trash-* name, so a crash midway
// never leaves a partial directory under a checkpoint's name. It must not run concurrently with Save
// on the same directory. It returns the names removed.
func Prune(checkpointsDir string, keepLast, keepEvery int) (removed []string, err error) {
	return PruneKeeping(checkpointsDir, keepLast, keepEvery, nil)
}

// PruneKeeping is Prune that also keeps every checkpoint keep says true of (nil: none), e.g. the final
// checkpoint of a stage that later stages branch from (init_from: stage:<name>).
func PruneKeeping(checkpointsDir string, keepLast, keepEvery int, keep func(Info) bool) (removed []string, err error) {
	if keepLast < 0 {
		return nil, fmt.Errorf("prune %s: keepLast must be >= 0, got %d", checkpointsDir, keepLast)
	}
	infos, err := List(checkpointsDir)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	latest := ""
	if b, err := os.ReadFile(filepath.Join(checkpointsDir, LatestFile)); err == nil {
		latest = strings.TrimSpace(string(b))
	} else if !errNotExist(err) {
		return nil, fmt.Errorf("prune: %w", err)
	}
	for i, inf := range infos {
		kept := i >= len(infos)-keepLast || inf.Name == latest || (keepEvery > 0 && inf.Step%keepEvery == 0) || (keep != nil && keep(inf))
		if kept {
			continue
		}
		if err := removeDir(checkpointsDir, inf.Name); err != nil {
			return removed, fmt.Errorf("prune: %w", err)
		}
		removed = append(removed, inf.Name)
	}

	ents, err := os.ReadDir(checkpointsDir)
	if err != nil {
		return removed, fmt.Errorf("prune: %w", err)
	}
	for _, e := range ents {
		n := e.Name()
		stale := strings.HasPrefix(n, ".tmp-") || strings.HasPrefix(n, ".trash-") || strings.HasPrefix(n, ".latest-")
		if rest, ok := strings.CutPrefix(n, ".old-"); ok && e.IsDir() {
			// .old-<name>-<rand>: stale once <name> is back; otherwise it may be the only copy, keep it.
			if k := strings.LastIndexByte(rest, '-'); k > 0 {
				if _, err := os.Stat(filepath.Join(checkpointsDir, rest[:k], ManifestFile)); err == nil {
					stale = true
				}
			}
		}
		if !stale {
			continue
		}
		if err := os.RemoveAll(filepath.Join(checkpointsDir, n)); err != nil {
			return removed, fmt.Errorf("prune: %w", err)
		}
		slog.Info("removed the leftover of an interrupted checkpoint save", "path", filepath.Join(checkpointsDir, n))
		removed = append(removed, n)
	}
	return removed, nil
}

// removeDir renames checkpointsDir/name to a hidden name, fsyncs the parent, then deletes it.
func removeDir(checkpointsDir, name string) error {
	trash := filepath.Join(checkpointsDir, ".trash-"+name+"-"+randSuffix())
	if err := os.Rename(filepath.Join(checkpointsDir, name), trash); err != nil {
		return err
	}
	if err := syncDir(checkpointsDir); err != nil {
		return err
	}
	return os.RemoveAll(trash)
}

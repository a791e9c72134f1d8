// prune.go lists the checkpoints of a remote run prefix and applies checkpoints.Prune's retention rule to
// them: keep the keepLast newest (by step, then manifest creation time, then name), those whose step is a
// multiple of keepEvery, and the one `latest` names. A pruned checkpoint loses its manifest first, so a
// reader never sees a manifest whose files are being deleted. Prefixes without a manifest (an export in
// progress or interrupted) are neither listed nor pruned.

package objstore

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sparrow-rl/sparrow/checkpoints"
)

// RemoteInfo describes one complete checkpoint under a remote prefix.
type RemoteInfo struct {
	Name    string
	URL     URL
	Stage   string
	Step    int
	Created time.Time
}

// PruneRemote applies the retention rule to dst with a Store made from the environment; see Store.PruneRemote.
func PruneRemote(ctx context.Context, dst URL, keepLast, keepEvery int) ([]string, error) {
	s, err := NewFromEnv()
	if err != nil {
		return nil, err
	}
	return s.PruneRemote(ctx, dst, keepLast, keepEvery)
}

// List returns the complete checkpoints directly under dst (those with a manifest), sorted like
// checkpoints.List.
func (s *Store) List(ctx context.Context, dst URL) ([]RemoteInfo, error) {
	objs, err := s.list(ctx, dst.Bucket, dst.dirPrefix(), false)
	if err != nil {
		return nil, fmt.Errorf("list checkpoints of %s: %w", dst, err)
	}
	var out []RemoteInfo
	for _, o := range objs {
		sub, isDir := strings.CutSuffix(strings.TrimPrefix(o.Key, dst.dirPrefix()), "/")
		if !isDir {
			continue
		}
		stage, step, err := checkpoints.ParseName(sub)
		if err != nil {
			continue
		}
		u := dst.Join(sub)
		b, ok, err := s.getSmall(ctx, u.Bucket, u.Key(checkpoints.ManifestFile))
		if err != nil {
			return nil, fmt.Errorf("list checkpoints of %s: %w", dst, err)
		}
		if !ok {
			continue
		}
		man, err := parseManifest(b, u.Key(checkpoints.ManifestFile))
		if err != nil {
			s.log.Warn("remote checkpoint with a bad manifest: not listed", "url", u.String(), "err", err)
			continue
		}
		out = append(out, RemoteInfo{Name: sub, URL: u, Stage: stage, Step: step, Created: man.Created})
	}
	slices.SortFunc(out, func(a, b RemoteInfo) int {
		if a.Step != b.Step {
			return a.Step - b.Step
		}
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out, nil
}

// Latest returns the checkpoint name dst/latest holds ("" when there is none).
func (s *Store) Latest(ctx context.Context, dst URL) (string, error) {
	b, ok, err := s.getSmall(ctx, dst.Bucket, dst.Key(checkpoints.LatestFile))
	if err != nil || !ok {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// PruneRemote removes complete checkpoints under dst except the keepLast newest, those whose step is a
// multiple of keepEvery (keepEvery ≤ 0: none kept for that reason) and the one dst/latest names — the rule
// of checkpoints.Prune. It returns the names removed.
func (s *Store) PruneRemote(ctx context.Context, dst URL, keepLast, keepEvery int) (removed []string, err error) {
	if keepLast < 0 {
		return nil, fmt.Errorf("prune %s: keepLast must be >= 0, got %d", dst, keepLast)
	}
	infos, err := s.List(ctx, dst)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	latest, err := s.Latest(ctx, dst)
	if err != nil {
		return nil, fmt.Errorf("prune %s: %w", dst, err)
	}
	for i, inf := range infos {
		if i >= len(infos)-keepLast || inf.Name == latest || (keepEvery > 0 && inf.Step%keepEvery == 0) {
			continue
		}
		if err := s.removeCheckpoint(ctx, inf.URL); err != nil {
			return removed, fmt.Errorf("prune %s: %w", dst, err)
		}
		s.log.Info("pruned remote checkpoint", "url", inf.URL.String())
		removed = append(removed, inf.Name)
	}
	return removed, nil
}

// removeCheckpoint deletes u's manifest, then every other object under u/.
func (s *Store) removeCheckpoint(ctx context.Context, u URL) error {
	if err := s.remove(ctx, u.Bucket, u.Key(checkpoints.ManifestFile)); err != nil {
		return err
	}
	objs, err := s.list(ctx, u.Bucket, u.dirPrefix(), true)
	if err != nil {
		return err
	}
	for _, o := range objs {
		if err := s.remove(ctx, u.Bucket, o.Key); err != nil {
			return err
		}
	}
	return nil
}

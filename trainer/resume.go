// resume.go: what `--resume` does besides restoring the checkpoint's stage (pipeline.go, stage.go).
//
//   - A damaged checkpoint (a file missing, cut short or not matching its manifest's digest) is not resumed:
//     the error names the newest intact checkpoint of the run and the --resume that continues from it.
//     Resuming that older checkpoint sets the damaged one aside (checkpoints.RetireDamaged) so latest can
//     point back at it.
//   - The config is compared, key by key, with the config the checkpoint was trained under: the resolved
//     config.yaml of the checkpoint's run directory (written at the start of the run that saved it; its hash
//     is the checkpoint's config hash). Every key that differs is logged.
//   - metrics.jsonl and the TensorBoard event files lose the records of the steps after the checkpoint
//     (TrimMetrics, TrimTFEvents): those steps are trained and logged again, so each step is in them once.

package trainer

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/goccy/go-yaml"

	"github.com/sparrow-rl/sparrow/checkpoints"
	"github.com/sparrow-rl/sparrow/configs"
)

// openResume loads the checkpoint spec names: "auto" (the newest of the run directory) or a checkpoint
// directory. A damaged checkpoint of this run directory is an error naming the newest intact one.
func (r *Run) openResume(spec string) (*checkpoints.Checkpoint, string, error) {
	cdir := r.CheckpointsDir()
	if spec == "auto" {
		if _, err := os.Stat(filepath.Join(cdir, checkpoints.LatestFile)); err != nil {
			return nil, "", fmt.Errorf("trainer: --resume: no checkpoint to continue in %s: %w", cdir, err)
		}
		dir, err := checkpoints.Latest(cdir)
		if err != nil {
			return nil, "", r.damaged(latestName(cdir), err)
		}
		spec = dir
	}
	ck, err := checkpoints.Load(spec, checkpoints.LoadOptions{})
	if err != nil {
		if filepath.Clean(filepath.Dir(spec)) == filepath.Clean(cdir) {
			return nil, "", r.damaged(filepath.Base(spec), err)
		}
		return nil, "", fmt.Errorf("trainer: --resume: %w", err)
	}
	return ck, spec, nil
}

// latestName is the checkpoint name checkpointsDir/latest holds ("latest" when it cannot be read).
func latestName(checkpointsDir string) string {
	b, err := os.ReadFile(filepath.Join(checkpointsDir, checkpoints.LatestFile))
	if name := strings.TrimSpace(string(b)); err == nil && name != "" {
		return name
	}
	return checkpoints.LatestFile
}

// damaged is the error for the damaged checkpoint name of this run directory: it names the newest intact one.
func (r *Run) damaged(name string, reason error) error {
	cdir := r.CheckpointsDir()
	intact := r.newestIntact(name)
	if intact == "" {
		return fmt.Errorf("trainer: --resume: checkpoint %s is damaged (%v), and %s holds no intact checkpoint to resume from", name, reason, cdir)
	}
	return fmt.Errorf("trainer: --resume: checkpoint %s is damaged (%v); the newest intact one is %s: resume from it with --resume %s",
		name, reason, intact, filepath.Join(cdir, intact))
}

// newestIntact returns the newest checkpoint of the run directory other than except that loads and verifies
// (pipeline order of the stages, then step), or "".
func (r *Run) newestIntact(except string) string {
	infos, err := checkpoints.List(r.CheckpointsDir())
	if err != nil {
		return ""
	}
	order := r.Config.StageNames()
	slices.SortStableFunc(infos, func(a, b checkpoints.Info) int {
		if c := cmp.Compare(slices.Index(order, b.Stage), slices.Index(order, a.Stage)); c != 0 {
			return c
		}
		return cmp.Compare(b.Step, a.Step)
	})
	for _, in := range infos {
		if in.Name == except {
			continue
		}
		if _, err := checkpoints.Load(in.Dir, checkpoints.LoadOptions{}); err == nil {
			return in.Name
		}
	}
	return ""
}

// damagedReason returns why the checkpoint name of the run directory does not load, or nil when it does.
func (r *Run) damagedReason(name string) error {
	if _, _, err := checkpoints.ParseName(name); err != nil {
		return err
	}
	dir := filepath.Join(r.CheckpointsDir(), name)
	if _, err := os.Stat(filepath.Join(dir, checkpoints.ManifestFile)); err != nil {
		return err
	}
	_, err := checkpoints.Load(dir, checkpoints.LoadOptions{})
	return err
}

// KeyChange is one config key whose value differs between two configs ("" where a config lacks the key).
type KeyChange struct {
	Key      string
	Old, New string
}

// ConfigChanges compares two configs key by key (their resolved YAML, flattened to dotted keys; a stage's keys are
// stages.<name>.<key>, as compare.go's flatten writes them) and returns the keys whose values differ, sorted.
func ConfigChanges(old, new *configs.Config) ([]KeyChange, error) {
	a, err := flatConfig(old)
	if err != nil {
		return nil, err
	}
	b, err := flatConfig(new)
	if err != nil {
		return nil, err
	}
	var out []KeyChange
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			out = append(out, KeyChange{Key: k, Old: v, New: w})
		}
	}
	for k, w := range b {
		if _, ok := a[k]; !ok {
			out = append(out, KeyChange{Key: k, New: w})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

func flatConfig(c *configs.Config) (map[string]string, error) {
	data, err := c.YAML()
	if err != nil {
		return nil, err
	}
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("configs: %s: %w", c.Name, err)
	}
	out := map[string]string{}
	flatten("", v, out)
	return out, nil
}

// logConfigChanges logs every key of cfg that differs from the config the checkpoint ck (in ckDir) was
// trained under: the resolved config.yaml of the checkpoint's run directory, else this run directory's
// config.yaml as the previous start wrote it (read before this start rewrites it).
func (r *Run) logConfigChanges(ck *checkpoints.Checkpoint, ckDir string) {
	var cands []string
	for _, p := range []string{filepath.Join(filepath.Dir(filepath.Dir(filepath.Clean(ckDir))), "config.yaml"), filepath.Join(r.Dir, "config.yaml")} {
		if !slices.Contains(cands, filepath.Clean(p)) {
			cands = append(cands, filepath.Clean(p))
		}
	}
	var prev *configs.Config
	var prevPath string
	exact := false
	for _, p := range cands {
		if _, err := os.Stat(p); err != nil {
			continue
		}
		c, err := configs.Load(p, nil)
		if err != nil {
			r.Log.Warn("cannot read the config a checkpoint was trained under", "file", p, "err", err)
			continue
		}
		if ck.State.ConfigHash == "" || c.Hash() == ck.State.ConfigHash {
			prev, prevPath, exact = c, p, true
			break
		}
		if prev == nil {
			prev, prevPath = c, p
		}
	}
	if prev == nil {
		if ck.State.ConfigHash != "" && ck.State.ConfigHash != r.Config.Hash() {
			r.Log.Warn("resuming with a config that differs from the checkpoint's (its config.yaml is gone: the keys cannot be named)", "checkpoint", ckDir)
		}
		return
	}
	changes, err := ConfigChanges(prev, r.Config)
	if err != nil {
		r.Log.Warn("cannot compare the config with the checkpoint's", "err", err)
		return
	}
	if !exact {
		r.Log.Warn("the checkpoint's own config is not on disk (config hash differs): comparing with the run directory's config.yaml", "checkpoint", ckDir, "config", prevPath)
	}
	if len(changes) == 0 {
		return
	}
	keys := make([]string, len(changes))
	for i, c := range changes {
		keys[i] = c.Key
		r.Log.Warn("config key differs from the checkpoint's", "key", c.Key, "checkpoint", c.Old, "now", c.New)
	}
	r.Log.Warn("resuming with a changed config", "keys", strings.Join(keys, ","), "compared_with", prevPath)
}

// trimAfter removes the records of the steps after checkpoint ck (the rest of its stage and every later
// stage) from metrics.jsonl and the TensorBoard event files.
func (r *Run) trimAfter(ck *checkpoints.Checkpoint) error {
	order := r.Config.StageNames()
	at, step := slices.Index(order, ck.State.Stage), ck.State.StageSteps
	drop := func(stage string, s int) bool {
		if stage == ck.State.Stage {
			return s > step
		}
		i := slices.Index(order, stage)
		return at >= 0 && i > at
	}
	n, err := TrimMetrics(r.Dir, drop)
	if err != nil {
		return fmt.Errorf("trainer: --resume: %w", err)
	}
	if n > 0 {
		r.Log.Info("metrics.jsonl: removed the records after the checkpoint (trained again)", "records", n, "stage", ck.State.Stage, "step", step)
	}
	n, err = TrimTFEvents(r.Dir, drop)
	if err != nil {
		return fmt.Errorf("trainer: --resume: %w", err)
	}
	if n > 0 {
		r.Log.Info("tensorboard: removed the events after the checkpoint (trained again)", "events", n, "stage", ck.State.Stage, "step", step)
	}
	return nil
}

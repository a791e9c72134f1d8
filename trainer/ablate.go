// Ablation grids: an Ablation is a base config and named arms, each a list of
// --set overrides; RunAblation runs every arm in-process (Execute), one run
// directory per arm under the output directory, then writes the comparison of
// the arms (CompareRuns) there as compare.txt and compare.json.
//
// An ablation file (configs/ablations/*.yaml) holds:
//
//	name: grpo_math            # optional; default the file name
//	base: grpo_math_rl.yaml    # a config file (relative to this file) or an embedded recipe name
//	set: [rl.beta=0.01]        # overrides of every arm (optional)
//	metrics: [eval/*/accuracy] # metrics of the comparison (optional; DefaultCompareMetrics)
//	last: 3                    # k of the last-k means (optional)
//	arms:
//	  - name: base             # no overrides: the base config
//	  - name: k3
//	    set: [stages.rl_math.rl.kl=k3]
//
// Overrides apply in the order base file, set, the caller's extra sets, then
// the arm's own set; every arm's config is loaded and validated before any
// arm runs.

package trainer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/goccy/go-yaml"

	"github.com/sparrow-rl/sparrow/configs"
)

// Ablation is a base config and its arms.
type Ablation struct {
	Name    string   `yaml:"name" json:"name"`
	Base    string   `yaml:"base" json:"base"`
	Set     []string `yaml:"set" json:"set,omitempty"`
	Metrics []string `yaml:"metrics" json:"metrics,omitempty"`
	Last    int      `yaml:"last" json:"last,omitempty"`
	Arms    []Arm    `yaml:"arms" json:"arms"`
}

// Arm is one configuration of an ablation: the base with its overrides.
type Arm struct {
	Name string   `yaml:"name" json:"name"`
	Set  []string `yaml:"set" json:"set,omitempty"`
}

// Ablation output files, next to the arms' run directories.
const (
	CompareText = "compare.txt"
	CompareJSON = "compare.json"
)

// IsAblationFile reports whether path is a YAML file with a top-level "arms"
// key (an ablation file rather than a config).
func IsAblationFile(path string) bool {
	data, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	var top map[string]any
	if yaml.Unmarshal(data, &top) != nil {
		return false
	}
	_, ok := top["arms"]
	return ok
}

// LoadAblation reads an ablation file (strict: unknown keys are errors); a
// relative base that names an existing file next to it is resolved against
// the file's directory.
func LoadAblation(path string) (*Ablation, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ablation: %w", err)
	}
	a := &Ablation{}
	if err := yaml.UnmarshalWithOptions(data, a, yaml.Strict()); err != nil {
		return nil, fmt.Errorf("ablation %s: %w", path, err)
	}
	if a.Name == "" {
		a.Name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	}
	if a.Base == "" {
		return nil, fmt.Errorf("ablation %s: key \"base\": missing (a config file or recipe name)", path)
	}
	if !filepath.IsAbs(a.Base) {
		if cand := filepath.Join(filepath.Dir(path), a.Base); fileExists(cand) {
			a.Base = cand
		}
	}
	if err := a.validate(); err != nil {
		return nil, fmt.Errorf("ablation %s: %w", path, err)
	}
	return a, nil
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// ParseArm parses a command-line arm "NAME=key=value,key=value" (NAME alone:
// no overrides). Overrides are separated by commas, so a value with a comma
// belongs in an ablation file.
func ParseArm(s string) (Arm, error) {
	name, rest, _ := strings.Cut(s, "=")
	arm := Arm{Name: strings.TrimSpace(name)}
	for _, kv := range strings.Split(rest, ",") {
		kv = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(kv), "--set"))
		if kv == "" {
			continue
		}
		if !strings.Contains(kv, "=") {
			return Arm{}, fmt.Errorf("arm %q: override %q is not key=value", s, kv)
		}
		arm.Set = append(arm.Set, kv)
	}
	if arm.Name == "" {
		return Arm{}, fmt.Errorf("arm %q: want NAME=key=value,...", s)
	}
	return arm, nil
}

func (a *Ablation) validate() error {
	if len(a.Arms) == 0 {
		return errors.New("key \"arms\": no arms")
	}
	seen := map[string]bool{}
	for i, arm := range a.Arms {
		if arm.Name == "" || safeFileName(arm.Name) != arm.Name || arm.Name == "." || arm.Name == ".." {
			return fmt.Errorf("key \"arms[%d].name\": %q is not a plain directory name (letters, digits, '.', '_', '-')", i, arm.Name)
		}
		if seen[arm.Name] {
			return fmt.Errorf("key \"arms[%d].name\": %q appears twice", i, arm.Name)
		}
		seen[arm.Name] = true
	}
	return nil
}

// AblateOptions are RunAblation's settings.
type AblateOptions struct {
	Out      string   // output directory: one run directory per arm, compare.txt, compare.json
	Parallel int      // arms run at once (<= 1: one after the other)
	Sets     []string // overrides of every arm, after the ablation's own
	Log      *slog.Logger
}

// RunAblation runs every arm of a into opt.Out/<arm> and writes the comparison
// of the arms that left metrics. It returns the comparison and the arms'
// errors joined (each naming its arm); a cancelled ctx stops the arms running.
func RunAblation(ctx context.Context, a *Ablation, opt AblateOptions) (*Comparison, error) {
	if err := a.validate(); err != nil {
		return nil, fmt.Errorf("ablation %s: %w", a.Name, err)
	}
	if opt.Out == "" {
		return nil, fmt.Errorf("ablation %s: no output directory", a.Name)
	}
	log := opt.Log
	if log == nil {
		log = slog.Default()
	}
	cfgs := make([]*configs.Config, len(a.Arms))
	for i, arm := range a.Arms {
		sets := append(append(append([]string{}, a.Set...), opt.Sets...), arm.Set...)
		cfg, err := configs.Load(a.Base, sets)
		if err != nil {
			return nil, fmt.Errorf("ablation %s: arm %s: %w", a.Name, arm.Name, err)
		}
		cfgs[i] = cfg
	}
	if err := os.MkdirAll(opt.Out, 0o755); err != nil {
		return nil, fmt.Errorf("ablation %s: create %s: %w", a.Name, opt.Out, err)
	}
	if err := writeAblationRecord(a, opt); err != nil {
		return nil, err
	}
	par := max(opt.Parallel, 1)
	sem := make(chan struct{}, par)
	errs := make([]error, len(a.Arms))
	var wg sync.WaitGroup
	for i, arm := range a.Arms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				errs[i] = fmt.Errorf("arm %s: %w", arm.Name, ctx.Err())
				return
			}
			defer func() { <-sem }()
			if ctx.Err() != nil {
				errs[i] = fmt.Errorf("arm %s: %w", arm.Name, ctx.Err())
				return
			}
			alog := log.With("arm", arm.Name)
			dir := filepath.Join(opt.Out, arm.Name)
			alog.Info("ablation arm", "dir", dir, "set", strings.Join(arm.Set, " "))
			if err := Execute(ctx, cfgs[i], Options{Dir: dir, Log: alog}); err != nil {
				errs[i] = fmt.Errorf("arm %s: %w", arm.Name, err)
			}
		}()
	}
	wg.Wait()
	var dirs []string
	for _, arm := range a.Arms {
		if d := filepath.Join(opt.Out, arm.Name); fileExists(filepath.Join(d, MetricsFile)) {
			dirs = append(dirs, d)
		}
	}
	runErr := errors.Join(errs...)
	if len(dirs) == 0 {
		return nil, fmt.Errorf("ablation %s: no arm left metrics: %w", a.Name, runErr)
	}
	cmp, err := CompareRuns(dirs, a.Metrics, a.Last)
	if err != nil {
		return nil, errors.Join(runErr, fmt.Errorf("ablation %s: %w", a.Name, err))
	}
	if err := WriteComparison(cmp, opt.Out); err != nil {
		return cmp, errors.Join(runErr, fmt.Errorf("ablation %s: %w", a.Name, err))
	}
	if runErr != nil {
		return cmp, fmt.Errorf("ablation %s: %w", a.Name, runErr)
	}
	return cmp, nil
}

// writeAblationRecord writes out/ablation.json: the ablation as run (its
// arms and every override), so the grid can be run again.
func writeAblationRecord(a *Ablation, opt AblateOptions) error {
	rec := struct {
		*Ablation
		ExtraSets []string `json:"extra_set,omitempty"`
	}{a, opt.Sets}
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return fmt.Errorf("ablation %s: %w", a.Name, err)
	}
	p := filepath.Join(opt.Out, "ablation.json")
	if err := os.WriteFile(p, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("ablation %s: write %s: %w", a.Name, p, err)
	}
	return nil
}

// WriteComparison writes cmp as dir/compare.txt (WriteText) and dir/compare.json.
func WriteComparison(cmp *Comparison, dir string) error {
	var txt bytes.Buffer
	if err := cmp.WriteText(&txt); err != nil {
		return err
	}
	p := filepath.Join(dir, CompareText)
	if err := os.WriteFile(p, txt.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	data, err := json.MarshalIndent(cmp, "", "  ")
	if err != nil {
		return fmt.Errorf("%s: %w", CompareJSON, err)
	}
	p = filepath.Join(dir, CompareJSON)
	if err := os.WriteFile(p, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}

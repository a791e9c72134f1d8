// table.go: the end-of-run accuracy table (run.accuracy_table N): greedy held-out accuracy on N tasks per
// family of the final checkpoint of every pretrain, sft, rl and distill stage (models) on every family the
// rl and distill stages sample (domains), each measured as `trainer eval --env` measures it. Written to
// <run>/accuracy_table.md and accuracy_table.json and printed, so a specialists-into-one-model run ends
// with its comparison.

package trainer

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/envs"
)

// AccuracyTable is models × domains.
type AccuracyTable struct {
	N        int                           `json:"n"`
	Models   []string                      `json:"models"`   // stage names, in pipeline order
	Families []string                      `json:"families"` // in the order the stages first sample them
	Accuracy map[string]map[string]float64 `json:"accuracy"` // model → family → greedy accuracy
	Dirs     map[string]string             `json:"checkpoints"`
}

// tableFamilies returns the families the rl and distill stages sample, each with the stage whose knobs
// measure it (its own stage, or a mixture's member knobs).
func tableFamilies(cfg *configs.Config) ([]string, map[string]configs.Stage, error) {
	var names []string
	by := map[string]configs.Stage{}
	add := func(env string, st configs.Stage) {
		if _, ok := by[env]; !ok {
			names = append(names, env)
			by[env] = familyStage(st, env)
		}
	}
	for _, st := range cfg.Stages {
		if st.Kind != configs.KindRL && st.Kind != configs.KindDistill {
			continue
		}
		if st.RL.Env != envs.MixName {
			add(st.RL.Env, st)
			continue
		}
		ms, err := envs.ParseMix(st.RL.EnvParams)
		if err != nil {
			return nil, nil, fmt.Errorf("stages[%s].rl.env_params: %w", st.Name, err)
		}
		for _, m := range ms {
			add(m.Name, st)
		}
	}
	// a family's own single-family stage measures it when there is one (its knobs are the reference)
	for _, st := range cfg.Stages {
		if (st.Kind == configs.KindRL || st.Kind == configs.KindDistill) && st.RL.Env != envs.MixName {
			by[st.RL.Env] = familyStage(st, st.RL.Env)
		}
	}
	return names, by, nil
}

// accuracyTable measures the table of the finished run r with n tasks per family.
func (r *Run) accuracyTable(n int) (*AccuracyTable, error) {
	fams, stages, err := tableFamilies(r.Config)
	if err != nil {
		return nil, err
	}
	t := &AccuracyTable{N: n, Families: fams, Accuracy: map[string]map[string]float64{}, Dirs: map[string]string{}}
	for _, st := range r.Config.Stages {
		switch st.Kind {
		case configs.KindPretrain, configs.KindSFT, configs.KindRL, configs.KindDistill:
		default:
			continue
		}
		dir, err := r.stageFinal(st.Name)
		if err != nil {
			return nil, fmt.Errorf("accuracy table: %w", err)
		}
		t.Models, t.Dirs[st.Name], t.Accuracy[st.Name] = append(t.Models, st.Name), dir, map[string]float64{}
		for _, env := range fams {
			res, err := EvaluateTasks(dir, r.Config, stages[env], env, n, 0)
			if err != nil {
				return nil, fmt.Errorf("accuracy table: %s on %s: %w", st.Name, env, err)
			}
			t.Accuracy[st.Name][env] = res.Accuracy
			r.Log.Info("accuracy table", "model", st.Name, "family", env, "accuracy", res.Accuracy, "n", n)
		}
	}
	return t, nil
}

// Markdown renders the table, accuracies in percent.
func (t *AccuracyTable) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Held-out greedy accuracy, %d tasks per family\n\n| model |", t.N)
	for _, f := range t.Families {
		fmt.Fprintf(&b, " %s |", f)
	}
	b.WriteString("\n|---|")
	b.WriteString(strings.Repeat("---|", len(t.Families)))
	b.WriteString("\n")
	for _, m := range t.Models {
		fmt.Fprintf(&b, "| %s |", m)
		for _, f := range t.Families {
			fmt.Fprintf(&b, " %.1f %% |", 100*t.Accuracy[m][f])
		}
		b.WriteString("\n")
	}
	return b.String()
}

// writeAccuracyTable measures the table, writes accuracy_table.md and .json into the run directory and
// prints the markdown to out.
func (r *Run) writeAccuracyTable(n int, out io.Writer) error {
	t, err := r.accuracyTable(n)
	if err != nil {
		return err
	}
	js, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return err
	}
	md := t.Markdown()
	if err := os.WriteFile(filepath.Join(r.Dir, "accuracy_table.json"), append(js, '\n'), 0o644); err != nil {
		return fmt.Errorf("accuracy table: %w", err)
	}
	if err := os.WriteFile(filepath.Join(r.Dir, "accuracy_table.md"), []byte(md), 0o644); err != nil {
		return fmt.Errorf("accuracy table: %w", err)
	}
	if out != nil {
		fmt.Fprint(out, "\n"+md)
	}
	return nil
}

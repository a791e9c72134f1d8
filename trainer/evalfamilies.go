// evalfamilies.go: `trainer eval --env math,logic,code`, one checkpoint on several task families at once, so
// that a table of models × domains is one command per model. Each family is measured as EvaluateTasks
// measures one (the same held-out tasks per seed and family as the in-run evaluation of an rl or distill
// stage); a stage whose rl.env is a mixture hands each member its own knobs (env_params "<family>.<key>").

package trainer

import (
	"fmt"
	"maps"
	"strings"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/envs"
)

// FamiliesEval is the evaluation of one checkpoint on several families.
type FamiliesEval struct {
	Checkpoint string               `json:"checkpoint"`
	N          int                  `json:"n"`
	K          int                  `json:"k"`
	Accuracy   map[string]float64   `json:"accuracy"`            // greedy, by family
	PassAtK    map[string]float64   `json:"pass_at_k,omitempty"` // by family (k > 0)
	Families   map[string]*TaskEval `json:"families"`
	Seconds    float64              `json:"seconds"`
}

// SplitEnvs reads a comma-separated --env list; an empty name or a repeated one is an error.
func SplitEnvs(list string) ([]string, error) {
	var out []string
	for _, e := range strings.Split(list, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			return nil, fmt.Errorf("--env %q: an empty family name", list)
		}
		for _, o := range out {
			if o == e {
				return nil, fmt.Errorf("--env %q: %s twice", list, e)
			}
		}
		out = append(out, e)
	}
	return out, nil
}

// EvaluateFamilies runs EvaluateTasks on each family of names.
func EvaluateFamilies(dir string, cfg *configs.Config, st configs.Stage, names []string, n, k int) (*FamiliesEval, error) {
	res := &FamiliesEval{Checkpoint: dir, N: n, K: k, Accuracy: map[string]float64{}, Families: map[string]*TaskEval{}}
	if k > 0 {
		res.PassAtK = map[string]float64{}
	}
	for _, env := range names {
		fst := familyStage(st, env)
		te, err := EvaluateTasks(dir, cfg, fst, env, n, k)
		if err != nil {
			return nil, err
		}
		res.Accuracy[env], res.Families[env] = te.Accuracy, te
		if k > 0 {
			res.PassAtK[env] = te.PassAtK
		}
		res.Seconds += te.Seconds
	}
	return res, nil
}

// familyStage is st with the rl knobs of family env: a mixture's member knobs when st samples a mixture
// naming env, none when st samples another single family (its knobs are that family's), else st's own.
func familyStage(st configs.Stage, env string) configs.Stage {
	p := st.RL.EnvParams
	if _, isMix := p["families"]; isMix {
		if ms, err := envs.ParseMix(p); err == nil {
			for _, m := range ms {
				if m.Name == env {
					st.RL.EnvParams = m.Params
					return st
				}
			}
		}
		st.RL.EnvParams = map[string]string{}
		return st
	}
	if st.RL.Env != env {
		st.RL.EnvParams = map[string]string{}
		return st
	}
	st.RL.EnvParams = maps.Clone(p)
	return st
}

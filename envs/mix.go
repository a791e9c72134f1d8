// mix.go: a weighted mixture of task families, for mixed RL (an rl stage sampling several families), the
// prompts of a distill stage, and mixed pre-training corpora (data.generator: mix). Its params name the
// members and their weights, families: "math:2,logic:1,code:1", and hand each member its own knobs under
// the member's prefix ("math.digits": "3", "logic.sort_len": "4"; in a corpus also "math.flaw": "0.55").
// A task keeps its member's name in Task.Family, and verification, solutions and flawed solutions go to
// that member, so a trajectory records the family it came from (rollout.TaskEnv) and evaluation reports
// each member separately.

package envs

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"

	"github.com/sparrow-rl/sparrow/data"
)

// MixName is the registered name of the mixture family and generator.
const MixName = "mix"

// Mix is a weighted mixture of families.
type Mix struct {
	Members []Family
	Weights []float64 // > 0, one per member
	cum     []float64 // cumulative normalised weights
	byName  map[string]Family
	flaw    map[string]float64 // "<member>.flaw" of a pre-training corpus, by member
}

// MixMember is one member of a mixture as its params name it.
type MixMember struct {
	Name   string
	Weight float64
	Params map[string]string // the member's own knobs (the prefix removed)
}

// ParseMix reads the params of a mixture: families "name:weight,…" (a weight may be left out: 1) and each
// member's knobs under "<name>.". Errors name the key.
func ParseMix(params map[string]string) ([]MixMember, error) {
	spec, ok := params["families"]
	if !ok || strings.TrimSpace(spec) == "" {
		return nil, fmt.Errorf("params.families: required for the mix family, e.g. \"math:1,logic:1,code:1\"")
	}
	var ms []MixMember
	seen := map[string]bool{}
	for _, part := range strings.Split(spec, ",") {
		name, w, hasW := strings.Cut(strings.TrimSpace(part), ":")
		weight := 1.0
		if hasW {
			var err error
			if weight, err = strconv.ParseFloat(strings.TrimSpace(w), 64); err != nil || !(weight > 0) || weight > 1e6 {
				return nil, fmt.Errorf("params.families: %q: want a weight > 0 after the colon", part)
			}
		}
		switch {
		case name == "":
			return nil, fmt.Errorf("params.families: %q: empty family name", spec)
		case name == MixName:
			return nil, fmt.Errorf("params.families: a mix cannot contain a mix")
		case seen[name]:
			return nil, fmt.Errorf("params.families: %s listed twice", name)
		}
		seen[name] = true
		ms = append(ms, MixMember{Name: name, Weight: weight, Params: map[string]string{}})
	}
	for k, v := range params {
		if k == "families" {
			continue
		}
		fam, key, ok := strings.Cut(k, ".")
		if !ok || !seen[fam] {
			return nil, fmt.Errorf("params.%s: a mix's knobs are <family>.<key> of a listed family (families: %s)", k, spec)
		}
		for i := range ms {
			if ms[i].Name == fam {
				ms[i].Params[key] = v
			}
		}
	}
	return ms, nil
}

// NewMix builds the mixture of Options.Params (see ParseMix); every member gets the held-out fraction and
// the reward shaping of opts.
func NewMix(opts Options) (*Mix, error) {
	ms, err := ParseMix(opts.Params)
	if err != nil {
		return nil, err
	}
	m := &Mix{byName: map[string]Family{}, flaw: map[string]float64{}}
	for _, mm := range ms {
		o := opts
		o.Params = map[string]string{}
		for k, v := range mm.Params {
			if k != "flaw" {
				o.Params[k] = v
			}
		}
		f, err := New(mm.Name, o)
		if err != nil {
			return nil, fmt.Errorf("params.families: %s: %w", mm.Name, err)
		}
		flaw, err := Flaw(mm.Params, f, 0)
		if err != nil {
			return nil, fmt.Errorf("params.%s.%s", mm.Name, strings.TrimPrefix(err.Error(), "data.params."))
		}
		m.flaw[mm.Name] = flaw
		m.Members = append(m.Members, f)
		m.Weights = append(m.Weights, mm.Weight)
		m.byName[mm.Name] = f
	}
	m.cum = cumulative(m.Weights)
	return m, nil
}

func cumulative(w []float64) []float64 {
	total := 0.0
	for _, x := range w {
		total += x
	}
	cum := make([]float64, len(w))
	acc := 0.0
	for i, x := range w {
		acc += x / total
		cum[i] = acc
	}
	cum[len(cum)-1] = 1
	return cum
}

// pick draws a member index with probability proportional to its weight (one draw of rng).
func pickWeighted(cum []float64, rng *rand.Rand) int {
	return min(sort.SearchFloat64s(cum, rng.Float64()), len(cum)-1)
}

// Name is "mix".
func (m *Mix) Name() string { return MixName }

// Names lists the members in params order.
func (m *Mix) Names() []string {
	out := make([]string, len(m.Members))
	for i, f := range m.Members {
		out[i] = f.Name()
	}
	return out
}

// Member returns the member called name.
func (m *Mix) Member(name string) (Family, bool) { f, ok := m.byName[name]; return f, ok }

// Sample draws a member by weight, then a task of split from it.
func (m *Mix) Sample(rng *rand.Rand, split data.Split) Task {
	return m.Members[pickWeighted(m.cum, rng)].Sample(rng, split)
}

// Draw draws a member by weight, then a task from it regardless of the split.
func (m *Mix) Draw(rng *rand.Rand) Task {
	f := m.Members[pickWeighted(m.cum, rng)]
	if d, ok := f.(Drawer); ok {
		return d.Draw(rng)
	}
	return f.Sample(rng, data.SplitTrain)
}

// member is the member t belongs to; a task of no member goes to the first member, which treats it as
// the foreign task it is (never correct, never a panic).
func (m *Mix) member(t Task) Family {
	if f, ok := m.byName[t.Family]; ok {
		return f
	}
	return m.Members[0]
}

// Verify scores with the task's member.
func (m *Mix) Verify(t Task, completion, finishReason string) Reward {
	return m.member(t).Verify(t, completion, finishReason)
}

// Solution is the member's worked solution.
func (m *Mix) Solution(t Task) (reasoning, answer string) {
	return m.member(t).Solution(t)
}

// FlawRate is the share of a pre-training corpus's documents of t's member that follow the member's flawed
// procedure ("<member>.flaw"), and whether t belongs to a member.
func (m *Mix) FlawRate(t Task) (float64, bool) {
	r, ok := m.flaw[t.Family]
	return r, ok
}

// FlawedSolution is the member's flawed solution (ok false when the member has none).
func (m *Mix) FlawedSolution(t Task) (reasoning, answer string, ok bool) {
	if fs, isFS := m.member(t).(FlawedSolver); isFS {
		return fs.FlawedSolution(t)
	}
	return "", "", false
}

// MixGenerator is the pre-training corpus of a mixture: each document comes from a member drawn by weight,
// rendered by that member's Generator with its own flaw rate ("<member>.flaw").
type MixGenerator struct {
	Gens []Generator
	cum  []float64
}

// Name is "mix".
func (g MixGenerator) Name() string { return MixName }

// Generate draws a member by weight, then its document.
func (g MixGenerator) Generate(rng *rand.Rand) data.Problem {
	return g.Gens[pickWeighted(g.cum, rng)].Generate(rng)
}

// newMixGenerator reads data.params (families and prefixed knobs, flaw included) into a MixGenerator.
func newMixGenerator(cfg data.CorpusConfig) (data.Generator, error) {
	heldOut := cfg.HeldOut
	if !(heldOut > 0 && heldOut < 1) {
		heldOut = 0
	}
	m, err := NewMix(Options{HeldOut: heldOut, Params: cfg.Params})
	if err != nil {
		return nil, fmt.Errorf("data.%w", err)
	}
	g := MixGenerator{cum: m.cum}
	for _, f := range m.Members {
		g.Gens = append(g.Gens, Generator{Family: f, Flaw: m.flaw[f.Name()]})
	}
	return g, nil
}

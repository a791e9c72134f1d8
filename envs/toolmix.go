// toolmix.go implements the toolmix tool environment: a weighted mixture of tool environments (calc, search,
// interpreter), so that one pre-training corpus and one rl stage cover several families. A task keeps its
// own family's name, prompt, tools and verifier: TaskEnv(mix, t) is the environment of t, and an episode of
// a mixture task renders exactly as the same task of its own family (so `trainer eval --env calc` measures a
// policy trained on the mixture with the prompts it was trained on).
//
// Params (all optional):
//
//	families   comma list of calc, search, interpreter (default calc,search; repeats weight a family)
//	<family>.<key>  a member's own param, e.g. calc.digits: "5", search.people: "400"
//
// IDs are the members' own.

package envs

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/sparrow-rl/sparrow/data"
)

// ToolMix is a weighted mixture of tool environments.
type ToolMix struct {
	order   []string // the families drawn from, repeats weighting
	members map[string]ToolEnv
}

// toolMixMembers are the families a mixture may hold.
var toolMixMembers = []string{"calc", "search", "interpreter"}

// NewToolMix builds the mixture from opts.
func NewToolMix(opts Options) (*ToolMix, error) {
	own := map[string]string{}
	sub := map[string]map[string]string{}
	for k, v := range opts.Params {
		fam, key, ok := strings.Cut(k, ".")
		if !ok {
			own[k] = v
			continue
		}
		if !contains(toolMixMembers, fam) {
			return nil, fmt.Errorf("params.%s: %q is not a member family (%s)", k, fam, strings.Join(toolMixMembers, ", "))
		}
		if sub[fam] == nil {
			sub[fam] = map[string]string{}
		}
		sub[fam][key] = v
	}
	p := newParams("toolmix", own)
	m := &ToolMix{members: map[string]ToolEnv{}}
	m.order = p.list("families", []string{"calc", "search"}, toolMixMembers)
	if err := p.done(); err != nil {
		return nil, err
	}
	for fam := range sub {
		if !contains(m.order, fam) {
			return nil, fmt.Errorf("params: %s.* given but %s is not in families", fam, fam)
		}
	}
	for _, fam := range m.order {
		if m.members[fam] != nil {
			continue
		}
		o := opts
		o.Params = sub[fam]
		f, err := New(fam, o)
		if err != nil {
			return nil, fmt.Errorf("member %w", err)
		}
		m.members[fam] = f.(ToolEnv)
	}
	return m, nil
}

// Name returns "toolmix".
func (m *ToolMix) Name() string { return "toolmix" }

// member returns the environment of task t's family, or nil.
func (m *ToolMix) member(t Task) ToolEnv { return m.members[t.Family] }

// TaskEnver is implemented by tool environments whose tasks run in other environments (ToolMix, a
// mixture; toolnet's remote wrapper of one).
type TaskEnver interface {
	TaskEnv(t Task) ToolEnv
}

// TaskEnv returns the environment of t: the task's own member for a mixture, e otherwise.
func (m *ToolMix) TaskEnv(t Task) ToolEnv {
	if te := m.member(t); te != nil {
		return te
	}
	return m
}

// TaskEnv returns the environment a task of e is run in: e.TaskEnv(t) when e is a TaskEnver (a mixture's
// member), e otherwise.
func TaskEnv(e ToolEnv, t Task) ToolEnv {
	if te, ok := e.(TaskEnver); ok {
		return te.TaskEnv(t)
	}
	return e
}

// Sample draws a family by weight, then its task of split.
func (m *ToolMix) Sample(rng *rand.Rand, split data.Split) Task {
	return m.members[m.order[rng.IntN(len(m.order))]].Sample(rng, split)
}

// Draw draws a family by weight, then a task regardless of the split.
func (m *ToolMix) Draw(rng *rand.Rand) Task {
	te := m.members[m.order[rng.IntN(len(m.order))]]
	if d, ok := te.(Drawer); ok {
		return d.Draw(rng)
	}
	return te.Sample(rng, data.SplitTrain)
}

// Verify grades with the task's family (a task of no member is wrong).
func (m *ToolMix) Verify(t Task, completion, finishReason string) Reward {
	if te := m.member(t); te != nil {
		return te.Verify(t, completion, finishReason)
	}
	return score(DefaultReward(), completion, finishReason, func(string) bool { return false })
}

// Solution is the task's family's.
func (m *ToolMix) Solution(t Task) (reasoning, answer string) {
	if te := m.member(t); te != nil {
		return te.Solution(t)
	}
	return "", t.Answer
}

// Tools lists every member's tools (a task's prompt lists only its own family's: TaskEnv).
func (m *ToolMix) Tools() []Tool {
	var out []Tool
	seen := map[string]bool{}
	for _, fam := range m.order {
		if seen[fam] {
			continue
		}
		seen[fam] = true
		out = append(out, m.members[fam].Tools()...)
	}
	return out
}

// System returns "" (a task's prompt uses its own family's system text: TaskEnv).
func (m *ToolMix) System() string { return "" }

// Episode is the task's family's.
func (m *ToolMix) Episode(ctx context.Context, t Task, misuse int) ([]data.Message, error) {
	te := m.member(t)
	if te == nil {
		return nil, fmt.Errorf("toolmix: task %s of family %q is not of a member", t.ID, t.Family)
	}
	return te.Episode(ctx, t, misuse)
}

// MemberParams returns the params of family when params are a toolmix mixture's (they name families or keys
// <family>.<key>) and family is a member: its own keys, prefix removed. Any other params are returned as they are.
func MemberParams(params map[string]string, family string) map[string]string {
	if family == "toolmix" || !contains(toolMixMembers, family) {
		return params
	}
	mix := false
	for k := range params {
		if k == "families" || strings.Contains(k, ".") {
			mix = true
		}
	}
	if !mix {
		return params
	}
	out := map[string]string{}
	for k, v := range params {
		if key, ok := strings.CutPrefix(k, family+"."); ok {
			out[key] = v
		}
	}
	return out
}

// envs.go defines the interface every task family implements and the registry that builds families by
// name. A family is a seeded generator of tasks with disjoint train and held-out splits (a task's split is
// data.InSplit of its ID, so a task lies in exactly one split by construction, whatever the seed), a
// verifier that scores a completion and returns the parts of its reward, and a renderer of worked
// solutions, so the same family is both an RL environment and a pre-training / SFT corpus (see render.go).
//
// Families shipped: math, logic, code, dataset, kvretrieval, needle. Their difficulty knobs are strings in
// Options.Params (so that a YAML mapping of any scalars decodes onto them); each family documents its keys
// next to its constructor and refuses unknown ones.
//
// A family is immutable once built: Sample, Verify and Solution are safe for concurrent use (rollout workers
// share one), and Sample's randomness comes only from the rng it is given.
//
// envs depends on data (tokenizer, chat encoder, split hash) and on nothing of the model.

package envs

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"

	"github.com/sparrow-rl/sparrow/data"
)

// Task is one problem of a family.
type Task struct {
	// ID is the stable key of the task; its split is data.InSplit(ID, heldOut). For math it equals the key of
	// data's arithmetic generator ("347+589"), so pre-training on either keeps the same problems held out.
	ID     string
	Family string
	// Prompt is the text of the user message.
	Prompt string
	// Answer is the reference answer (for code "write" tasks: the output the program must print).
	Answer string
	// Meta holds family-specific details (sub-kind, operands, reference program, ...).
	Meta map[string]string
}

// Reward is the verifier's score of one completion. Total is the sum of Parts.
type Reward struct {
	Total float64
	// Parts: "correctness", "format", "length_penalty" (always all three; see RewardOptions).
	Parts   map[string]float64
	Correct bool
}

// Family is a task family.
type Family interface {
	Name() string
	// Sample draws a task of the given split deterministically from rng (rejection on the split hash).
	Sample(rng *rand.Rand, split data.Split) Task
	// Verify scores a completion: the assistant's text after the prompt, "reasoning</think>answer" in
	// thinking mode (a trailing EOS literal is allowed), possibly truncated (finishReason "length"). It
	// never panics, on any string.
	Verify(t Task, completion string, finishReason string) Reward
	// Solution renders a worked solution in the format Verify expects: Verify(t, reasoning+"</think>"+answer,
	// "stop") is correct.
	Solution(t Task) (reasoning, answer string)
}

// Drawer is implemented by families that can draw a task without regard to the split; Sample is then
// rejection sampling over Draw, and a pre-training corpus (data.SyntheticCorpus) does its own rejection.
// All shipped families implement it.
type Drawer interface {
	Draw(rng *rand.Rand) Task
}

// FlawedSolver is implemented by families that can also write a solution following a systematic wrong
// procedure (math: every carry and borrow dropped). Pre-training corpora mix such solutions with right
// ones so that a pre-trained policy samples both and RL has something to select (see Generator.Flaw).
// ok is false when the flawed procedure gives the right answer for this task.
type FlawedSolver interface {
	FlawedSolution(t Task) (reasoning, answer string, ok bool)
}

// DefaultHeldOut is the held-out fraction used when Options.HeldOut is 0.
const DefaultHeldOut = 0.05

// Options configures a family.
type Options struct {
	// HeldOut is the fraction of task IDs held out, in (0, 1); 0 means DefaultHeldOut. Use the same value as
	// the pre-training data section so that held-out problems stay unseen.
	HeldOut float64
	// Params are the family's difficulty knobs (see each family's documentation); unknown keys are errors.
	Params map[string]string
	// Reward is the reward shaping; the zero value means DefaultReward().
	Reward RewardOptions
}

// resolve returns the held-out fraction and the reward shaping with their defaults, checked; every family's
// constructor starts with it.
func (o Options) resolve() (heldOut float64, reward RewardOptions, err error) {
	heldOut = o.HeldOut
	if heldOut == 0 {
		heldOut = DefaultHeldOut
	}
	if !(heldOut > 0 && heldOut < 1) {
		return 0, RewardOptions{}, fmt.Errorf("held_out %v is outside (0, 1)", o.HeldOut)
	}
	reward = o.Reward
	if reward == (RewardOptions{}) {
		reward = DefaultReward()
	}
	return heldOut, reward, reward.Validate()
}

// Factory builds a family from options.
type Factory func(opts Options) (Family, error)

var (
	registryMu sync.RWMutex
	registry   = map[string]Factory{}
)

// Register makes a family available to New under name. Registering a name twice is an error.
func Register(name string, f Factory) error {
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, ok := registry[name]; ok {
		return fmt.Errorf("envs: family %q is already registered", name)
	}
	registry[name] = f
	return nil
}

// New builds the family registered under name.
func New(name string, opts Options) (Family, error) {
	registryMu.RLock()
	f, ok := registry[name]
	registryMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("envs: unknown family %q (registered: %s)", name, strings.Join(Names(), ", "))
	}
	fam, err := f(opts)
	if err != nil {
		return nil, fmt.Errorf("envs: %s: %w", name, err)
	}
	return fam, nil
}

// Names lists the registered families, sorted.
func Names() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// maxRejections bounds the draws of one Sample; every constructor's split probe (probeSplits) makes hitting it
// practically impossible.
const maxRejections = 1 << 20

// sampleSplit draws from d until a task of split comes up. It panics after maxRejections draws, which the
// split probe of every constructor rules out (both splits were seen among the probe's draws).
func sampleSplit(d Drawer, rng *rand.Rand, split data.Split, heldOut float64) Task {
	for range maxRejections {
		t := d.Draw(rng)
		if data.InSplit(t.ID, heldOut) == split {
			return t
		}
	}
	panic(fmt.Sprintf("envs: no task in the %s split after %d draws (held_out %v)", split, maxRejections, heldOut))
}

// EvalTasks draws n tasks of split for an evaluation, distinct by ID as long as the split has that many: a
// task already drawn is drawn again (up to 64 tries per task), and only a split with fewer distinct tasks
// than n repeats some. distinct is the number of different tasks among the n. The tasks depend on rng only,
// so a seeded evaluation sees the same set every time.
func EvalTasks(f Family, rng *rand.Rand, split data.Split, n int) (tasks []Task, distinct int) {
	const tries = 64
	tasks = make([]Task, 0, n)
	seen := make(map[string]bool, n)
	for len(tasks) < n {
		t := f.Sample(rng, split)
		for i := 1; seen[t.ID] && i < tries; i++ {
			t = f.Sample(rng, split)
		}
		seen[t.ID] = true
		tasks = append(tasks, t)
	}
	return tasks, len(seen)
}

// probeDraws is how many draws probeSplits makes at most.
const probeDraws = 200000

// probeSplits checks that both splits of d are reachable: a constructor refuses a configuration whose task
// space is so small that one split is empty (e.g. 1-digit addition with a tiny held-out fraction).
func probeSplits(name string, d Drawer, heldOut float64) error {
	rng := rand.New(rand.NewPCG(1, 2))
	var seen [2]bool
	for range probeDraws {
		seen[data.InSplit(d.Draw(rng).ID, heldOut)] = true
		if seen[0] && seen[1] {
			return nil
		}
	}
	for s, ok := range seen {
		if !ok {
			return fmt.Errorf("%s: no task fell in the %s split in %d draws (held_out %v): the task space is too small for this split; raise the difficulty knobs or change held_out",
				name, data.Split(s), probeDraws, heldOut)
		}
	}
	return nil
}

func init() {
	for name, f := range map[string]Factory{
		"math":        func(o Options) (Family, error) { return NewMath(o) },
		"logic":       func(o Options) (Family, error) { return NewLogic(o) },
		"code":        func(o Options) (Family, error) { return NewCode(o) },
		"dataset":     func(o Options) (Family, error) { return NewDataset(o) },
		"kvretrieval": func(o Options) (Family, error) { return NewKV(o) },
		"needle":      func(o Options) (Family, error) { return NewNeedle(o) },
		MixName:       func(o Options) (Family, error) { return NewMix(o) },
		"calc":        func(o Options) (Family, error) { return NewCalc(o) },
		"search":      func(o Options) (Family, error) { return NewSearch(o) },
		"interpreter": func(o Options) (Family, error) { return NewInterpreter(o) },
		"toolmix":     func(o Options) (Family, error) { return NewToolMix(o) },
		"copy":        func(o Options) (Family, error) { return NewCopy(o) },
	} {
		if err := Register(name, f); err != nil {
			panic(err)
		}
	}
	registerGenerators()
}

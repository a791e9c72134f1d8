// Tests of the properties every family shares: the registry and its errors, disjoint splits, determinism,
// worked solutions that always verify (and render through data's chat encoder and parser), the data
// generators, and the prompt rendering.
package envs

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/sparrow-rl/sparrow/data"
)

// testDataset writes a JSONL dataset of n rows and returns its path.
func testDataset(t testing.TB, n int) string {
	t.Helper()
	var sb strings.Builder
	for i := range n {
		fmt.Fprintf(&sb, "{\"prompt\": \"Capital of country %d?\", \"answer\": \"City %d\", \"reasoning\": \"Row %d of the table.\"}\n", i, i, i)
	}
	path := filepath.Join(t.TempDir(), "qa.jsonl")
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// allFamilies builds every shipped family with test-sized knobs.
func allFamilies(t testing.TB) []Family {
	t.Helper()
	params := map[string]map[string]string{
		"math":        nil,
		"logic":       nil,
		"code":        nil,
		"dataset":     {"path": testDataset(t, 600), "reasoning_column": "reasoning"},
		"kvretrieval": {"length": "256"},
		"needle":      {"length": "256"},
		"mix":         {"families": "math:1,logic:1,code:1"},
		"calc":        nil,
		"search":      {"people": "100"},
		"interpreter": nil,
		"toolmix":     {"families": "calc,search,interpreter", "search.people": "100"},
		"copy":        nil,
	}
	var fams []Family
	for _, name := range Names() {
		p, ok := params[name]
		if !ok {
			t.Fatalf("family %q has no test parameters", name)
		}
		f, err := New(name, Options{Params: p})
		if err != nil {
			t.Fatal(err)
		}
		fams = append(fams, f)
	}
	return fams
}

func TestNames(t *testing.T) {
	want := []string{"calc", "code", "copy", "dataset", "interpreter", "kvretrieval", "logic", "math", "mix", "needle", "search", "toolmix"}
	if got := Names(); !reflect.DeepEqual(got, want) {
		t.Errorf("Names() = %v, want %v", got, want)
	}
	if err := Register("math", func(Options) (Family, error) { return nil, nil }); err == nil {
		t.Error("registering math twice succeeded")
	}
}

func TestNewErrors(t *testing.T) {
	cases := []struct {
		name string
		opts Options
		want string
	}{
		{"chess", Options{}, `envs: unknown family "chess" (registered: calc, code, copy, dataset, interpreter, kvretrieval, logic, math, mix, needle, search, toolmix)`},
		{"toolmix", Options{Params: map[string]string{"chess.depth": "2"}}, `params.chess.depth: "chess" is not a member family`},
		{"toolmix", Options{Params: map[string]string{"families": "calc", "search.people": "50"}}, "search.* given but search is not in families"},
		{"calc", Options{Params: map[string]string{"digits": "13"}}, "params.digits: 13 is outside [2, 12]"},
		{"search", Options{Params: map[string]string{"kinds": "threehop"}}, `params.kinds: "threehop" is not one of onehop, twohop`},
		{"interpreter", Options{Params: map[string]string{"kinds": "write"}}, `interpreter has no key "kinds"`},
		{"math", Options{Params: map[string]string{"digit": "3"}}, "params.digit: unknown key (the math family knows digits, mul_digits_a, mul_digits_b, ops, style)"},
		{"math", Options{Params: map[string]string{"digits": "x"}}, `params.digits: want an integer, got "x"`},
		{"math", Options{Params: map[string]string{"digits": "40"}}, "params.digits: 40 is outside [1, 18]"},
		{"math", Options{Params: map[string]string{"ops": "+,/"}}, `params.ops: "/" is not one of +, -, *`},
		{"math", Options{HeldOut: 1.5}, "envs: math: held_out 1.5 is outside (0, 1)"},
		{"math", Options{Reward: RewardOptions{Correct: 1, Format: -1}}, "reward.format = -1: want a finite number ≥ 0"},
		{"math", Options{Reward: RewardOptions{Correct: math.NaN()}}, "reward.correct = NaN"},
		{"math", Options{HeldOut: 0.001, Params: map[string]string{"digits": "1", "ops": "+"}}, "no task fell in the held_out split in 200000 draws"},
		{"logic", Options{Params: map[string]string{"kinds": "chess"}}, `params.kinds: "chess" is not one of sort, bool`},
		{"logic", Options{Params: map[string]string{"not_prob": "1"}}, "params.not_prob: 1 is outside [0, 0.9]"},
		{"code", Options{Params: map[string]string{"size": "1"}}, "params.size: 1 is outside [2, 20]"},
		{"kvretrieval", Options{Params: map[string]string{"distance": "2"}}, "params.distance: 2 is outside [0, 1]"},
		{"kvretrieval", Options{Params: map[string]string{"key_len": "2", "length": "8000"}}, "kvretrieval: 1333 pairs need more than half of the 1296 words of key_len 2"},
		{"kvretrieval", Options{Params: map[string]string{"key_len": "1"}}, "params.key_len: 1 is outside [2, 12]"},
		{"needle", Options{Params: map[string]string{"needles": "24"}}, "params.needles: 24 is outside [1, 23]"},
		{"dataset", Options{}, "params.path: required"},
		{"dataset", Options{Params: map[string]string{"path": "x.jsonl", "case_insensitive": "maybe"}}, `params.case_insensitive: want true or false, got "maybe"`},
	}
	for _, tc := range cases {
		_, err := New(tc.name, tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%s, %+v) = %v, want an error containing %q", tc.name, tc.opts, err, tc.want)
		}
	}
}

// TestSplitsDisjoint samples thousands of tasks from each split: every ID lies in the split it was drawn
// for, and no ID is shared.
func TestSplitsDisjoint(t *testing.T) {
	n := 3000
	if testing.Short() {
		n = 300
	}
	for _, f := range allFamilies(t) {
		t.Run(f.Name(), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(7, 8))
			ids := [2]map[string]bool{{}, {}}
			for _, split := range []data.Split{data.SplitTrain, data.SplitHeldOut} {
				for range n {
					task := f.Sample(rng, split)
					if got := data.InSplit(task.ID, DefaultHeldOut); got != split {
						t.Fatalf("task %q drawn for %s hashes into %s", task.ID, split, got)
					}
					if m, ok := f.(*Mix); ok { // a mixture hands out its members' tasks
						if _, ok := m.Member(task.Family); !ok {
							t.Fatalf("task %q has family %q, no member of the mix", task.ID, task.Family)
						}
					} else if task.Family != f.Name() && !(f.Name() == "toolmix" && contains(toolMixMembers, task.Family)) { // a tool mixture's tasks keep their family
						t.Fatalf("task %q has family %q", task.ID, task.Family)
					}
					ids[split][task.ID] = true
				}
			}
			for id := range ids[data.SplitTrain] {
				if ids[data.SplitHeldOut][id] {
					t.Fatalf("task %q is in both splits", id)
				}
			}
			if len(ids[0]) < 2 || len(ids[1]) < 2 {
				t.Errorf("distinct tasks: %d train, %d held out", len(ids[0]), len(ids[1]))
			}
		})
	}
}

func TestDeterminism(t *testing.T) {
	for _, f := range allFamilies(t) {
		t.Run(f.Name(), func(t *testing.T) {
			draw := func(seed uint64) []Task {
				rng := rand.New(rand.NewPCG(seed, 99))
				var out []Task
				for i := range 200 {
					out = append(out, f.Sample(rng, data.Split(i%2)))
				}
				return out
			}
			a, b, c := draw(1), draw(1), draw(2)
			if !reflect.DeepEqual(a, b) {
				t.Error("the same seed gave different tasks")
			}
			if reflect.DeepEqual(a, c) {
				t.Error("different seeds gave the same tasks")
			}
		})
	}
}

// TestSolutionsVerify: the worked solution of every task verifies as correct with the full reward, and
// renders through data's chat encoder to text that data's completion parser splits back into it.
func TestSolutionsVerify(t *testing.T) {
	n := 3000
	if testing.Short() {
		n = 300
	}
	for _, f := range allFamilies(t) {
		t.Run(f.Name(), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(3, 4))
			for i := range n {
				task := f.Sample(rng, data.Split(i%2))
				reasoning, answer := f.Solution(task)
				completion := Completion(reasoning, answer)
				r := f.Verify(task, completion, "stop")
				if !r.Correct || math.Abs(r.Total-1.1) > 1e-12 {
					t.Fatalf("task %q: solution %q scored %+v", task.ID, completion, r)
				}
				if r2 := f.Verify(task, completion+litEOS, "stop"); !r2.Correct {
					t.Fatalf("task %q: solution with EOS scored %+v", task.ID, r2)
				}
				if i%10 != 0 {
					continue
				}
				text, err := Text(f, task, "")
				if err != nil {
					t.Fatal(err)
				}
				prompt, err := Prompt(task, "")
				if err != nil {
					t.Fatal(err)
				}
				if text != prompt+completion+litEOS {
					t.Fatalf("task %q: Text is not Prompt + completion + EOS:\n%q\n%q", task.ID, text, prompt)
				}
				if reasoning != "" { // data's encoder refuses an empty reasoning on the last turn
					enc, err := data.Encode(Conversation(f, task, ""), data.DefaultEncodeOptions(data.ModeThinking))
					if err != nil || enc != text {
						t.Fatalf("task %q: data.Encode of the conversation = %q, %v; want Text %q", task.ID, enc, err, text)
					}
					tok := &data.Tokenizer{}
					ids, mask, err := TrainingIDs(tok, f, task, "")
					wantIDs, wantMask, err2 := data.EncodeForTraining(tok, Conversation(f, task, ""), data.DefaultEncodeOptions(data.ModeThinking))
					if err != nil || err2 != nil || !slices.Equal(ids, wantIDs) || !slices.Equal(mask, wantMask) {
						t.Fatalf("task %q: TrainingIDs differ from data.EncodeForTraining (%v, %v)", task.ID, err, err2)
					}
				}
				parsed, err := data.ParseCompletion(completion+litEOS, data.ModeThinking)
				if err != nil {
					t.Fatalf("task %q: data.ParseCompletion: %v", task.ID, err)
				}
				if parsed.ReasoningContent != reasoning || parsed.Content != answer {
					t.Fatalf("task %q: data's parser split the completion into %q / %q", task.ID, parsed.ReasoningContent, parsed.Content)
				}
			}
		})
	}
}

func TestRenderGolden(t *testing.T) {
	m, err := NewMath(Options{})
	if err != nil {
		t.Fatal(err)
	}
	task, err := MathTask("347", "+", "589")
	if err != nil {
		t.Fatal(err)
	}
	const reasoning = "7+9=16, write 6 carry 1; 4+8+1=13, write 3 carry 1; 3+5+1=9, write 9"
	prompt, err := Prompt(task, "Be exact.")
	if err != nil {
		t.Fatal(err)
	}
	if want := "<｜begin▁of▁sentence｜>Be exact.<｜User｜>347+589=?<｜Assistant｜><think>"; prompt != want {
		t.Errorf("Prompt = %q, want %q", prompt, want)
	}
	text, err := Text(m, task, "")
	if err != nil {
		t.Fatal(err)
	}
	if want := "<｜begin▁of▁sentence｜><｜User｜>347+589=?<｜Assistant｜><think>" + reasoning + "</think>936<｜end▁of▁sentence｜>"; text != want {
		t.Errorf("Text = %q, want %q", text, want)
	}
	tok := &data.Tokenizer{}
	ids, err := PromptIDs(tok, task, "")
	if err != nil {
		t.Fatal(err)
	}
	wantIDs := append([]int32{data.BOS, data.User}, tok.Encode("347+589=?")...)
	wantIDs = append(wantIDs, data.Assistant, data.ThinkBeg)
	if !slices.Equal(ids, wantIDs) {
		t.Errorf("PromptIDs = %v, want %v", ids, wantIDs)
	}
	ids, mask, err := TrainingIDs(tok, m, task, "")
	if err != nil {
		t.Fatal(err)
	}
	gen := len(reasoning) + 1 + 3 + 1 // reasoning, </think>, "936", EOS
	if len(ids) != len(wantIDs)+gen || len(mask) != len(ids) {
		t.Fatalf("TrainingIDs: %d ids, %d mask, want %d", len(ids), len(mask), len(wantIDs)+gen)
	}
	for i, v := range mask {
		if want := uint8(0); i >= len(wantIDs) {
			want = 1
			if v != want {
				t.Fatalf("mask[%d] = %d, want 1", i, v)
			}
		} else if v != want {
			t.Fatalf("mask[%d] = %d, want 0", i, v)
		}
	}
	if ids[len(ids)-1] != data.EOS || ids[len(ids)-5] != data.ThinkEnd {
		t.Errorf("training ids end in %v", ids[len(ids)-6:])
	}
	if doc := Document(task.Prompt, reasoning, "936"); doc != strings.TrimSuffix(strings.TrimPrefix(text, litBOS), litEOS) {
		t.Errorf("Document = %q, want the text without BOS and EOS", doc)
	}
}

// TestGenerators opens every registered envs generator as a data corpus: documents are the families'
// conversations, split by the task ID, and data's own arithmetic generator is still there.
func TestGenerators(t *testing.T) {
	names := data.GeneratorNames()
	for _, want := range []string{"arithmetic", "code", "kvretrieval", "logic", "math", "math_flawed", "needle"} {
		if !slices.Contains(names, want) {
			t.Errorf("data.GeneratorNames() = %v lacks %q", names, want)
		}
	}
	for _, name := range []string{"math", "math_flawed", "logic", "code", "kvretrieval", "needle"} {
		t.Run(name, func(t *testing.T) {
			cfg := data.CorpusConfig{Source: "synthetic", Generator: name, HeldOut: 0.1, Seed: 5}
			for _, split := range []data.Split{data.SplitTrain, data.SplitHeldOut} {
				c, err := data.OpenCorpus(cfg, split)
				if err != nil {
					t.Fatal(err)
				}
				sc := c.(*data.SyntheticCorpus)
				for range 50 {
					p, err := sc.NextProblem()
					if err != nil {
						t.Fatal(err)
					}
					if data.InSplit(p.Key, 0.1) != split {
						t.Fatalf("problem %q is not in %s", p.Key, split)
					}
					if !strings.HasPrefix(p.Text, litUser) || !strings.Contains(p.Text, litAsst+litThinkBeg) || strings.Count(p.Text, litThinkEnd) != 1 {
						t.Fatalf("document %q is not a chat conversation", p.Text)
					}
					if strings.Contains(p.Text, litBOS) || strings.Contains(p.Text, litEOS) {
						t.Fatalf("document %q holds BOS or EOS (the packer adds them)", p.Text)
					}
					if p.Answer == "" {
						t.Fatalf("problem %q has no answer", p.Key)
					}
				}
			}
		})
	}
	// data.max_digits and data.ops reach the math family.
	c, err := data.OpenCorpus(data.CorpusConfig{Source: "synthetic", Generator: "math", MaxDigits: 2, Ops: []string{"*"}, HeldOut: 0.1}, data.SplitTrain)
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		p, err := c.(*data.SyntheticCorpus).NextProblem()
		if err != nil {
			t.Fatal(err)
		}
		a, b, ok := strings.Cut(p.Key, "*")
		if !ok || len(a) > 2 || len(b) > 2 {
			t.Fatalf("key %q is not a product of 1–2 digit numbers", p.Key)
		}
	}
}

// TestFlawedGenerator: math_flawed writes the dropped-carry procedure in about half of the documents whose
// problem has a carry or borrow; the answer in such a text is the flawed one, Problem.Answer the right one.
func TestFlawedGenerator(t *testing.T) {
	m, err := NewMath(Options{})
	if err != nil {
		t.Fatal(err)
	}
	g := Generator{GenName: "math_flawed", Family: m, Flaw: 0.5}
	rng := rand.New(rand.NewPCG(11, 12))
	flawed, eligible := 0, 0
	for range 4000 {
		p := g.Generate(rng)
		a, op, b := splitKey(p.Key)
		task, err := MathTask(a, op, b)
		if err != nil {
			t.Fatal(err)
		}
		_, fa, ok := m.FlawedSolution(task)
		if !ok {
			continue
		}
		eligible++
		textAnswer := p.Text[strings.Index(p.Text, litThinkEnd)+len(litThinkEnd):]
		switch textAnswer {
		case fa:
			flawed++
		case p.Answer:
		default:
			t.Fatalf("document %q ends in %q, neither %q nor the flawed %q", p.Key, textAnswer, p.Answer, fa)
		}
		if p.Answer != task.Answer {
			t.Fatalf("Problem.Answer %q, want the right answer %q", p.Answer, task.Answer)
		}
	}
	if frac := float64(flawed) / float64(eligible); eligible < 1000 || frac < 0.45 || frac > 0.55 {
		t.Errorf("%d of %d eligible documents flawed (%.3f), want about half", flawed, eligible, frac)
	}
}

func splitKey(key string) (a, op, b string) {
	i := strings.IndexAny(key[1:], "+-*") + 1
	return key[:i], key[i : i+1], key[i+1:]
}

// TestConcurrentUse: rollout workers share a family; run with -race.
func TestConcurrentUse(t *testing.T) {
	fams := allFamilies(t)
	done := make(chan error)
	for w := range 4 {
		go func() {
			rng := rand.New(rand.NewPCG(uint64(w), 0))
			for i := range 100 {
				f := fams[i%len(fams)]
				task := f.Sample(rng, data.Split(i%2))
				if r := f.Verify(task, Completion(f.Solution(task)), "stop"); !r.Correct {
					done <- fmt.Errorf("%s: task %q: solution scored %+v", f.Name(), task.ID, r)
					return
				}
			}
			done <- nil
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

// TestRenderEmptyReasoning: a dataset without a reasoning column still renders and trains.
func TestRenderEmptyReasoning(t *testing.T) {
	d, err := NewDataset(Options{Params: map[string]string{"path": testDataset(t, 100)}})
	if err != nil {
		t.Fatal(err)
	}
	task := d.Sample(rand.New(rand.NewPCG(1, 1)), data.SplitTrain)
	text, err := Text(d, task, "")
	if err != nil {
		t.Fatal(err)
	}
	want := litBOS + litUser + task.Prompt + litAsst + litThinkBeg + litThinkEnd + task.Answer + litEOS
	if text != want {
		t.Errorf("Text = %q, want %q", text, want)
	}
	ids, mask, err := TrainingIDs(nil, d, task, "")
	if err != nil {
		t.Fatal(err)
	}
	n := 4 + len(task.Prompt) // BOS, User, prompt, Assistant, <think>
	if len(ids) != n+1+len(task.Answer)+1 || ids[n] != data.ThinkEnd || mask[n-1] != 0 || mask[n] != 1 || mask[len(mask)-1] != 1 {
		t.Errorf("TrainingIDs = %v, mask %v", ids, mask)
	}
}

// TestMathPlacedStyle: style placed writes the placed worked solution, and its flawed twin drops every carry
// and borrow in the same layout (hand-written).
func TestMathPlacedStyle(t *testing.T) {
	m, err := NewMath(Options{Params: map[string]string{"style": "placed"}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ a, op, b, think, flawed, flawedAnswer string }{
		{"347", "+", "589", "347: 3c 4b 7a. 589: 5c 8b 9a. a: 7+9=16, write 6 carry 1; b: 4+8+1=13, write 3 carry 1; c: 3+5+1=9, write 9",
			"347: 3c 4b 7a. 589: 5c 8b 9a. a: 7+9=16, write 6; b: 4+8=12, write 2; c: 3+5=8, write 8", "826"},
		{"500", "-", "7", "500: 5c 0b 0a. 7: 0c 0b 7a. a: 0-7<0, borrow 1: 10-7=3, write 3; b: 0-1-0<0, borrow 1: 10-1-0=9, write 9; c: 5-1-0=4, write 4",
			"500: 5c 0b 0a. 7: 0c 0b 7a. a: 0-7<0, so 7-0=7, write 7; b: 0-0=0, write 0; c: 5-0=5, write 5", "507"},
		{"73", "*", "8", "73: 7b 3a. 73*8: a: 3*8=24, write 4 carry 2; b: 7*8+2=58, write 8 carry 5; c: write 5, so 73*8=584",
			"73: 7b 3a. 73*8: a: 3*8=24, write 4; b: 7*8=56, write 6, so 73*8=64", "64"},
	}
	for _, tt := range tests {
		task, err := MathTask(tt.a, tt.op, tt.b)
		if err != nil {
			t.Fatal(err)
		}
		if r, _ := m.Solution(task); r != tt.think {
			t.Errorf("%s solution\n got %q\nwant %q", task.ID, r, tt.think)
		}
		r, a, ok := m.FlawedSolution(task)
		if r != tt.flawed || a != tt.flawedAnswer || !ok {
			t.Errorf("%s flawed\n got %q → %q (%v)\nwant %q → %q", task.ID, r, a, ok, tt.flawed, tt.flawedAnswer)
		}
	}
	if _, err := NewMath(Options{Params: map[string]string{"style": "fancy"}}); err == nil || !strings.Contains(err.Error(), `params.style: "fancy" is not one of plain, placed, atomic`) {
		t.Errorf("bad style: err %v", err)
	}
}

// TestMathAtomicStyle: style atomic writes every step as a fact of two operands (carry in added in its own
// step, borrows by equal additions), and its flawed twin is the placed one, whose steps are such facts
// already (hand-written).
func TestMathAtomicStyle(t *testing.T) {
	m, err := NewMath(Options{Params: map[string]string{"style": "atomic"}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ a, op, b, think, flawed, flawedAnswer string }{
		{"347", "+", "589", "347: 3c 4b 7a. 589: 5c 8b 9a. a: 7+9=16, write 6 carry 1; b: 4+8=12, 2+1=3, write 3 carry 1; c: 3+5=8, 8+1=9, write 9",
			"347: 3c 4b 7a. 589: 5c 8b 9a. a: 7+9=16, write 6; b: 4+8=12, write 2; c: 3+5=8, write 8", "826"},
		{"342", "-", "178", "342: 3c 4b 2a. 178: 1c 7b 8a. a: 2-8<0, borrow 1: 10-8=2, 2+2=4, write 4; b: 7+1=8, 4-8<0, borrow 1: 10-8=2, 2+4=6, write 6; c: 1+1=2, 3-2=1, write 1",
			"342: 3c 4b 2a. 178: 1c 7b 8a. a: 2-8<0, so 8-2=6, write 6; b: 4-7<0, so 7-4=3, write 3; c: 3-1=2, write 2", "236"},
		{"73", "*", "8", "73: 7b 3a. 73*8: a: 3*8=24, write 4 carry 2; b: 7*8=56, 6+2=8, write 8 carry 5; c: write 5, so 73*8=584",
			"73: 7b 3a. 73*8: a: 3*8=24, write 4; b: 7*8=56, write 6, so 73*8=64", "64"},
	}
	for _, tt := range tests {
		task, err := MathTask(tt.a, tt.op, tt.b)
		if err != nil {
			t.Fatal(err)
		}
		if r, a := m.Solution(task); r != tt.think || a != task.Answer {
			t.Errorf("%s solution\n got %q → %q\nwant %q", task.ID, r, a, tt.think)
		}
		r, a, ok := m.FlawedSolution(task)
		if r != tt.flawed || a != tt.flawedAnswer || !ok {
			t.Errorf("%s flawed\n got %q → %q (%v)\nwant %q → %q", task.ID, r, a, ok, tt.flawed, tt.flawedAnswer)
		}
	}
}

// TestEvalTasks: an evaluation set is distinct tasks of its split as long as the split has them, and a split
// smaller than n repeats its tasks (all of them present); the same seed draws the same set.
func TestEvalTasks(t *testing.T) {
	f, err := NewMath(Options{HeldOut: 0.3, Params: map[string]string{"digits": "1", "ops": "+"}})
	if err != nil {
		t.Fatal(err)
	}
	all := map[string]bool{} // every held-out task of 1-digit addition
	for a := range 10 {
		for b := range 10 {
			task, err := MathTask(strconv.Itoa(a), "+", strconv.Itoa(b))
			if err != nil {
				t.Fatal(err)
			}
			if data.InSplit(task.ID, 0.3) == data.SplitHeldOut {
				all[task.ID] = true
			}
		}
	}
	if len(all) < 15 || len(all) > 50 {
		t.Fatalf("%d held-out problems of 100", len(all))
	}
	tests := []struct{ n, distinct int }{{10, 10}, {len(all), len(all)}, {3 * len(all), len(all)}}
	for _, tt := range tests {
		tasks, distinct := EvalTasks(f, rand.New(rand.NewPCG(5, 6)), data.SplitHeldOut, tt.n)
		again, _ := EvalTasks(f, rand.New(rand.NewPCG(5, 6)), data.SplitHeldOut, tt.n)
		seen := map[string]bool{}
		for i, task := range tasks {
			if !all[task.ID] {
				t.Fatalf("n=%d: task %s is not held out", tt.n, task.ID)
			}
			if again[i].ID != task.ID {
				t.Fatalf("n=%d: the same seed drew %s then %s at %d", tt.n, task.ID, again[i].ID, i)
			}
			seen[task.ID] = true
		}
		if len(tasks) != tt.n || distinct != tt.distinct || len(seen) != tt.distinct {
			t.Errorf("n=%d: %d tasks, distinct %d (counted %d), want %d", tt.n, len(tasks), distinct, len(seen), tt.distinct)
		}
	}
}

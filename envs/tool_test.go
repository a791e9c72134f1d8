package envs

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/sparrow-rl/sparrow/data"
)

func TestEvalArith(t *testing.T) {
	for _, c := range []struct{ in, want, err string }{
		{"482913*417+90533", "201465254", ""}, // 482913·417 = 201374721, + 90533
		{"2*(3+4)-5", "9", ""},
		{"-3*-3", "9", ""},
		{" 10 - 20 ", "-10", ""},
		{"123456789012345678901234567890*10", "1234567890123456789012345678900", ""},
		{"1+", "", "ends early"},
		{"(1+2", "", "missing )"},
		{"2^3", "", "unexpected"},
		{strings.Repeat("9", 41), "", "41 digits"},
		{strings.Repeat("(", 20) + "1" + strings.Repeat(")", 20), "", "nesting"},
		{strings.Repeat("9", 40) + "*" + strings.Repeat("9", 40) + "*" + strings.Repeat("9", 40), "", "over 80 digits"},
	} {
		got, err := EvalArith(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) || !errors.Is(err, ErrBadArguments) {
				t.Errorf("EvalArith(%q) = %q, %v; want error containing %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("EvalArith(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

// toolFunc is a tool made of a function, for the sandbox tests.
type toolFunc struct {
	name string
	f    func(ctx context.Context) (string, error)
}

func (f toolFunc) Spec() ToolSpec { return ToolSpec{Name: f.name} }
func (f toolFunc) Call(ctx context.Context, _ map[string]any) (string, error) {
	return f.f(ctx)
}

func TestCallToolSandbox(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	tools := []Tool{
		toolFunc{"ok", func(context.Context) (string, error) { return "fine", nil }},
		toolFunc{"loop", func(ctx context.Context) (string, error) { <-ctx.Done(); return "", ctx.Err() }},
		toolFunc{"stuck", func(context.Context) (string, error) { <-block; return "late", nil }}, // ignores its context
		toolFunc{"flood", func(context.Context) (string, error) { return strings.Repeat("x", 1<<20), nil }},
		toolFunc{"panics", func(context.Context) (string, error) { panic("boom") }},
		Runner{Limits: Limits{MaxSteps: 1000, MaxOutput: 64}},
	}
	lim := ToolLimits{Timeout: 50 * time.Millisecond, MaxOutput: 100}
	for _, c := range []struct {
		name, args string
		want       error
		content    string
	}{
		{"ok", `{}`, nil, "fine"},
		{"loop", `{}`, ErrToolTimeout, "error: tool call timed out after 50ms: loop"},
		{"stuck", `{}`, ErrToolTimeout, "error: tool call timed out after 50ms: stuck"},
		{"flood", `{}`, ErrToolOutput, "error: tool output limit exceeded: flood wrote 1048576 bytes, the limit is 100"},
		{"panics", `{}`, ErrToolPanic, "error: tool failed: panics panicked: boom"},
		{"nope", `{}`, ErrUnknownTool, `error: unknown tool "nope" (tools: ok, loop, stuck, flood, panics, run)`},
		{"ok", `[1]`, ErrBadArguments, ""},
		{"ok", `{"a": 1} x`, ErrBadArguments, ""},
		{"run", `{"program": "x = 1\nwhile 1 {\n  x = x + 1\n}"}`, ErrStepLimit, ""},
		{"run", `{"program": "x = 1\nwhile 1 {\n  print x\n}"}`, ErrOutputLimit, ""},
		{"run", `{"program": "print 6 * 7"}`, nil, "42"},
		{"run", `{"src": "print 1"}`, ErrBadArguments, ""},
	} {
		start := time.Now()
		r := CallTool(context.Background(), tools, c.name, c.args, lim)
		if time.Since(start) > 5*time.Second {
			t.Errorf("%s: the call took %s", c.name, time.Since(start))
		}
		if !errors.Is(r.Err, c.want) || (c.want == nil) != (r.Err == nil) {
			t.Errorf("%s(%s): err %v, want %v", c.name, c.args, r.Err, c.want)
		}
		if c.content != "" && r.Content != c.content {
			t.Errorf("%s(%s): content %q, want %q", c.name, c.args, r.Content, c.content)
		}
		if r.Err != nil && !strings.HasPrefix(r.Content, "error: ") {
			t.Errorf("%s: error result %q does not start with \"error: \"", c.name, r.Content)
		}
	}
}

// TestToolEnvEpisodes checks every tool environment's worked conversations: they render with the chat
// encoder, the right one's final turn is verified correct, and each misuse gives a wrong answer (or, for a
// mis-copied argument that happens to give the same answer, is at least rendered).
func TestToolEnvEpisodes(t *testing.T) {
	for _, c := range []struct {
		name   string
		params map[string]string
	}{
		{"calc", nil},
		{"search", map[string]string{"people": "200"}},
		{"interpreter", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, err := New(c.name, Options{Params: c.params})
			if err != nil {
				t.Fatal(err)
			}
			env := f.(ToolEnv)
			rng := rand.New(rand.NewPCG(1, 2))
			wrong := make([]int, len(MisuseKinds))
			const n = 60
			for range n {
				task := env.Sample(rng, data.SplitTrain)
				for misuse := -1; misuse < len(MisuseKinds); misuse++ {
					msgs, err := env.Episode(context.Background(), task, misuse)
					if err != nil {
						t.Fatalf("%s misuse %d: %v", task.ID, misuse, err)
					}
					if _, err := data.Encode(msgs, ToolEncodeOptions()); err != nil {
						t.Fatalf("%s misuse %d: encoding: %v", task.ID, misuse, err)
					}
					last := msgs[len(msgs)-1]
					rw := env.Verify(task, Completion(last.ReasoningContent, last.Content)+litEOS, "stop")
					if misuse < 0 && !rw.Correct {
						t.Fatalf("%s: the right episode answers %q, want %q\n%v", task.ID, last.Content, task.Answer, msgs)
					}
					if misuse >= 0 && !rw.Correct {
						wrong[misuse]++
					}
					calls := 0
					for _, m := range msgs {
						calls += len(m.ToolCalls)
					}
					if (misuse == MisuseNoCall) != (calls == 0) {
						t.Fatalf("%s misuse %d: %d calls", task.ID, misuse, calls)
					}
				}
			}
			for k, w := range wrong {
				if w < n*8/10 {
					t.Errorf("misuse %s gave a wrong answer in %d of %d episodes, want most", MisuseKinds[k], w, n)
				}
			}
		})
	}
}

func TestSearchRanksByBM25(t *testing.T) {
	f, err := NewSearch(Options{Params: map[string]string{"people": "100"}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		p := f.people[i]
		out := CallTool(context.Background(), f.Tools(), "search", `{"query": `+data.PyQuote(p.name)+`}`, ToolLimits{})
		if first, _, _ := strings.Cut(out.Content, " "); first != personID(i) || out.Err != nil {
			t.Errorf("search(%q) = %q, %v; want %s first", p.name, out.Content, out.Err, personID(i))
		}
	}
	out := CallTool(context.Background(), f.Tools(), "open", `{"doc_id": "p3"}`, ToolLimits{})
	if want := f.people[3].name + " was born in " + f.people[3].birthplace + "."; !strings.HasPrefix(out.Content, want) {
		t.Errorf("open(p3) = %q, want it to start with %q", out.Content, want)
	}
	if out := CallTool(context.Background(), f.Tools(), "open", `{"doc_id": "zz"}`, ToolLimits{}); out.Err == nil {
		t.Errorf("open(zz) = %q, want an error", out.Content)
	}
}

// TestClassifyMisuse: each misuse kind of the worked conversations is recognised as what it is, and the
// right episodes as right use.
func TestClassifyMisuse(t *testing.T) {
	for _, name := range []string{"calc", "search", "interpreter"} {
		f, err := New(name, Options{Params: map[string]string{}})
		if err != nil {
			t.Fatal(err)
		}
		env := f.(ToolEnv)
		rng := rand.New(rand.NewPCG(3, 4))
		for range 30 {
			task := env.Sample(rng, data.SplitTrain)
			for misuse := -1; misuse < len(MisuseKinds); misuse++ {
				msgs, err := env.Episode(context.Background(), task, misuse)
				if err != nil {
					t.Fatal(err)
				}
				var calls []ToolCallRecord
				for i, m := range msgs {
					for k, c := range m.ToolCalls {
						r := msgs[i+1+k].Content
						calls = append(calls, ToolCallRecord{Name: c.Function.Name, Arguments: c.Function.Arguments, Result: r, Failed: strings.HasPrefix(r, "error: ")})
					}
				}
				got := ClassifyMisuse(env, task, calls, msgs[len(msgs)-1].Content)
				want := ""
				if misuse >= 0 {
					want = MisuseKinds[misuse]
				}
				if got != want && !(misuse == MisuseMiscopied && got == MisuseKinds[MisuseIgnored]) {
					t.Fatalf("%s %s misuse %d: classified %q, want %q", name, task.ID, misuse, got, want)
				}
			}
		}
	}
}

// TestCalcOperandLengths: min_digits and min_mul_digits make the operands' lengths vary over their whole
// ranges (and nothing else), and a fixed length draws the same tasks as before the ranges existed.
func TestCalcOperandLengths(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		params               map[string]string
		lo, hi, mulLo, mulHi int
	}{
		{"fixed", map[string]string{"digits": "5", "mul_digits": "2"}, 5, 5, 2, 2},
		{"ranges", map[string]string{"digits": "7", "min_digits": "4", "mul_digits": "3", "min_mul_digits": "1"}, 4, 7, 1, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewCalc(Options{Params: tc.params})
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(3, 4))
			seen, seenMul := map[int]bool{}, map[int]bool{}
			for range 1000 {
				task := c.Draw(rng)
				a, rest, _ := strings.Cut(task.Meta["expr"], "*")
				b, d, _ := strings.Cut(strings.NewReplacer("+", " ", "-", " ").Replace(rest), " ")
				for _, n := range []string{a, d} {
					if len(n) < tc.lo || len(n) > tc.hi || n[0] == '0' {
						t.Fatalf("operand %q of %s", n, task.Meta["expr"])
					}
					seen[len(n)] = true
				}
				if len(b) < tc.mulLo || len(b) > tc.mulHi || b[0] == '0' {
					t.Fatalf("multiplier %q of %s", b, task.Meta["expr"])
				}
				seenMul[len(b)] = true
				if v, err := EvalArith(task.Meta["expr"]); err != nil || v != task.Answer {
					t.Fatalf("%s = %q (%v), task answer %q", task.Meta["expr"], v, err, task.Answer)
				}
			}
			if len(seen) != tc.hi-tc.lo+1 || len(seenMul) != tc.mulHi-tc.mulLo+1 {
				t.Errorf("operand lengths %v, multiplier lengths %v", seen, seenMul)
			}
		})
	}
	// the first fixed-length task of this seed, as drawn before min_digits existed
	c, _ := NewCalc(Options{Params: map[string]string{"digits": "5", "mul_digits": "2"}})
	if got := c.Draw(rand.New(rand.NewPCG(1, 2))).Meta["expr"]; got != "79243*65+80598" {
		t.Errorf("first task %q", got)
	}
	if _, err := NewCalc(Options{Params: map[string]string{"digits": "5", "min_digits": "6"}}); err == nil || !strings.Contains(err.Error(), "params.min_digits: 6 is outside [2, 5]") {
		t.Errorf("min_digits over digits: %v", err)
	}
}

// TestPerturbLetter: search's mis-copied name differs from the name in exactly one lowercase letter, which
// stays a lowercase letter; capitals and spaces are kept.
func TestPerturbLetter(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, name := range []string{"Zarrrow Solbel", "Ar Vo", "Quelmi Tur", "X"} {
		for range 200 {
			got := perturbLetter(rng, name)
			if name == "X" {
				if got != "Xa" {
					t.Fatalf("perturbLetter(%q) = %q, want Xa", name, got)
				}
				continue
			}
			diff := 0
			for i := range len(name) {
				if got[i] != name[i] {
					diff++
					if name[i] < 'a' || name[i] > 'z' || got[i] < 'a' || got[i] > 'z' {
						t.Fatalf("perturbLetter(%q) = %q changes a non-lowercase byte or writes one", name, got)
					}
				}
			}
			if len(got) != len(name) || diff != 1 {
				t.Fatalf("perturbLetter(%q) = %q: %d bytes differ, want 1", name, got, diff)
			}
		}
	}
}

// TestTempting: calc marks the tasks whose first operand starts with 1–4, search the persons whose names start with
// A–M; a mixture asks the task's own family.
func TestTempting(t *testing.T) {
	calc, err := NewCalc(Options{})
	if err != nil {
		t.Fatal(err)
	}
	search, err := NewSearch(Options{Params: map[string]string{"people": "40"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		env  ToolEnv
		task Task
		want bool
	}{
		{calc, Task{Family: "calc", Meta: map[string]string{"expr": "4821*7+903"}}, true},
		{calc, Task{Family: "calc", Meta: map[string]string{"expr": "100*17-903"}}, true},
		{calc, Task{Family: "calc", Meta: map[string]string{"expr": "5821*7+903"}}, false},
		{calc, Task{Family: "calc", Meta: map[string]string{"expr": "999*1+4"}}, false},
		{calc, Task{Family: "calc"}, false},
		{search, Task{Family: "search", Meta: map[string]string{"name": "Arlen Vosk"}}, true},
		{search, Task{Family: "search", Meta: map[string]string{"name": "Mor Ta"}}, true},
		{search, Task{Family: "search", Meta: map[string]string{"name": "Nat Sol"}}, false},
		{search, Task{Family: "search", Meta: map[string]string{"name": "Zarrin Ul"}}, false},
		{search, Task{Family: "search"}, false},
	} {
		if got := Tempting(tc.env, tc.task); got != tc.want {
			t.Errorf("%s Tempting(%v) = %v, want %v", tc.env.Name(), tc.task.Meta, got, tc.want)
		}
	}
	mix, err := NewToolMix(Options{Params: map[string]string{"search.people": "40"}})
	if err != nil {
		t.Fatal(err)
	}
	if !Tempting(mix, Task{Family: "calc", Meta: map[string]string{"expr": "12*3+4"}}) || Tempting(mix, Task{Family: "search", Meta: map[string]string{"name": "Sol Ul"}}) {
		t.Error("toolmix does not ask the task's own family")
	}
}

// TestGuess: calc's guess has the answer's length and sign, digits where it has digits, no leading zero,
// and is never the answer.
func TestGuess(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, answer := range []string{"7", "10", "4276", "-90533", "3404511"} {
		for range 300 {
			g := guess(rng, answer)
			if g == answer || len(g) != len(answer) || (answer[0] == '-') != (g[0] == '-') {
				t.Fatalf("guess(%q) = %q", answer, g)
			}
			digits := strings.TrimPrefix(g, "-")
			if digits[0] == '0' || strings.Trim(digits, "0123456789") != "" {
				t.Fatalf("guess(%q) = %q: not a number without a leading zero", answer, g)
			}
		}
	}
}

// TestMisuseDrawFor: with overconfident 0 it draws MisuseDraw's sequence; with 1 every tempting task is a
// no_call and the others follow the flaw share; at 0.6 about 0.6 + 0.4·share/3 of the tempting tasks skip
// the call.
func TestMisuseDrawFor(t *testing.T) {
	calc, err := NewCalc(Options{})
	if err != nil {
		t.Fatal(err)
	}
	tempting := Task{Family: "calc", Meta: map[string]string{"expr": "4821*7+903"}}
	plain := Task{Family: "calc", Meta: map[string]string{"expr": "5821*7+903"}}
	a, b := rand.New(rand.NewPCG(1, 1)), rand.New(rand.NewPCG(1, 1))
	for range 1000 {
		if x, y := MisuseDrawFor(a, calc, tempting, 0.4, 0), MisuseDraw(b, 0.4); x != y {
			t.Fatalf("overconfident 0 draws %d, MisuseDraw %d", x, y)
		}
	}
	rng := rand.New(rand.NewPCG(2, 2))
	const n = 20000
	noCall, plainNoCall := 0, 0
	for range n {
		if MisuseDrawFor(rng, calc, tempting, 0.3, 0.6) == MisuseNoCall {
			noCall++
		}
		if MisuseDrawFor(rng, calc, plain, 0.3, 0.6) == MisuseNoCall {
			plainNoCall++
		}
		if MisuseDrawFor(rng, calc, tempting, 0, 1) != MisuseNoCall {
			t.Fatal("overconfident 1: a tempting task's conversation calls")
		}
	}
	if f := float64(noCall) / n; f < 0.6+0.4*0.1-0.015 || f > 0.6+0.4*0.1+0.015 {
		t.Errorf("tempting no_call share %.3f, want 0.64", f)
	}
	if f := float64(plainNoCall) / n; f < 0.1-0.01 || f > 0.1+0.01 {
		t.Errorf("plain no_call share %.3f, want 0.1 (flaw 0.3 / 3)", f)
	}
}

// TestOverconfidentParam: data.params.overconfident is a fraction, for tool environments only.
func TestOverconfidentParam(t *testing.T) {
	calc, err := NewCalc(Options{})
	if err != nil {
		t.Fatal(err)
	}
	math, err := New("math", Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		f       Family
		v       string
		want    float64
		wantErr string
	}{
		{calc, "", 0, ""},
		{calc, "0.6", 0.6, ""},
		{calc, "1.5", 0, `data.params.overconfident: want a fraction in [0, 1], got "1.5"`},
		{calc, "x", 0, `data.params.overconfident: want a fraction in [0, 1], got "x"`},
		{math, "0.5", 0, "data.params.overconfident: family math calls no tools"},
	} {
		params := map[string]string{}
		if tc.v != "" {
			params["overconfident"] = tc.v
		}
		got, err := Overconfident(params, tc.f)
		if tc.wantErr != "" {
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("%s %q: error %v, want %q", tc.f.Name(), tc.v, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s %q: %v, %v; want %v", tc.f.Name(), tc.v, got, err, tc.want)
		}
	}
}

// TestSearchDeterministic: two collections built from the same params answer every query alike, the second
// hit included: BM25 ties (names sharing a syllable) are broken by document id, not by the order a map
// handed the documents to the index, so a seeded corpus of search episodes is the same in every process.
func TestSearchDeterministic(t *testing.T) {
	build := func() *Search {
		s, err := NewSearch(Options{Params: map[string]string{"kinds": "onehop", "people": "400"}})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a, b := build(), build()
	ties := 0
	for i, p := range a.people {
		for _, q := range []string{p.name, strings.Fields(p.name)[1]} {
			ra, errA := a.tools[0].Call(context.Background(), map[string]any{"query": q})
			rb, errB := b.tools[0].Call(context.Background(), map[string]any{"query": q})
			if ra != rb || (errA == nil) != (errB == nil) {
				t.Fatalf("person %d, query %q: %q vs %q", i, q, ra, rb)
			}
			if q != p.name {
				ties++
			}
		}
	}
	if ties == 0 {
		t.Fatal("no surname queries ran")
	}
}

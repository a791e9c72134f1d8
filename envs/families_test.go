// Golden tests of each family's prompt, worked solution and answer (hand-checked), the flawed math
// procedures (math, logic, code), the knobs, and the dataset loaders (JSONL and Parquet) with their errors.
package envs

import (
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

type golden struct {
	task                      Task
	id, prompt                string
	reasoning, answer         string
	flawedReasoning, flawedAn string // math only; "" = no flawed version
	target                    string // Task.Answer when it differs from the solution's answer (code write)
}

func checkGolden(t *testing.T, f Family, cases []golden) {
	t.Helper()
	for _, g := range cases {
		want := g.answer
		if g.target != "" {
			want = g.target
		}
		if g.task.ID != g.id || g.task.Prompt != g.prompt || g.task.Answer != want {
			t.Errorf("%s: task = %q / %q / %q, want %q / %q / %q", f.Name(), g.task.ID, g.task.Prompt, g.task.Answer, g.id, g.prompt, want)
		}
		r, a := f.Solution(g.task)
		if r != g.reasoning || a != g.answer {
			t.Errorf("%s %s: Solution =\n%q, %q\nwant\n%q, %q", f.Name(), g.id, r, a, g.reasoning, g.answer)
		}
		if fs, ok := f.(FlawedSolver); ok {
			fr, fa, ok := fs.FlawedSolution(g.task)
			if ok != (g.flawedAn != "") || (ok && (fr != g.flawedReasoning || fa != g.flawedAn)) {
				t.Errorf("%s %s: FlawedSolution =\n%q, %q, %v\nwant\n%q, %q", f.Name(), g.id, fr, fa, ok, g.flawedReasoning, g.flawedAn)
			}
		}
	}
}

func mustMath(t *testing.T, a, op, b string) Task {
	t.Helper()
	task, err := MathTask(a, op, b)
	if err != nil {
		t.Fatal(err)
	}
	return task
}

func TestMathGolden(t *testing.T) {
	m, err := NewMath(Options{})
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, m, []golden{
		{
			task: mustMath(t, "347", "+", "589"), id: "347+589", prompt: "347+589=?",
			reasoning:       "7+9=16, write 6 carry 1; 4+8+1=13, write 3 carry 1; 3+5+1=9, write 9",
			answer:          "936",
			flawedReasoning: "7+9=16, write 6; 4+8=12, write 2; 3+5=8, write 8", flawedAn: "826",
		},
		{
			task: mustMath(t, "52", "-", "38"), id: "52-38", prompt: "52-38=?",
			reasoning:       "2-8<0, borrow 1: 12-8=4, write 4; 5-1-3=1, write 1",
			answer:          "14",
			flawedReasoning: "2-8<0, so 8-2=6, write 6; 5-3=2, write 2", flawedAn: "26",
		},
		{
			task: mustMath(t, "38", "-", "52"), id: "38-52", prompt: "38-52=?",
			reasoning:       "38<52, so 38-52=-(52-38); 2-8<0, borrow 1: 12-8=4, write 4; 5-1-3=1, write 1; 52-38=14, so 38-52=-14",
			answer:          "-14",
			flawedReasoning: "38<52, so 38-52=-(52-38); 2-8<0, so 8-2=6, write 6; 5-3=2, write 2; 52-38=26, so 38-52=-26", flawedAn: "-26",
		},
		{
			task: mustMath(t, "347", "*", "6"), id: "347*6", prompt: "347*6=?",
			reasoning:       "347*6: 7*6=42, write 2 carry 4; 4*6+4=28, write 8 carry 2; 3*6+2=20, write 0 carry 2; write 2, so 347*6=2082",
			answer:          "2082",
			flawedReasoning: "347*6: 7*6=42, write 2; 4*6=24, write 4; 3*6=18, write 8, so 347*6=842", flawedAn: "842",
		},
		{ // no carry: the flawed procedure is right, so there is no flawed solution
			task: mustMath(t, "12", "+", "34"), id: "12+34", prompt: "12+34=?",
			reasoning: "2+4=6, write 6; 1+3=4, write 4", answer: "46",
		},
	})
}

// TestMathKnobs: the recipe's mix, + and - up to 3 digits and 3-digit × 1-digit.
func TestMathKnobs(t *testing.T) {
	m, err := NewMath(Options{Params: map[string]string{"digits": "3", "mul_digits_a": "3", "mul_digits_b": "1", "ops": "+,-,*"}})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	ops := map[string]int{}
	for range 3000 {
		task := m.Draw(rng)
		a, op, b := task.Meta["a"], task.Meta["op"], task.Meta["b"]
		ops[op]++
		if len(a) > 3 || len(b) > 3 || (op == "*" && len(b) != 1) {
			t.Fatalf("task %q is outside the knobs", task.ID)
		}
		x, _ := strconv.Atoi(a)
		y, _ := strconv.Atoi(b)
		want := map[string]int{"+": x + y, "-": x - y, "*": x * y}[op]
		if task.Answer != strconv.Itoa(want) {
			t.Fatalf("task %q: answer %q, want %d", task.ID, task.Answer, want)
		}
	}
	for _, op := range []string{"+", "-", "*"} {
		if ops[op] < 800 {
			t.Errorf("op %s drawn %d times of 3000", op, ops[op])
		}
	}
}

func TestLogicGolden(t *testing.T) {
	l, err := NewLogic(Options{})
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, l, []golden{
		{
			task: SortTask([]int{3, 1, 2}), id: "sort:3 1 2", prompt: "Sort: 3 1 2",
			reasoning: "min 1, rest 3 2; min 2, rest 3; min 3", answer: "1 2 3",
		},
		{
			task: SortTask([]int{5, 5, 0}), id: "sort:5 5 0", prompt: "Sort: 5 5 0",
			reasoning: "min 0, rest 5 5; min 5, rest 5; min 5", answer: "0 5 5",
		},
		{
			task: BoolTask("(T and not F) or F"), id: "bool:(T and not F) or F", prompt: "Evaluate: (T and not F) or F",
			reasoning: "not F=T; T and T=T; T or F=T", answer: "T",
			flawedReasoning: "T and F=F; F or F=F", flawedAn: "F", // the negation dropped
		},
		{
			task: BoolTask("not (T or F) and (F or not (T and T))"), id: "bool:not (T or F) and (F or not (T and T))",
			prompt:    "Evaluate: not (T or F) and (F or not (T and T))",
			reasoning: "T or F=T; not T=F; T and T=T; not T=F; F or F=F; F and F=F", answer: "F",
			flawedReasoning: "T or F=T; T and T=T; F or T=T; T and T=T", flawedAn: "T",
		},
		{
			task: BoolTask("not not T"), id: "bool:not not T", prompt: "Evaluate: not not T",
			reasoning: "not T=F; not F=T", answer: "T", // dropping both negations gives T too: no flawed version
		},
		{
			task: SortTask([]int{42, 7, 19, 100}), id: "sort:42 7 19 100", prompt: "Sort: 42 7 19 100",
			reasoning: "min 7, rest 42 19 100; min 19, rest 42 100; min 42, rest 100; min 100", answer: "7 19 42 100",
			flawedReasoning: "min 100, rest 42 7 19; min 19, rest 42 7; min 42, rest 7; min 7", flawedAn: "100 19 42 7",
		},
	})
}

// TestFormulaRoundTrip: random formulas print and parse back to the same formula and value.
func TestFormulaRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for range 2000 {
		f := randomFormula(rng, 1+rng.IntN(8), 0.3)
		g, err := parseFormula(f.String())
		if err != nil {
			t.Fatalf("%q: %v", f.String(), err)
		}
		if !reflect.DeepEqual(f, g) || g.eval() != f.eval() {
			t.Fatalf("%q parsed back as %q", f.String(), g.String())
		}
	}
	for _, bad := range []string{"", "T and", "(T", "T F", "T and F or T", "x", strings.Repeat("not ", 1000) + "T"} {
		if _, err := parseFormula(bad); err == nil {
			t.Errorf("parseFormula(%q) succeeded", bad)
		}
	}
}

func TestLogicKnobs(t *testing.T) {
	l, err := NewLogic(Options{Params: map[string]string{"kinds": "sort", "sort_len": "3", "sort_max": "9"}})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	for range 500 {
		task := l.Draw(rng)
		xs, ok := parseInts(task.Meta["list"])
		if task.Meta["kind"] != "sort" || !ok || len(xs) < 2 || len(xs) > 3 {
			t.Fatalf("task %q is outside the knobs", task.ID)
		}
		for _, x := range xs {
			if x > 9 {
				t.Fatalf("task %q has a value over sort_max", task.ID)
			}
		}
	}
	b, err := NewLogic(Options{Params: map[string]string{"kinds": "bool", "bool_ops": "2", "not_prob": "0"}})
	if err != nil {
		t.Fatal(err)
	}
	for range 500 {
		task := b.Draw(rng)
		f := task.Meta["formula"]
		if ops := strings.Count(f, "and") + strings.Count(f, "or"); ops < 1 || ops > 2 || strings.Contains(f, "not") {
			t.Fatalf("formula %q is outside the knobs", f)
		}
	}
}

func TestCodeGolden(t *testing.T) {
	c, err := NewCode(Options{})
	if err != nil {
		t.Fatal(err)
	}
	pred, ok := PredictTask("x=3;y=1\nwhile x>0 { y=y*2; x=x-1 }\nprint y")
	if !ok {
		t.Fatal("PredictTask failed")
	}
	write, ok := WriteTask("k = 2\nwhile k <= 4 {\n  print k * k\n  k = k + 1\n}\n", "These are the squares of 2 to 4.")
	if !ok {
		t.Fatal("WriteTask failed")
	}
	checkGolden(t, c, []golden{
		{
			task: pred, id: "code-predict:" + hash16("x = 3\ny = 1\nwhile x > 0 {\n  y = y * 2\n  x = x - 1\n}\nprint y\n"),
			prompt: "What does this program print?\nx = 3\ny = 1\nwhile x > 0 {\n  y = y * 2\n  x = x - 1\n}\nprint y",
			reasoning: "x=3\ny=1\nwhile 3>0: yes\ny=1*2=2\nx=3-1=2\nwhile 2>0: yes\ny=2*2=4\nx=2-1=1\n" +
				"while 1>0: yes\ny=4*2=8\nx=1-1=0\nwhile 0>0: no\nprint 8",
			answer:          "8",
			flawedReasoning: "x=3\ny=1\nwhile 3>0: yes\ny=1*2=2\nx=3-1=2\nprint 2", flawedAn: "2", // the body once
		},
		{
			task: write, id: "code-write:4 9 16", prompt: "Write a program that prints: 4 9 16",
			reasoning: "These are the squares of 2 to 4.",
			answer:    "k = 2\nwhile k <= 4 {\n  print k * k\n  k = k + 1\n}",
			target:    "4 9 16",
		},
	})
	if _, ok := PredictTask("print x"); ok {
		t.Error("PredictTask accepted a failing program")
	}
}

// TestCodeKnobs: generated predict programs respect size, value and trace bounds; write targets the length.
func TestCodeKnobs(t *testing.T) {
	c, err := NewCode(Options{Params: map[string]string{"size": "3", "max_value": "50", "max_trace": "12", "write_len": "3"}})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(2, 2))
	kinds := map[string]int{}
	for range 1000 {
		task := c.Draw(rng)
		kinds[task.Meta["kind"]]++
		switch task.Meta["kind"] {
		case "predict":
			p, err := Parse(task.Meta["program"], DefaultLimits())
			if err != nil {
				t.Fatal(err)
			}
			if n := len(p.stmts); n > 4 { // a loop counts its counter as a statement of the budget
				t.Fatalf("program has %d top-level statements:\n%s", n, task.Meta["program"])
			}
			var trace strings.Builder
			res, err := p.Run(DefaultLimits(), &trace)
			if err != nil || res.MaxAbs > 50 || strings.Count(trace.String(), "\n") > 12 {
				t.Fatalf("program out of bounds (%v, max %d):\n%s", err, res.MaxAbs, task.Meta["program"])
			}
		case "write":
			if n := len(strings.Fields(task.Answer)); n < 2 || n > 3 {
				t.Fatalf("target %q has %d values", task.Answer, n)
			}
		}
	}
	if kinds["predict"] < 400 || kinds["write"] < 400 {
		t.Errorf("kinds drawn: %v", kinds)
	}
}

func TestKVGolden(t *testing.T) {
	k, err := NewKV(Options{Params: map[string]string{"pairs": "6", "kinds": "multihop", "hops": "3", "distance": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(9, 9))
	for range 300 {
		task := k.Draw(rng)
		lines := strings.Split(task.Prompt, "\n")
		if len(lines) != 7 {
			t.Fatalf("prompt has %d lines:\n%s", len(lines), task.Prompt)
		}
		kv := map[string]string{}
		for _, line := range lines[:6] {
			key, val, ok := strings.Cut(line, "=")
			if !ok || len(key) != 4 || len(val) != 4 || kv[key] != "" {
				t.Fatalf("bad or repeated pair %q", line)
			}
			kv[key] = val
		}
		first, _, _ := strings.Cut(lines[0], "=")
		if want := "Value of " + first + " after 3 lookups?"; lines[6] != want || task.Meta["position"] != "0" || task.Meta["gap"] != "50" {
			t.Fatalf("question %q (meta %v), want %q at position 0, gap 5×10 bytes", lines[6], task.Meta, want)
		}
		// Follow the chain by hand.
		key, steps := first, []string{}
		for range 3 {
			steps = append(steps, key+"="+kv[key])
			key = kv[key]
		}
		if task.Answer != key {
			t.Fatalf("answer %q, want %q", task.Answer, key)
		}
		if r, a := k.Solution(task); r != strings.Join(steps, "; ") || a != key {
			t.Fatalf("Solution = %q, %q; want %q, %q", r, a, strings.Join(steps, "; "), key)
		}
	}
	// A hand-written single task: the documented shape.
	s, err := NewKV(Options{Params: map[string]string{"length": "4000", "kinds": "single", "distance": "0.9"}})
	if err != nil {
		t.Fatal(err)
	}
	task := s.Draw(rng)
	if n := len(task.Prompt); n < 3900 || n > 4050 {
		t.Errorf("prompt of %d bytes for length 4000", n)
	}
	pos, _ := strconv.Atoi(task.Meta["position"])
	pairs, _ := strconv.Atoi(task.Meta["pairs"])
	if pairs != 400 || pos > 39 {
		t.Errorf("pairs %d, position %d: want 400 pairs and the asked one within the first 10%%", pairs, pos)
	}
	if r, _ := s.Solution(task); r != task.Meta["key"]+"="+task.Answer {
		t.Errorf("Solution reasoning %q", r)
	}
}

func TestDatasetFormats(t *testing.T) {
	dir := t.TempDir()
	prompts := []string{"2+2?", "Colour of the sky?", "Largest planet?", "H2O is?"}
	answers := []string{"4", "Blue", "Jupiter", "Water"}
	reasons := []string{"Two and two.", "Rayleigh.", "Gas giant.", "Formula."}
	var sb strings.Builder
	for i := range prompts {
		sb.WriteString(`{"prompt": ` + strconv.Quote(prompts[i]) + `, "answer": ` + strconv.Quote(answers[i]) + `, "why": ` + strconv.Quote(reasons[i]) + ", \"extra\": 1}\n\n")
	}
	jsonl := filepath.Join(dir, "d.jsonl")
	if err := os.WriteFile(jsonl, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	pq := filepath.Join(dir, "d.parquet")
	if err := WriteDatasetParquet(pq, prompts, answers, reasons); err != nil {
		t.Fatal(err)
	}
	// held_out 0.5 so that both splits of four rows are non-empty.
	j, err := NewDataset(Options{HeldOut: 0.5, Params: map[string]string{"path": jsonl, "reasoning_column": "why"}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewDataset(Options{HeldOut: 0.5, Params: map[string]string{"path": pq, "reasoning_column": "reasoning"}})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(j.rows, p.rows) || len(j.rows) != 4 {
		t.Fatalf("JSONL and Parquet rows differ:\n%+v\n%+v", j.rows, p.rows)
	}
	if j.Len(data.SplitTrain)+j.Len(data.SplitHeldOut) != 4 {
		t.Errorf("splits hold %d + %d rows", j.Len(data.SplitTrain), j.Len(data.SplitHeldOut))
	}
	for i, task := range j.rows {
		if task.ID != "ds-"+hash16(prompts[i]) || data.InSplit(task.ID, 0.5) != splitOf(j, i) {
			t.Errorf("row %d: ID %q or its split is wrong", i, task.ID)
		}
		if r, a := j.Solution(task); r != reasons[i] || a != answers[i] {
			t.Errorf("row %d: Solution = %q, %q", i, r, a)
		}
	}
	// Sample returns a copy: editing it leaves the dataset alone.
	task := j.Sample(rand.New(rand.NewPCG(1, 1)), data.SplitTrain)
	task.Meta["reasoning"] = "edited"
	for _, row := range j.rows {
		if row.Meta["reasoning"] == "edited" {
			t.Error("Sample shares Meta with the dataset")
		}
	}
}

func splitOf(d *Dataset, row int) data.Split {
	for s, idx := range d.splits {
		for _, i := range idx {
			if i == row {
				return data.Split(s)
			}
		}
	}
	return -1
}

func TestDatasetErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pq := filepath.Join(dir, "ok.parquet")
	if err := WriteDatasetParquet(pq, []string{"a", "b"}, []string{"1", "2"}, nil); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		params map[string]string
		want   string
	}{
		{map[string]string{"path": filepath.Join(dir, "missing.jsonl")}, "missing.jsonl: no such file"},
		{map[string]string{"path": write("bad.jsonl", "{\"prompt\": \"a\", \"answer\": \"1\"}\n{oops\n")}, "bad.jsonl:2: invalid character"},
		{map[string]string{"path": write("nocol.jsonl", "{\"question\": \"a\", \"answer\": \"1\"}\n")}, `nocol.jsonl:1: no field "prompt"`},
		{map[string]string{"path": write("num.jsonl", "{\"prompt\": \"a\", \"answer\": 1}\n")}, `num.jsonl:1: field "answer" must be a string, got 1`},
		{map[string]string{"path": write("empty.jsonl", "{\"prompt\": \"a\", \"answer\": \"  \"}\n")}, "empty.jsonl: row 1: empty answer"},
		{map[string]string{"path": write("think.jsonl", "{\"prompt\": \"a\", \"answer\": \"1\", \"r\": \"x</think>y\"}\n"), "reasoning_column": "r"}, `think.jsonl: row 1: r contains "</think>"`},
		{map[string]string{"path": write("one.jsonl", "{\"prompt\": \"a\", \"answer\": \"1\"}\n")}, "one.jsonl: none of the 1 rows falls in the"},
		{map[string]string{"path": pq, "answer_column": "label"}, `ok.parquet: no column "label" (columns: prompt, answer)`},
		{map[string]string{"path": write("x.csv", "a,b\n"), "format": "csv"}, `params.format: "csv" is not jsonl or parquet`},
		{map[string]string{"path": write("notpq.parquet", "not parquet")}, "dataset: parquet"},
	}
	for _, tc := range cases {
		_, err := NewDataset(Options{Params: tc.params})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewDataset(%v) = %v, want an error containing %q", tc.params, err, tc.want)
		}
	}
}

// TestKVFollowUps: follow-ups change documents only. The task drawn with followups=N is the task drawn without
// them; its follow-ups ask N other keys of the same context with their values; the pre-training document
// renders them as further user and assistant turns after the task's own answer, each turn ended by the EOS
// literal; and data.params reach a format-text generator (a misspelt key is named).
// TestKVFiller: with filler the prompt is the same pairs, in their order, at random lines of noise sentences
// (at least filler bytes of them), the question and answer are those of the task without filler (the filler is
// drawn last), and the gap is the bytes after the asked pair's line.
func TestKVFiller(t *testing.T) {
	plain := mustKV(t, map[string]string{"pairs": "4", "kinds": "single"})
	filled := mustKV(t, map[string]string{"pairs": "4", "kinds": "single", "filler": "500"})
	noise := map[string]bool{}
	for _, s := range needleNoise {
		noise[s] = true
	}
	for i := range 200 {
		a, b := plain.Draw(rand.New(rand.NewPCG(5, uint64(i)))), filled.Draw(rand.New(rand.NewPCG(5, uint64(i))))
		if a.Answer != b.Answer || a.Meta["key"] != b.Meta["key"] || a.Meta["position"] != b.Meta["position"] {
			t.Fatalf("task %d: filler changed the task: %v vs %v", i, a.Meta, b.Meta)
		}
		aLines, bLines := strings.Split(a.Prompt, "\n"), strings.Split(b.Prompt, "\n")
		if aLines[len(aLines)-1] != bLines[len(bLines)-1] {
			t.Fatalf("task %d: question %q, want %q", i, bLines[len(bLines)-1], aLines[len(aLines)-1])
		}
		var pairs []string
		noiseBytes, gap, asked := 0, 0, -1
		for j, line := range bLines[:len(bLines)-1] {
			switch {
			case noise[line]:
				noiseBytes += len(line) + 1
			case strings.Contains(line, "="):
				pairs = append(pairs, line)
				if len(pairs) == mustAtoi(t, a.Meta["position"])+1 {
					asked = j
				}
			default:
				t.Fatalf("task %d: line %q is neither noise nor a pair", i, line)
			}
			if asked >= 0 && j > asked {
				gap += len(line) + 1
			}
		}
		if !slices.Equal(pairs, aLines[:4]) {
			t.Fatalf("task %d: pairs %q, want %q in order", i, pairs, aLines[:4])
		}
		if noiseBytes < 500 || noiseBytes > 500+len("There and back again.\n") {
			t.Fatalf("task %d: %d bytes of noise for filler 500", i, noiseBytes)
		}
		if got := mustAtoi(t, b.Meta["gap"]); got != gap {
			t.Fatalf("task %d: meta gap %d, want %d", i, got, gap)
		}
	}

	// filler_min: each task draws its filler from [filler_min, filler]
	mixed := mustKV(t, map[string]string{"pairs": "4", "kinds": "single", "filler": "300", "filler_min": "0"})
	short, long := 0, 0
	for i := range 200 {
		task := mixed.Draw(rand.New(rand.NewPCG(6, uint64(i))))
		noiseBytes := 0
		for _, line := range strings.Split(task.Prompt, "\n") {
			if noise[line] {
				noiseBytes += len(line) + 1
			}
		}
		if noiseBytes > 300+len("There and back again.\n") {
			t.Fatalf("task %d: %d bytes of noise for filler ≤ 300", i, noiseBytes)
		}
		if noiseBytes < 60 {
			short++
		}
		if noiseBytes >= 240 {
			long++
		}
	}
	if short < 20 || long < 20 {
		t.Errorf("filler_min 0, filler 300: %d tasks with under 60 bytes of noise and %d with 240 or more of 200, want a uniform spread", short, long)
	}
	if _, err := NewKV(Options{Params: map[string]string{"filler": "100", "filler_min": "200"}}); err == nil || !strings.Contains(err.Error(), "filler_min") {
		t.Errorf("filler_min above filler: err = %v", err)
	}
}

func TestKVFollowUps(t *testing.T) {
	plain := mustKV(t, map[string]string{"pairs": "12", "kinds": "single,multihop"})
	withFU := mustKV(t, map[string]string{"pairs": "12", "kinds": "single,multihop", "followups": "5"})
	for seed := range uint64(100) {
		a, b := plain.Draw(rand.New(rand.NewPCG(seed, 4))), withFU.Draw(rand.New(rand.NewPCG(seed, 4)))
		if a.ID != b.ID || a.Prompt != b.Prompt || a.Answer != b.Answer {
			t.Fatalf("followups changed the task: %q vs %q", a.Prompt, b.Prompt)
		}
		fus := withFU.FollowUps(b)
		if len(fus) != 5 || plain.FollowUps(a) != nil {
			t.Fatalf("%d follow-ups with followups=5, %d without", len(fus), len(plain.FollowUps(a)))
		}
		kv := map[string]string{}
		for _, line := range strings.Split(b.Prompt, "\n")[:12] {
			key, val, _ := strings.Cut(line, "=")
			kv[key] = val
		}
		seen := map[string]bool{}
		for _, step := range strings.Split(b.Meta["steps"], "; ") {
			key, _, _ := strings.Cut(step, "=")
			seen[key] = true // the task's own lookups are not asked again
		}
		for _, f := range fus {
			key := strings.TrimSuffix(strings.TrimPrefix(f.Question, "Value of "), "?")
			if kv[key] == "" || seen[key] || f.Answer != kv[key] || f.Reasoning != key+"="+kv[key] {
				t.Fatalf("follow-up %+v of %q: want another key of the context with its value", f, b.Prompt)
			}
			seen[key] = true
		}
	}
	cfg := data.CorpusConfig{Source: "synthetic", Generator: "kvretrieval", HeldOut: 0.05, Ops: []string{"single"},
		Params: map[string]string{"pairs": "8", "followups": "2"}}
	c, err := data.OpenCorpus(cfg, data.SplitTrain)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := c.Next()
	if err != nil {
		t.Fatal(err)
	}
	turns := strings.Split(doc, litEOS)
	if len(turns) != 3 {
		t.Fatalf("document has %d turns, want 3:\n%s", len(turns), doc)
	}
	for i, turn := range turns {
		if !strings.HasPrefix(turn, litUser) || strings.Count(turn, litAsst+litThinkBeg) != 1 || strings.Count(turn, litThinkEnd) != 1 {
			t.Errorf("turn %d is not one user and one assistant turn: %q", i, turn)
		}
	}
	if strings.Count(turns[0], "\n") != 8 {
		t.Errorf("first turn %q: want the 8-pair context", turns[0])
	}
	cfg.Params = map[string]string{"followup": "2"}
	if _, err := data.OpenCorpus(cfg, data.SplitTrain); err == nil || !strings.Contains(err.Error(), "followup") {
		t.Errorf("misspelt data.params key: err = %v, want it named", err)
	}
}

func TestFlawParam(t *testing.T) {
	math, _ := New("math", Options{})
	logic, _ := New("logic", Options{})
	kv, _ := New("kvretrieval", Options{})
	for _, c := range []struct {
		params  map[string]string
		f       Family
		def     float64
		want    float64
		wantErr string
	}{
		{nil, math, 0.5, 0.5, ""},
		{map[string]string{"flaw": "0.25"}, math, 0.5, 0.25, ""},
		{map[string]string{"flaw": "0"}, logic, 0, 0, ""},
		{map[string]string{"flaw": "x"}, math, 0, 0, `data.params.flaw: want a fraction in [0, 1], got "x"`},
		{map[string]string{"flaw": "1.5"}, math, 0, 0, `got "1.5"`},
		{map[string]string{"flaw": "0.3"}, logic, 0, 0.3, ""},
		{map[string]string{"flaw": "0.3"}, kv, 0, 0, "family kvretrieval has no flawed solutions"},
	} {
		got, err := Flaw(c.params, c.f, c.def)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("Flaw(%v, %s): err %v, want %q", c.params, c.f.Name(), err, c.wantErr)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("Flaw(%v, %s) = %v, %v; want %v", c.params, c.f.Name(), got, err, c.want)
		}
	}
}

func TestNeedleGolden(t *testing.T) {
	// A hand-written task: the documented shape, solution and verdicts.
	task := Task{ID: "needle-x", Family: "needle", Answer: "4831", Meta: map[string]string{"key": "K"}}
	n, err := NewNeedle(Options{})
	if err != nil {
		t.Fatal(err)
	}
	r, a := n.Solution(task)
	if r != "K is 4831" || a != "4831" {
		t.Errorf("Solution = %q, %q", r, a)
	}
	for completion, want := range map[string]bool{
		"</think>4831":    true,
		"x</think> 4831 ": true,
		"x</think>4830":   false,
		"x</think>48310":  false,
		"4831":            false, // no </think>: no answer
	} {
		if got := n.Verify(task, completion, "stop").Correct; got != want {
			t.Errorf("Verify(%q) = %v, want %v", completion, got, want)
		}
	}

	// Drawn tasks: every line is a noise sentence or a needle, needles have distinct keys and numbers of the
	// asked digits, the asked one lies in the first 1−distance of the lines, and the answer is its number.
	n, err = NewNeedle(Options{Params: map[string]string{"length": "2000", "needles": "6", "digits": "3", "distance": "0.75", "followups": "2"}})
	if err != nil {
		t.Fatal(err)
	}
	noise := map[string]bool{}
	for _, s := range needleNoise {
		noise[s] = true
	}
	rng := rand.New(rand.NewPCG(4, 4))
	for range 200 {
		task := n.Draw(rng)
		lines := strings.Split(task.Prompt, "\n")
		question := lines[len(lines)-1]
		lines = lines[:len(lines)-1]
		if hay := len(task.Prompt) - len(question); hay < 2000 || hay > 2000+40 {
			t.Fatalf("haystack of %d bytes for length 2000", hay)
		}
		numbers := map[string]string{}
		asked := -1
		for i, line := range lines {
			if noise[line] {
				continue
			}
			var key, num string
			rest, ok := strings.CutPrefix(line, "The magic number for ")
			if ok {
				key, num, ok = strings.Cut(strings.TrimSuffix(rest, "."), " is ")
			}
			if !ok || len(num) != 3 || num[0] == '0' || numbers[key] != "" || !slices.Contains(needleKeys, key) {
				t.Fatalf("line %d %q is neither noise nor a fresh needle", i, line)
			}
			for _, v := range numbers {
				if v == num {
					t.Fatalf("number %s repeated", num)
				}
			}
			numbers[key] = num
			if question == "What is the magic number for "+key+"?" {
				asked = i
			}
		}
		if len(numbers) != 6 || asked < 0 || task.Answer != numbers[task.Meta["key"]] {
			t.Fatalf("needles %v, asked line %d, answer %q, meta %v", numbers, asked, task.Answer, task.Meta)
		}
		if limit := float64(len(lines)-1) * 0.25; float64(asked) > limit || task.Meta["line"] != strconv.Itoa(asked) {
			t.Fatalf("asked needle on line %d of %d (meta %s), want ≤ %.1f", asked, len(lines), task.Meta["line"], limit)
		}
		gap := 0
		for _, line := range lines[asked+1:] {
			gap += len(line) + 1
		}
		if task.Meta["gap"] != strconv.Itoa(gap) {
			t.Fatalf("gap %s, want %d", task.Meta["gap"], gap)
		}
		fus := n.FollowUps(task)
		if len(fus) != 2 {
			t.Fatalf("%d follow-ups, want 2", len(fus))
		}
		for _, f := range fus {
			key := strings.TrimSuffix(strings.TrimPrefix(f.Question, "What is the magic number for "), "?")
			if f.Answer != numbers[key] || f.Reasoning != key+" is "+f.Answer || key == task.Meta["key"] {
				t.Fatalf("follow-up %+v (needles %v)", f, numbers)
			}
		}
	}
}

// TestFlawedProcedures checks the flawed solutions of logic and code against independent computations on
// random tasks: a formula with its "not"s deleted, the list sorted as strings, the program with "while"
// replaced by "if". A flawed solution exists exactly when its answer differs from the right one.
func TestFlawedProcedures(t *testing.T) {
	logic, err := NewLogic(Options{Params: map[string]string{"sort_len": "6", "bool_ops": "4"}})
	if err != nil {
		t.Fatal(err)
	}
	code, err := NewCode(Options{Params: map[string]string{"kinds": "predict", "loop_prob": "0.5"}})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 1))
	counts := map[string]int{}
	for range 2000 {
		for _, f := range []Family{logic, code} {
			task := f.(Drawer).Draw(rng)
			var want string
			switch kind := task.Meta["kind"]; kind {
			case "bool":
				want = BoolTask(strings.ReplaceAll(task.Meta["formula"], "not ", "")).Answer
			case "sort":
				xs, _ := parseInts(task.Meta["list"])
				slices.SortFunc(xs, func(a, b int) int { return strings.Compare(strconv.Itoa(a), strconv.Itoa(b)) })
				want = joinInts(xs)
			case "predict":
				res, err := Run(strings.ReplaceAll(task.Meta["program"], "while ", "if "), DefaultLimits())
				want = normSpaces(res.Output)
				if err != nil { // e.g. a variable set only in the second iteration: no flawed version
					want = task.Answer
				}
			}
			reasoning, answer, ok := f.(FlawedSolver).FlawedSolution(task)
			if ok != (want != task.Answer) || (ok && answer != want) || (ok && reasoning == "") {
				t.Fatalf("%s: FlawedSolution = %q, %q, %v; want answer %q (right %q)", task.ID, reasoning, answer, ok, want, task.Answer)
			}
			if ok {
				counts[task.Meta["kind"]]++
			}
		}
	}
	// Each procedure changes a good share of the answers (the recipes rely on it).
	for _, kind := range []string{"bool", "sort", "predict"} {
		if counts[kind] < 150 {
			t.Errorf("%s: %d flawed answers of ~1000 tasks", kind, counts[kind])
		}
	}
	t.Logf("tasks with a flawed answer: %v", counts)
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func mustKV(t *testing.T, params map[string]string) *KV {
	t.Helper()
	k, err := NewKV(Options{Params: params})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestKVRecall: recall adds one turn "List the pairs." whose reasoning re-lists distinct pairs of the context
// other than the asked ones, after the follow-ups; the task is unchanged.
func TestKVRecall(t *testing.T) {
	plain := mustKV(t, map[string]string{"pairs": "10", "kinds": "single,multihop"})
	for _, tc := range []struct{ recall, followups, want int }{{4, 0, 4}, {4, 2, 4}, {50, 0, 10}, {50, 3, 10}} {
		k := mustKV(t, map[string]string{"pairs": "10", "kinds": "single,multihop",
			"recall": strconv.Itoa(tc.recall), "followups": strconv.Itoa(tc.followups)})
		for seed := range uint64(50) {
			a, b := plain.Draw(rand.New(rand.NewPCG(seed, 9))), k.Draw(rand.New(rand.NewPCG(seed, 9)))
			if a.ID != b.ID || a.Prompt != b.Prompt || a.Answer != b.Answer {
				t.Fatalf("recall changed the task: %q vs %q", a.Prompt, b.Prompt)
			}
			fus := k.FollowUps(b)
			last := fus[len(fus)-1]
			if last.Question != "List the pairs." || last.Answer != "" {
				t.Fatalf("last turn %+v, want the recall question with an empty answer", last)
			}
			asked := map[string]bool{}
			for _, step := range strings.Split(b.Meta["steps"], "; ") {
				asked[step] = true
			}
			context := map[string]bool{}
			for _, line := range strings.Split(b.Prompt, "\n")[:10] {
				context[line] = true
			}
			lines := strings.Split(last.Reasoning, "\n")
			// all pairs but the task's own lookups when recall exceeds them (hops 2 for multihop)
			want := min(tc.want, 10-len(asked))
			if len(lines) != want {
				t.Fatalf("recall %d: %d lines %q, want %d", tc.recall, len(lines), last.Reasoning, want)
			}
			seen := map[string]bool{}
			for _, l := range lines {
				if !context[l] || asked[l] || seen[l] {
					t.Fatalf("recall line %q: want a distinct pair of the context, not asked (%q)", l, b.Prompt)
				}
				seen[l] = true
			}
			if len(fus) != 1+min(tc.followups, 10-len(asked)) {
				t.Fatalf("%d turns with followups %d and recall", len(fus), tc.followups)
			}
		}
	}
	if _, err := NewKV(Options{Params: map[string]string{"recall": "-1"}}); err == nil || !strings.Contains(err.Error(), "recall") {
		t.Errorf("recall -1: err = %v", err)
	}
}

// TestNeedleLengthMin: with length_min each haystack's size is drawn from [length_min, length]: all of them
// in range (a noise sentence of slack), both ends of the range reached; length_min above length is refused.
func TestNeedleLengthMin(t *testing.T) {
	n, err := NewNeedle(Options{Params: map[string]string{"length": "1000", "length_min": "100", "needles": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 5))
	short, long := 0, 0
	for range 300 {
		task := n.Draw(rng)
		hay := strings.LastIndex(task.Prompt, "\n") + 1
		if hay < 100 || hay > 1000+len("There and back again.\n") {
			t.Fatalf("haystack of %d bytes with length_min 100, length 1000", hay)
		}
		if hay < 250 {
			short++
		}
		if hay > 850 {
			long++
		}
	}
	if short < 25 || long < 25 {
		t.Errorf("%d haystacks under 250 bytes and %d over 850 of 300, want a uniform spread", short, long)
	}
	if _, err := NewNeedle(Options{Params: map[string]string{"length": "100", "length_min": "200"}}); err == nil || !strings.Contains(err.Error(), "length_min") {
		t.Errorf("length_min above length: err = %v", err)
	}
}

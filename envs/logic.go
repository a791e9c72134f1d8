// logic.go implements the logic family, two sub-kinds with unique answers:
//
//   - sort: "Sort: 42 7 19 7 88" → "7 7 19 42 88". The worked solution is selection sort, one step per
//     element: "min 7, rest 42 19 7 88; min 7, rest 42 19 88; ...; min 88". The verifier takes the numbers of
//     the answer (separated by spaces and/or commas, optionally in [ ]) and wants exactly the sorted list.
//   - bool: "Evaluate: (T and not F) or F" → "T". A fully parenthesised formula over the constants T and F
//     with and, or, not; the worked solution evaluates innermost first, one operator per step:
//     "not F=T; T and T=T; T or F=T". The verifier accepts T, F, true, false (any case).
//
// Params (all optional):
//
//	kinds     comma list of sort, bool (default both; repeats weight)
//	sort_len  longest list (default 6, 2..30; lengths uniform in 2..sort_len)
//	sort_max  largest value (default 99, 1..9999; values uniform in 0..sort_max)
//	bool_ops  most binary operators of a formula (default 4, 1..20; count uniform in 1..bool_ops)
//	not_prob  chance that a sub-formula is negated (default 0.25, 0..0.9)
//
// FlawedSolution (for pre-training corpora with data.params.flaw) sorts the numbers as strings of digits and
// evaluates formulas with every "not" dropped.
//
// IDs are "sort:<list>" and "bool:<formula>".

package envs

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

	"github.com/sparrow-rl/sparrow/data"
)

// Logic is the logic family. Build it with NewLogic or New("logic", ...).
type Logic struct {
	kinds            []string
	sortLen, sortMax int
	boolOps          int
	notProb          float64
	heldOut          float64
	reward           RewardOptions
}

var _ interface {
	Family
	Drawer
	FlawedSolver
} = (*Logic)(nil)

// NewLogic builds the logic family.
func NewLogic(opts Options) (*Logic, error) {
	h, r, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	p := newParams("logic", opts.Params)
	l := &Logic{heldOut: h, reward: r}
	l.kinds = p.list("kinds", []string{"sort", "bool"}, []string{"sort", "bool"})
	l.sortLen = p.int("sort_len", 6, 2, 30)
	l.sortMax = p.int("sort_max", 99, 1, 9999)
	l.boolOps = p.int("bool_ops", 4, 1, 20)
	l.notProb = p.float("not_prob", 0.25, 0, 0.9)
	if err := p.done(); err != nil {
		return nil, err
	}
	if err := probeSplits("logic", l, h); err != nil {
		return nil, err
	}
	return l, nil
}

// Name returns "logic".
func (l *Logic) Name() string { return "logic" }

// Sample draws a task of split.
func (l *Logic) Sample(rng *rand.Rand, split data.Split) Task {
	return sampleSplit(l, rng, split, l.heldOut)
}

// Draw draws a task regardless of the split.
func (l *Logic) Draw(rng *rand.Rand) Task {
	switch l.kinds[rng.IntN(len(l.kinds))] {
	case "sort":
		n := 2 + rng.IntN(l.sortLen-1)
		xs := make([]int, n)
		for i := range xs {
			xs[i] = rng.IntN(l.sortMax + 1)
		}
		return SortTask(xs)
	default:
		n := 1 + rng.IntN(l.boolOps)
		return BoolTask(randomFormula(rng, n, l.notProb).String())
	}
}

func joinInts(xs []int) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.Itoa(x)
	}
	return strings.Join(parts, " ")
}

// SortTask builds the sort task of xs.
func SortTask(xs []int) Task {
	list := joinInts(xs)
	sorted := slices.Clone(xs)
	slices.Sort(sorted)
	return Task{
		ID: "sort:" + list, Family: "logic", Prompt: "Sort: " + list, Answer: joinInts(sorted),
		Meta: map[string]string{"kind": "sort", "list": list},
	}
}

// BoolTask builds the bool task of a formula in the syntax of formula.String.
func BoolTask(formula string) Task {
	f, err := parseFormula(formula)
	ans := ""
	if err == nil {
		ans = boolText(f.eval())
	}
	return Task{
		ID: "bool:" + formula, Family: "logic", Prompt: "Evaluate: " + formula, Answer: ans,
		Meta: map[string]string{"kind": "bool", "formula": formula},
	}
}

func boolText(v bool) string {
	if v {
		return "T"
	}
	return "F"
}

// Solution returns the worked solution of t.
func (l *Logic) Solution(t Task) (reasoning, answer string) {
	switch t.Meta["kind"] {
	case "sort":
		xs, ok := parseInts(t.Meta["list"])
		if !ok {
			return "", t.Answer
		}
		reasoning, _ := selectionSort(xs, func(a, b int) bool { return a < b })
		return reasoning, t.Answer
	case "bool":
		f, err := parseFormula(t.Meta["formula"])
		if err != nil {
			return "", t.Answer
		}
		var steps []string
		v := f.trace(&steps, false)
		return strings.Join(steps, "; "), boolText(v)
	}
	return "", t.Answer
}

// selectionSort writes the selection-sort trace of xs under less ("min 7, rest 42 19 88; ...; min 88") and
// returns it with the order it produces.
func selectionSort(xs []int, less func(a, b int) bool) (trace string, sorted []int) {
	var sb strings.Builder
	rest := slices.Clone(xs)
	for len(rest) > 0 {
		if sb.Len() > 0 {
			sb.WriteString("; ")
		}
		i := 0
		for j := range rest {
			if less(rest[j], rest[i]) {
				i = j
			}
		}
		sb.WriteString("min " + strconv.Itoa(rest[i]))
		sorted = append(sorted, rest[i])
		rest = slices.Delete(rest, i, i+1)
		if len(rest) > 0 {
			sb.WriteString(", rest " + joinInts(rest))
		}
	}
	return sb.String(), sorted
}

// FlawedSolution works the task with a systematic mistake: sort compares the numbers as strings of digits
// (so 19 comes before 7: "min 19, rest 7 42"), bool drops every negation (no "not" step; "not F" is taken
// as F). ok is false when the mistake gives the right answer.
func (l *Logic) FlawedSolution(t Task) (reasoning, answer string, ok bool) {
	switch t.Meta["kind"] {
	case "sort":
		xs, ok := parseInts(t.Meta["list"])
		if !ok {
			return "", "", false
		}
		reasoning, sorted := selectionSort(xs, func(a, b int) bool { return strconv.Itoa(a) < strconv.Itoa(b) })
		answer = joinInts(sorted)
		return reasoning, answer, answer != t.Answer
	case "bool":
		f, err := parseFormula(t.Meta["formula"])
		if err != nil {
			return "", "", false
		}
		var steps []string
		answer = boolText(f.trace(&steps, true))
		return strings.Join(steps, "; "), answer, answer != t.Answer
	}
	return "", "", false
}

// Verify grades the answer after "</think>".
func (l *Logic) Verify(t Task, completion, finishReason string) Reward {
	return score(l.reward, completion, finishReason, func(ans string) bool {
		switch t.Meta["kind"] {
		case "sort":
			got, ok := parseInts(ans)
			want, ok2 := parseInts(t.Answer)
			return ok && ok2 && slices.Equal(got, want)
		case "bool":
			switch strings.ToLower(strings.TrimSpace(ans)) {
			case "t", "true":
				return t.Answer == "T"
			case "f", "false":
				return t.Answer == "F"
			}
		}
		return false
	})
}

// maxSortAnswer bounds the answers parseInts reads.
const maxSortAnswer = 4096

// parseInts reads non-negative integers separated by spaces and/or commas, optionally inside [ ].
func parseInts(s string) ([]int, bool) {
	if len(s) > maxSortAnswer {
		return nil, false
	}
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		s = s[1 : len(s)-1]
	}
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r' })
	if len(fields) == 0 {
		return nil, false
	}
	xs := make([]int, len(fields))
	for i, f := range fields {
		if len(f) > 9 {
			return nil, false
		}
		for j := 0; j < len(f); j++ {
			if f[j] < '0' || f[j] > '9' {
				return nil, false
			}
		}
		xs[i], _ = strconv.Atoi(f)
	}
	return xs, true
}

// formula is a boolean formula: a constant, a negation or a binary and/or.
type formula struct {
	op          string // "T", "F", "not", "and", "or"
	left, right *formula
}

// randomFormula builds a formula with n binary operators; each sub-formula is negated with probability notProb.
func randomFormula(rng *rand.Rand, n int, notProb float64) *formula {
	var f *formula
	if n == 0 {
		f = &formula{op: []string{"T", "F"}[rng.IntN(2)]}
	} else {
		k := rng.IntN(n) // operators on the left
		f = &formula{op: []string{"and", "or"}[rng.IntN(2)], left: randomFormula(rng, k, notProb), right: randomFormula(rng, n-1-k, notProb)}
	}
	if rng.Float64() < notProb {
		f = &formula{op: "not", left: f}
	}
	return f
}

// String renders f: binary sub-formulas inside parentheses, the top level without.
func (f *formula) String() string { return f.render(true) }

func (f *formula) render(top bool) string {
	switch f.op {
	case "not":
		return "not " + f.left.render(false)
	case "and", "or":
		s := f.left.render(false) + " " + f.op + " " + f.right.render(false)
		if top {
			return s
		}
		return "(" + s + ")"
	default:
		return f.op
	}
}

func (f *formula) eval() bool {
	switch f.op {
	case "T":
		return true
	case "F":
		return false
	case "not":
		return !f.left.eval()
	case "and":
		return f.left.eval() && f.right.eval()
	default:
		return f.left.eval() || f.right.eval()
	}
}

// trace evaluates f innermost first (left before right), appending one step per operator; dropNot skips
// every negation (the flawed procedure).
func (f *formula) trace(steps *[]string, dropNot bool) bool {
	switch f.op {
	case "T":
		return true
	case "F":
		return false
	case "not":
		v := f.left.trace(steps, dropNot)
		if dropNot {
			return v
		}
		*steps = append(*steps, "not "+boolText(v)+"="+boolText(!v))
		return !v
	default:
		a := f.left.trace(steps, dropNot)
		b := f.right.trace(steps, dropNot)
		v := a && b
		if f.op == "or" {
			v = a || b
		}
		*steps = append(*steps, boolText(a)+" "+f.op+" "+boolText(b)+"="+boolText(v))
		return v
	}
}

// maxFormulaDepth bounds the nesting parseFormula accepts.
const maxFormulaDepth = 200

// parseFormula parses the syntax of formula.String (the top level may also be parenthesised).
func parseFormula(s string) (*formula, error) {
	p := &formulaParser{toks: strings.Fields(strings.NewReplacer("(", " ( ", ")", " ) ").Replace(s))}
	f, err := p.binary(0)
	if err != nil {
		return nil, err
	}
	if p.i != len(p.toks) {
		return nil, errFormula("trailing " + p.toks[p.i])
	}
	return f, nil
}

type errFormula string

func (e errFormula) Error() string { return "formula: " + string(e) }

type formulaParser struct {
	toks []string
	i    int
}

func (p *formulaParser) peek() string {
	if p.i < len(p.toks) {
		return p.toks[p.i]
	}
	return ""
}

// binary parses operand (and|or operand)? : formulas are fully parenthesised, so at most one operator per level.
func (p *formulaParser) binary(depth int) (*formula, error) {
	left, err := p.unary(depth)
	if err != nil {
		return nil, err
	}
	if op := p.peek(); op == "and" || op == "or" {
		p.i++
		right, err := p.unary(depth)
		if err != nil {
			return nil, err
		}
		return &formula{op: op, left: left, right: right}, nil
	}
	return left, nil
}

func (p *formulaParser) unary(depth int) (*formula, error) {
	if depth > maxFormulaDepth {
		return nil, errFormula("too deep")
	}
	switch tok := p.peek(); tok {
	case "T", "F":
		p.i++
		return &formula{op: tok}, nil
	case "not":
		p.i++
		f, err := p.unary(depth + 1)
		if err != nil {
			return nil, err
		}
		return &formula{op: "not", left: f}, nil
	case "(":
		p.i++
		f, err := p.binary(depth + 1)
		if err != nil {
			return nil, err
		}
		if p.peek() != ")" {
			return nil, errFormula("missing )")
		}
		p.i++
		return f, nil
	case "":
		return nil, errFormula("unexpected end")
	default:
		return nil, errFormula("unexpected " + tok)
	}
}

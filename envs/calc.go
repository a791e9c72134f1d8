// calc.go implements the calc tool environment: multi-step integer arithmetic on numbers too long for a
// small policy to compute reliably in its head ("Compute 482913*417+90533."), with one tool,
// calc(expr), an exact calculator (math/big) over + - * and parentheses. The worked solution calls calc with
// the task's expression and answers with the result; the answer is verified exactly (score: correctness,
// format, length penalty).
//
// Params (all optional):
//
//	digits          digits of the first and last operand (default 6, 2..12)
//	mul_digits      digits of the multiplier (default 3, 1..6)
//	min_digits      with min_digits < digits, each of the two operands draws its digits uniformly from
//	                [min_digits, digits] (default digits: fixed), so that the operands, the expression and
//	                the result vary in length and a policy can copy them only by content, not by a fixed
//	                offset (2..digits)
//	min_mul_digits  the same for the multiplier (default mul_digits, 1..mul_digits)
//
// IDs are "calc:<expression>". The calculator refuses expressions over 256 bytes, numbers over 40 digits and
// results over 80 digits (an error result), so a call's time and memory are bounded.

package envs

import (
	"context"
	"fmt"
	"math/big"
	"math/rand/v2"
	"strings"

	"github.com/sparrow-rl/sparrow/data"
)

// Calc is the calc tool environment.
type Calc struct {
	heldOut                 float64
	reward                  RewardOptions
	digits, mulDigits       int
	minDigits, minMulDigits int
	tools                   []Tool
}

// NewCalc builds the calc environment from opts.
func NewCalc(opts Options) (*Calc, error) {
	h, r, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	p := newParams("calc", opts.Params)
	c := &Calc{heldOut: h, reward: r, tools: []Tool{Calculator{}}}
	c.digits = p.int("digits", 6, 2, 12)
	c.mulDigits = p.int("mul_digits", 3, 1, 6)
	c.minDigits = p.int("min_digits", c.digits, 2, c.digits)
	c.minMulDigits = p.int("min_mul_digits", c.mulDigits, 1, c.mulDigits)
	if err := p.done(); err != nil {
		return nil, err
	}
	if err := probeSplits("calc", c, h); err != nil {
		return nil, err
	}
	return c, nil
}

// Name returns "calc".
func (c *Calc) Name() string { return "calc" }

// Tools returns the calculator.
func (c *Calc) Tools() []Tool { return c.tools }

// System returns the system text of calc episodes.
func (c *Calc) System() string { return "" }

// Sample draws a task of split.
func (c *Calc) Sample(rng *rand.Rand, split data.Split) Task {
	return sampleSplit(c, rng, split, c.heldOut)
}

func randDigits(rng *rand.Rand, n int) int64 {
	lo := int64(1)
	for range n - 1 {
		lo *= 10
	}
	return lo + rng.Int64N(9*lo)
}

// drawLen draws a length uniformly from [lo, hi]; a fixed length (lo == hi) draws nothing, so that the
// tasks of a fixed-length calc are those it drew before the range existed.
func drawLen(rng *rand.Rand, lo, hi int) int {
	if lo == hi {
		return lo
	}
	return lo + rng.IntN(hi-lo+1)
}

// Draw draws a task regardless of the split: a*b+c or a*b-c.
func (c *Calc) Draw(rng *rand.Rand) Task {
	a := randDigits(rng, drawLen(rng, c.minDigits, c.digits))
	b := randDigits(rng, drawLen(rng, c.minMulDigits, c.mulDigits))
	d := randDigits(rng, drawLen(rng, c.minDigits, c.digits))
	op := "+-"[rng.IntN(2)]
	expr := fmt.Sprintf("%d*%d%c%d", a, b, op, d)
	v, _ := EvalArith(expr)
	return Task{ID: "calc:" + expr, Family: "calc", Prompt: "Compute " + expr + ".", Answer: v, Meta: map[string]string{"expr": expr}}
}

// Verify grades the final answer: the exact integer.
func (c *Calc) Verify(t Task, completion, finishReason string) Reward {
	return score(c.reward, completion, finishReason, func(ans string) bool { return strings.TrimSpace(ans) == t.Answer })
}

// Solution is the final turn of the right episode (after the result came back).
func (c *Calc) Solution(t Task) (reasoning, answer string) {
	if t.Meta == nil { // a task this environment did not make
		return "", t.Answer
	}
	return "calc gave " + t.Answer + ".", t.Answer
}

// perturb changes one digit of a decimal string (not the leading one to 0), deterministically from rng.
func perturb(rng *rand.Rand, s string) string {
	b := []byte(s)
	var idx []int
	for i, ch := range b {
		if ch >= '0' && ch <= '9' {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return s + "1"
	}
	i := idx[rng.IntN(len(idx))]
	d := b[i] - '0'
	nd := (d + 1 + byte(rng.IntN(9))) % 10 // never d
	if nd == 0 && (i == 0 || b[i-1] < '0' || b[i-1] > '9') {
		nd = d%9 + 1 // a leading digit stays non-zero (and differs from d, which is not 0 there)
	}
	b[i] = '0' + nd
	return string(b)
}

// Tempting reports whether t's first operand starts with a digit 1–4, so that the task looks small: the
// tasks a calc corpus's overconfident share answers without calling (Tempter). The mark is the first
// character after "Compute ", where a small policy sees it as easily as search's first letter of a name (a
// one-digit multiplier, in the middle of the expression, was not learned as a mark within 2000 steps).
func (c *Calc) Tempting(t Task) bool {
	expr := t.Meta["expr"]
	return expr != "" && expr[0] >= '1' && expr[0] <= '4'
}

// guess writes a wrong answer of the right answer's length from random digits: the answer of a
// conversation that does not use the calculator's result. It is not derived from the answer (one digit off
// would teach a policy that a result is copied with a digit wrong, and to half-compute products in its head).
func guess(rng *rand.Rand, answer string) string {
	for {
		b := []byte(answer)
		for i, ch := range b {
			if ch >= '0' && ch <= '9' {
				lo := byte(0)
				if i == 0 || b[i-1] < '0' || b[i-1] > '9' {
					lo = 1 // no leading zero
				}
				b[i] = '0' + lo + byte(rng.IntN(10-int(lo)))
			}
		}
		if g := string(b); g != answer {
			return g
		}
	}
}

// Episode writes a worked calc conversation: the call, its result, the answer (or a misuse of the tool).
func (c *Calc) Episode(ctx context.Context, t Task, misuse int) ([]data.Message, error) {
	expr := t.Meta["expr"]
	rng := rand.New(rand.NewPCG(seedOf(t.ID), uint64(misuse+2)))
	msgs := ToolPrompt(c, t)
	if misuse == MisuseNoCall {
		wrong := guess(rng, t.Answer)
		return append(msgs, data.Message{Role: "assistant", ReasoningContent: "I compute it myself.", Content: wrong}), nil
	}
	arg := expr
	if misuse == MisuseMiscopied {
		arg = perturb(rng, expr)
	}
	call := callMessage("Use calc.", data.FunctionCall{Name: "calc", Arguments: `{"expr": ` + data.PyQuote(arg) + `}`})
	results := runCalls(ctx, c, call)
	msgs = append(msgs, call)
	msgs = append(msgs, results...)
	got := strings.TrimPrefix(results[0].Content, "error: ")
	switch misuse {
	case MisuseIgnored:
		wrong := guess(rng, t.Answer)
		msgs = append(msgs, data.Message{Role: "assistant", ReasoningContent: "I think it is " + wrong + ".", Content: wrong})
	default:
		msgs = append(msgs, data.Message{Role: "assistant", ReasoningContent: "calc gave " + got + ".", Content: got})
	}
	return msgs, nil
}

// seedOf hashes a task id into a seed (FNV-1a).
func seedOf(id string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(id); i++ {
		h ^= uint64(id[i])
		h *= 1099511628211
	}
	return h
}

// Calculator is the calc tool: exact integer arithmetic over + - * and parentheses.
type Calculator struct{}

// Spec describes calc.
func (Calculator) Spec() ToolSpec {
	return ToolSpec{Name: "calc", Description: "integer + - * ( )",
		Parameters: `{"type": "object", "properties": {"expr": {"type": "string"}}}`}
}

// Call evaluates args["expr"].
func (Calculator) Call(ctx context.Context, args map[string]any) (string, error) {
	e, ok := args["expr"].(string)
	if !ok {
		return "", fmt.Errorf("%w: calc needs a string parameter expr", ErrBadArguments)
	}
	for k := range args {
		if k != "expr" {
			return "", fmt.Errorf("%w: calc has no parameter %q", ErrBadArguments, k)
		}
	}
	return EvalArith(e)
}

// Calculator bounds.
const (
	maxExprBytes  = 256
	maxNumDigits  = 40
	maxCalcDigits = 80
	maxCalcDepth  = 16
)

// EvalArith evaluates an integer expression over + - * and parentheses (spaces allowed) exactly.
func EvalArith(expr string) (string, error) {
	if len(expr) > maxExprBytes {
		return "", fmt.Errorf("%w: expression of %d bytes (limit %d)", ErrBadArguments, len(expr), maxExprBytes)
	}
	a := &arith{s: strings.ReplaceAll(expr, " ", "")}
	v, err := a.sum(0)
	if err != nil {
		return "", err
	}
	if a.i != len(a.s) {
		return "", fmt.Errorf("%w: unexpected %q at %d", ErrBadArguments, a.s[a.i:], a.i)
	}
	return v.String(), nil
}

type arith struct {
	s string
	i int
}

func (a *arith) sum(depth int) (*big.Int, error) {
	v, err := a.term(depth)
	if err != nil {
		return nil, err
	}
	for a.i < len(a.s) && (a.s[a.i] == '+' || a.s[a.i] == '-') {
		op := a.s[a.i]
		a.i++
		w, err := a.term(depth)
		if err != nil {
			return nil, err
		}
		if op == '+' {
			v.Add(v, w)
		} else {
			v.Sub(v, w)
		}
		if err := checkSize(v); err != nil {
			return nil, err
		}
	}
	return v, nil
}

func (a *arith) term(depth int) (*big.Int, error) {
	v, err := a.atom(depth)
	if err != nil {
		return nil, err
	}
	for a.i < len(a.s) && a.s[a.i] == '*' {
		a.i++
		w, err := a.atom(depth)
		if err != nil {
			return nil, err
		}
		v.Mul(v, w)
		if err := checkSize(v); err != nil {
			return nil, err
		}
	}
	return v, nil
}

func (a *arith) atom(depth int) (*big.Int, error) {
	if depth > maxCalcDepth {
		return nil, fmt.Errorf("%w: nesting deeper than %d", ErrBadArguments, maxCalcDepth)
	}
	if a.i >= len(a.s) {
		return nil, fmt.Errorf("%w: expression ends early", ErrBadArguments)
	}
	switch ch := a.s[a.i]; {
	case ch == '(':
		a.i++
		v, err := a.sum(depth + 1)
		if err != nil {
			return nil, err
		}
		if a.i >= len(a.s) || a.s[a.i] != ')' {
			return nil, fmt.Errorf("%w: missing ) at %d", ErrBadArguments, a.i)
		}
		a.i++
		return v, nil
	case ch == '-':
		a.i++
		v, err := a.atom(depth + 1)
		if err != nil {
			return nil, err
		}
		return v.Neg(v), nil
	case ch >= '0' && ch <= '9':
		j := a.i
		for j < len(a.s) && a.s[j] >= '0' && a.s[j] <= '9' {
			j++
		}
		if j-a.i > maxNumDigits {
			return nil, fmt.Errorf("%w: a number of %d digits (limit %d)", ErrBadArguments, j-a.i, maxNumDigits)
		}
		v, _ := new(big.Int).SetString(a.s[a.i:j], 10)
		a.i = j
		return v, nil
	default:
		return nil, fmt.Errorf("%w: unexpected %q at %d", ErrBadArguments, a.s[a.i:a.i+1], a.i)
	}
}

func checkSize(v *big.Int) error {
	if len(v.String()) > maxCalcDigits+1 {
		return fmt.Errorf("%w: a result over %d digits", ErrBadArguments, maxCalcDigits)
	}
	return nil
}

// FirstCall is calc(expr) with the task's expression.
func (c *Calc) FirstCall(t Task) (tool, key, value string) { return "calc", "expr", t.Meta["expr"] }

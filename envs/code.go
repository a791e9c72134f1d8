// code.go implements the code family over the tiny language of lang.go, two sub-kinds:
//
//   - predict: "What does this program print?" and a random program; the answer is what it prints, the
//     values separated by spaces. The worked solution is the interpreter's trace (one line per statement
//     executed, variables substituted). The verifier compares the answer with the output, white space
//     collapsed.
//     FlawedSolution is the trace of an executor that takes "while" for "if" (the body runs once).
//   - write: "Write a program that prints: 3 6 9 12"; the answer is a program, which the verifier runs in the
//     sandbox (Limits from the params) and accepts when it finishes without error and prints exactly the
//     target values (white space collapsed). The worked solution explains the pattern and writes a loop.
//
// Params (all optional):
//
//	kinds       comma list of predict, write (default both; repeats weight)
//	size        most top-level statements of a predict program (default 5, 2..20; uniform in 2..size)
//	max_iter    most iterations of a generated loop (default 4, 1..20)
//	max_value   largest absolute value a predict program may compute (default 999, 9..1e9; programs over it
//	            are redrawn)
//	max_trace   most trace lines of a predict program (default 40, 4..1000; longer programs are redrawn)
//	write_len   most values a write target has (default 5, 2..12; uniform in 2..write_len)
//	loop_prob   chance that a top-level statement of a predict program starts its loop (default 0.2, 0..1;
//	            at most one loop per program)
//	max_steps   sandbox step limit for the model's programs (default 100000)
//	max_output  sandbox output limit in bytes (default 4096)
//
// IDs are "code-predict:<16 hex of SHA-256 of the program>" and "code-write:<target>".

package envs

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/sparrow-rl/sparrow/data"
)

// Code is the code family. Build it with NewCode or New("code", ...).
type Code struct {
	kinds              []string
	size, maxIter      int
	loopProb           float64
	maxValue           int64
	maxTrace, writeLen int
	limits             Limits
	heldOut            float64
	reward             RewardOptions
}

var _ interface {
	Family
	Drawer
	FlawedSolver
} = (*Code)(nil)

// NewCode builds the code family.
func NewCode(opts Options) (*Code, error) {
	h, r, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	p := newParams("code", opts.Params)
	c := &Code{heldOut: h, reward: r}
	c.kinds = p.list("kinds", []string{"predict", "write"}, []string{"predict", "write"})
	c.size = p.int("size", 5, 2, 20)
	c.maxIter = p.int("max_iter", 4, 1, 20)
	c.loopProb = p.float("loop_prob", 0.2, 0, 1)
	c.maxValue = int64(p.int("max_value", 999, 9, 1e9))
	c.maxTrace = p.int("max_trace", 40, 4, 1000)
	c.writeLen = p.int("write_len", 5, 2, 12)
	c.limits = DefaultLimits()
	c.limits.MaxSteps = p.int("max_steps", c.limits.MaxSteps, 100, 10_000_000)
	c.limits.MaxOutput = p.int("max_output", c.limits.MaxOutput, 16, 1<<20)
	if err := p.done(); err != nil {
		return nil, err
	}
	if err := probeSplits("code", c, h); err != nil {
		return nil, err
	}
	return c, nil
}

// Name returns "code".
func (c *Code) Name() string { return "code" }

// Limits returns the sandbox limits the verifier runs programs under.
func (c *Code) Limits() Limits { return c.limits }

// Sample draws a task of split.
func (c *Code) Sample(rng *rand.Rand, split data.Split) Task {
	return sampleSplit(c, rng, split, c.heldOut)
}

// Draw draws a task regardless of the split.
func (c *Code) Draw(rng *rand.Rand) Task {
	if c.kinds[rng.IntN(len(c.kinds))] == "write" {
		return c.drawWrite(rng)
	}
	for range 1000 {
		src := genProgram(rng, 2+rng.IntN(c.size-1), c.maxIter, c.loopProb)
		if t, ok := c.predictTask(src); ok {
			return t
		}
	}
	t, _ := c.predictTask("a = 1\nprint a\n") // practically unreachable: 1000 rejected programs in a row
	return t
}

func hash16(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:8])
}

// predictTask builds the predict task of src; ok is false when the program fails, prints nothing, computes
// values over max_value or runs longer than max_trace lines.
func (c *Code) predictTask(src string) (Task, bool) {
	p, err := Parse(src, c.limits)
	if err != nil {
		return Task{}, false
	}
	var trace strings.Builder
	res, err := p.Run(c.limits, &trace)
	if err != nil || res.Output == "" || res.MaxAbs > c.maxValue || strings.Count(trace.String(), "\n") > c.maxTrace {
		return Task{}, false
	}
	return PredictTask(src)
}

// PredictTask builds the predict task of a program (formatted canonically first); ok is false when the
// program does not parse or fails under the default limits.
func PredictTask(src string) (Task, bool) {
	p, err := Parse(src, DefaultLimits())
	if err != nil {
		return Task{}, false
	}
	src = p.Format()
	res, err := p.Run(DefaultLimits(), nil)
	if err != nil {
		return Task{}, false
	}
	return Task{
		ID: "code-predict:" + hash16(src), Family: "code",
		Prompt: "What does this program print?\n" + strings.TrimSuffix(src, "\n"),
		Answer: normSpaces(res.Output),
		Meta:   map[string]string{"kind": "predict", "program": src},
	}, true
}

// WriteTask builds the write task whose target is what program prints; reasoning explains the program.
func WriteTask(program, reasoning string) (Task, bool) {
	p, err := Parse(program, DefaultLimits())
	if err != nil {
		return Task{}, false
	}
	res, err := p.Run(DefaultLimits(), nil)
	if err != nil || res.Output == "" {
		return Task{}, false
	}
	target := normSpaces(res.Output)
	return Task{
		ID: "code-write:" + target, Family: "code",
		Prompt: "Write a program that prints: " + target,
		Answer: target,
		Meta:   map[string]string{"kind": "write", "program": p.Format(), "reasoning": reasoning},
	}, true
}

// Solution returns the trace and the output (predict) or the explanation and a program (write).
func (c *Code) Solution(t Task) (reasoning, answer string) {
	switch t.Meta["kind"] {
	case "predict":
		p, err := Parse(t.Meta["program"], c.limits)
		if err != nil {
			return "", t.Answer
		}
		var trace strings.Builder
		res, _ := p.Run(c.limits, &trace)
		return strings.TrimSuffix(trace.String(), "\n"), normSpaces(res.Output)
	case "write":
		return t.Meta["reasoning"], strings.TrimSuffix(t.Meta["program"], "\n")
	}
	return "", t.Answer
}

// FlawedSolution writes the trace of a predict task as an executor that takes "while" for "if" would: the
// loop's body runs at most once and its condition is not tested again (a loop that forgets to loop back).
// ok is false for write tasks and when that gives the right output (no loop, or one of one iteration).
func (c *Code) FlawedSolution(t Task) (reasoning, answer string, ok bool) {
	if t.Meta["kind"] != "predict" {
		return "", "", false
	}
	p, err := Parse(t.Meta["program"], c.limits)
	if err != nil {
		return "", "", false
	}
	var trace strings.Builder
	res, err := p.run(c.limits, &trace, true)
	answer = normSpaces(res.Output)
	if err != nil || answer == t.Answer {
		return "", "", false
	}
	return strings.TrimSuffix(trace.String(), "\n"), answer, true
}

// Verify grades the answer: the printed values (predict) or a program run in the sandbox (write).
func (c *Code) Verify(t Task, completion, finishReason string) Reward {
	return score(c.reward, completion, finishReason, func(ans string) bool {
		switch t.Meta["kind"] {
		case "predict":
			if len(ans) > 4*len(t.Answer)+64 {
				return false
			}
			return normSpaces(ans) == t.Answer
		case "write":
			res, err := Run(ans, c.limits)
			return err == nil && normSpaces(res.Output) == t.Answer
		}
		return false
	})
}

// ---- program generators ----

// genProgram writes a random program of n top-level statements (a loop counts as two: its counter and the
// loop): assignments of small expressions, prints, if/else and at most one counted while loop. A statement
// starts the loop with probability loopProb and is an if/else with probability 0.15; once the loop is placed
// (or where it cannot start), the draws that would have started it make if/else statements too (so loopProb
// 0.2 keeps the generator's first distribution: if/else 0.35 after the loop).
func genProgram(rng *rand.Rand, n, maxIter int, loopProb float64) string {
	g := &progGen{rng: rng}
	var sb strings.Builder
	name := g.newVar()
	fmt.Fprintf(&sb, "%s = %d\n", name, 1+rng.IntN(9))
	loop := false
	for k := 1; k < n; k++ {
		r := rng.Float64()
		switch {
		case r < loopProb && !loop && k+1 < n:
			loop = true
			k++
			iters := 1 + rng.IntN(maxIter)
			fmt.Fprintf(&sb, "i = %d\nwhile i > 0 {\n", iters)
			g.defined = append(g.defined, "i")
			for range 1 + rng.IntN(2) {
				sb.WriteString("  " + g.simple() + "\n")
			}
			sb.WriteString("  i = i - 1\n}\n")
		case r < loopProb+0.15:
			fmt.Fprintf(&sb, "if %s {\n  %s\n}", g.cond(), g.simple())
			if rng.IntN(2) == 0 {
				fmt.Fprintf(&sb, " else {\n  %s\n}", g.simple())
			}
			sb.WriteByte('\n')
		default:
			sb.WriteString(g.simple() + "\n")
		}
	}
	sb.WriteString("print " + g.defined[rng.IntN(len(g.defined))] + "\n")
	return sb.String()
}

type progGen struct {
	rng     *rand.Rand
	defined []string
}

var varNames = []string{"a", "b", "c", "d"}

// newVar picks a variable name not defined yet (or any when all are).
func (g *progGen) newVar() string {
	for _, v := range varNames {
		if !contains(g.defined, v) {
			g.defined = append(g.defined, v)
			return v
		}
	}
	return varNames[g.rng.IntN(len(varNames))]
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// simple is an assignment (to a new or defined variable) or a print.
func (g *progGen) simple() string {
	if g.rng.IntN(3) == 0 {
		return "print " + g.expr(1)
	}
	e := g.expr(2) // before the target is defined
	var target string
	if g.rng.IntN(2) == 0 {
		target = g.newVar()
	} else {
		target = g.defined[g.rng.IntN(len(g.defined))]
		if target == "i" {
			target = g.newVar()
		}
	}
	return target + " = " + e
}

func (g *progGen) atom() string {
	if g.rng.IntN(5) < 3 {
		return g.defined[g.rng.IntN(len(g.defined))]
	}
	return strconv.Itoa(g.rng.IntN(10))
}

func (g *progGen) expr(depth int) string {
	if depth == 0 || g.rng.IntN(5) < 2 {
		return g.atom()
	}
	l := g.expr(depth - 1)
	switch r := g.rng.IntN(10); {
	case r < 4:
		return l + " + " + g.atom()
	case r < 7:
		return l + " - " + g.atom()
	case r < 9:
		return wrapSum(l) + " * " + g.atom()
	default:
		return wrapSum(l) + " % " + strconv.Itoa(2+g.rng.IntN(8))
	}
}

func wrapSum(s string) string {
	if strings.ContainsAny(s, "+-") {
		return "(" + s + ")"
	}
	return s
}

func (g *progGen) cond() string {
	ops := []string{"<", ">", "==", "!=", "<=", ">="}
	return g.defined[g.rng.IntN(len(g.defined))] + " " + ops[g.rng.IntN(len(ops))] + " " + strconv.Itoa(g.rng.IntN(10))
}

// drawWrite draws a target from one of five patterns and returns its write task.
func (c *Code) drawWrite(rng *rand.Rand) Task {
	n := 2 + rng.IntN(c.writeLen-1)
	var prog, why string
	switch rng.IntN(5) {
	case 0: // counting up
		s, d := rng.IntN(21), 1+rng.IntN(9)
		last := s + d*(n-1)
		prog = fmt.Sprintf("i = %d\nwhile i <= %d {\n  print i\n  i = i + %d\n}\n", s, last, d)
		why = fmt.Sprintf("The numbers go from %d up to %d in steps of %d. Loop i from %d while i <= %d, print i, add %d.", s, last, d, s, last, d)
	case 1: // counting down
		d := 1 + rng.IntN(9)
		last := rng.IntN(21)
		s := last + d*(n-1)
		prog = fmt.Sprintf("i = %d\nwhile i >= %d {\n  print i\n  i = i - %d\n}\n", s, last, d)
		why = fmt.Sprintf("The numbers go from %d down to %d in steps of %d. Loop i from %d while i >= %d, print i, subtract %d.", s, last, d, s, last, d)
	case 2: // squares
		k0 := 1 + rng.IntN(9)
		last := k0 + n - 1
		prog = fmt.Sprintf("k = %d\nwhile k <= %d {\n  print k * k\n  k = k + 1\n}\n", k0, last)
		why = fmt.Sprintf("These are the squares of %d to %d. Loop k from %d while k <= %d, print k * k, add 1.", k0, last, k0, last)
	case 3: // running sums
		k0 := 1 + rng.IntN(5)
		last := k0 + n - 1
		prog = fmt.Sprintf("s = 0\nk = %d\nwhile k <= %d {\n  s = s + k\n  print s\n  k = k + 1\n}\n", k0, last)
		why = fmt.Sprintf("Each number adds the next of %d, %d, ... to the previous sum. Keep s, loop k from %d to %d, add k to s, print s.", k0, k0+1, k0, last)
	default: // powers
		b := 2 + rng.IntN(4)
		n = min(n, 6)
		prog = fmt.Sprintf("p = 1\nk = 0\nwhile k < %d {\n  print p\n  p = p * %d\n  k = k + 1\n}\n", n, b)
		why = fmt.Sprintf("These are the first %d powers of %d. Start p at 1, print it and multiply by %d, %d times.", n, b, b, n)
	}
	t, ok := WriteTask(prog, why)
	if !ok {
		panic("envs: code: a write pattern does not run: " + prog) // unreachable: the patterns are fixed and small
	}
	return t
}

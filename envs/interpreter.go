// interpreter.go implements the interpreter tool environment: the code family's predict tasks ("What does
// this program print?", programs of the sandboxed language of lang.go) solved by running the program with
// the run(program) tool instead of tracing it by hand. The tool runs its argument under the environment's
// Limits (source size, nesting depth, steps, variables, output bytes), so a program that loops, floods its
// output or nests too deep returns an error result; it reads and writes no files and opens no connections.
//
// Params (all optional): size, max_iter, loop_prob, max_value, max_trace as in the code family (its predict
// programs), and max_steps (default 100000) and max_output (default 1024) for the tool's sandbox.
//
// IDs are the code family's ("code-predict:<hash>"), so a program held out there is held out here.

package envs

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/sparrow-rl/sparrow/data"
)

// Interpreter is the interpreter tool environment.
type Interpreter struct {
	code  *Code
	tools []Tool
}

// NewInterpreter builds the interpreter environment from opts.
func NewInterpreter(opts Options) (*Interpreter, error) {
	params := map[string]string{"kinds": "predict", "max_output": "1024"}
	for k, v := range opts.Params {
		if k == "kinds" {
			return nil, fmt.Errorf("params: interpreter has no key \"kinds\" (its tasks are predict tasks)")
		}
		params[k] = v
	}
	o := opts
	o.Params = params
	c, err := NewCode(o)
	if err != nil {
		return nil, err
	}
	return &Interpreter{code: c, tools: []Tool{Runner{Limits: c.limits}}}, nil
}

// Name returns "interpreter".
func (e *Interpreter) Name() string { return "interpreter" }

// Tools returns run.
func (e *Interpreter) Tools() []Tool { return e.tools }

// System returns the system text of interpreter episodes.
func (e *Interpreter) System() string { return "" }

// Sample draws a task of split.
func (e *Interpreter) Sample(rng *rand.Rand, split data.Split) Task {
	t := e.code.Sample(rng, split)
	t.Family = "interpreter"
	return t
}

// Draw draws a task regardless of the split.
func (e *Interpreter) Draw(rng *rand.Rand) Task {
	t := e.code.Draw(rng)
	t.Family = "interpreter"
	return t
}

// Verify grades the printed values, white space collapsed.
func (e *Interpreter) Verify(t Task, completion, finishReason string) Reward {
	return e.code.Verify(t, completion, finishReason)
}

// Solution is the final turn of the right episode.
func (e *Interpreter) Solution(t Task) (reasoning, answer string) {
	if t.Meta == nil { // a task this environment did not make
		return "", t.Answer
	}
	return "run printed " + t.Answer + ".", t.Answer
}

// Episode writes a worked interpreter conversation: run the program, answer its output (or misuse run).
func (e *Interpreter) Episode(ctx context.Context, t Task, misuse int) ([]data.Message, error) {
	src := strings.TrimSuffix(t.Meta["program"], "\n")
	rng := rand.New(rand.NewPCG(seedOf(t.ID), uint64(misuse+2)))
	msgs := ToolPrompt(e, t)
	if misuse == MisuseNoCall {
		wrong := perturb(rng, t.Answer)
		if _, a, ok := e.code.FlawedSolution(t); ok {
			wrong = a
		}
		return append(msgs, data.Message{Role: "assistant", ReasoningContent: "I trace it myself.", Content: wrong}), nil
	}
	arg := src
	if misuse == MisuseMiscopied {
		// a digit mis-copied; a few tries for one that changes what the program prints
		for range 8 {
			arg = perturb(rng, src)
			if res, err := Run(arg, e.code.limits); err != nil || normSpaces(res.Output) != t.Answer {
				break
			}
		}
	}
	call := callMessage("Use run.", data.FunctionCall{Name: "run", Arguments: `{"program": ` + data.PyQuote(arg) + `}`})
	results := runCalls(ctx, e, call)
	msgs = append(msgs, call)
	msgs = append(msgs, results...)
	got := normSpaces(results[0].Content)
	if misuse == MisuseIgnored {
		got = perturb(rng, t.Answer)
		return append(msgs, data.Message{Role: "assistant", ReasoningContent: "I think it prints " + got + ".", Content: got}), nil
	}
	return append(msgs, data.Message{Role: "assistant", ReasoningContent: "run printed " + got + ".", Content: got}), nil
}

// Runner is the run tool: it runs a program of the sandboxed language under Limits.
type Runner struct{ Limits Limits }

// Spec describes run.
func (Runner) Spec() ToolSpec {
	return ToolSpec{Name: "run", Description: "what a program prints",
		Parameters: `{"type": "object", "properties": {"program": {"type": "string"}}}`}
}

// Call runs args["program"]; its output (newlines kept, the last one dropped) or the error.
func (r Runner) Call(ctx context.Context, args map[string]any) (string, error) {
	src, ok := args["program"].(string)
	if !ok {
		return "", fmt.Errorf("%w: run needs a string parameter program", ErrBadArguments)
	}
	for k := range args {
		if k != "program" {
			return "", fmt.Errorf("%w: run has no parameter %q", ErrBadArguments, k)
		}
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	res, err := Run(src, r.Limits)
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(res.Output, "\n"), nil
}

// FirstCall is run(program) with the task's program.
func (e *Interpreter) FirstCall(t Task) (tool, key, value string) {
	return "run", "program", strings.TrimSuffix(t.Meta["program"], "\n")
}

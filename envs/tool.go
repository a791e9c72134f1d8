// tool.go: tools and tool environments, the "thinking with tools" side of DeepSeek-V3.2's agentic RL
// (dsv32-spec.md §3, chat-format.md §3.1, §3.3, §3.4). A Tool is a name, a JSON Schema of its parameters (one
// line of the system prompt's tools block, as the V3.2 encoder renders it) and a call; a ToolEnv is a Family
// whose tasks are solved by calling its tools: it lists them, renders its system prompt and writes worked
// tool-using conversations (right ones and, for pre-training, ones that misuse the tools).
//
// Every call goes through CallTool, the sandbox: a deadline (ToolLimits.Timeout) on the call's context, a
// bound on the arguments' and the result's size, and a recovered panic, each turned into an error result the
// policy reads as a real API's error ("error: ..."). Tools shipped here are pure functions over their
// arguments and the environment's own in-memory data (no file or network access); their memory is bounded
// by their own input limits (calc: digits, interpreter: the language's Limits).

package envs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/sparrow-rl/sparrow/data"
)

// ToolSpec describes a tool as the system prompt lists it.
type ToolSpec struct {
	Name        string
	Description string
	// Parameters is the JSON Schema of the arguments object, as JSON text (its key order is kept).
	Parameters string
}

// Definition returns the OpenAI tool definition {"type": "function", "function": {"name", "description",
// "parameters"}} as JSON text, the shape data.Message.Tools holds.
func (s ToolSpec) Definition() json.RawMessage {
	var b strings.Builder
	b.WriteString(`{"type": "function", "function": {"name": `)
	b.WriteString(data.PyQuote(s.Name))
	if s.Description != "" {
		b.WriteString(`, "description": `)
		b.WriteString(data.PyQuote(s.Description))
	}
	b.WriteString(`, "parameters": `)
	params := s.Parameters
	if params == "" {
		params = `{"type": "object"}`
	}
	b.WriteString(params)
	b.WriteString("}}")
	return json.RawMessage(b.String())
}

// Tool is one callable function. Call must honour ctx (return soon after it ends) and must not touch files
// or the network unless it is a remote tool (package toolnet).
type Tool interface {
	Spec() ToolSpec
	// Call runs the tool on the decoded arguments (numbers as json.Number) and returns the result text.
	Call(ctx context.Context, args map[string]any) (string, error)
}

// ToolEnv is a task family whose tasks are solved by calling tools.
type ToolEnv interface {
	Family
	// Tools lists the tools, in the order the system prompt shows them.
	Tools() []Tool
	// System is the text of the system message that precedes the tools block ("" for none).
	System() string
	// Episode writes a worked tool-using conversation of t: system (with tools), user, then assistant turns
	// with tool calls, tool results (computed by calling the tools) and the final answer. misuse ≥ 0 selects
	// one of MisuseKinds (the conversation then misuses the tools that way); −1 is the right use.
	Episode(ctx context.Context, t Task, misuse int) ([]data.Message, error)
}

// MisuseKinds are the systematic ways worked conversations misuse tools (ToolEnv.Episode's misuse).
var MisuseKinds = []string{"no_call", "miscopied_argument", "ignored_result"}

// Misuse indices into MisuseKinds.
const (
	MisuseNoCall = iota
	MisuseMiscopied
	MisuseIgnored
)

// ToolLimits bounds one tool call.
type ToolLimits struct {
	Timeout   time.Duration // the call's deadline (default 5 s)
	MaxArgs   int           // bytes of the arguments' JSON (default 4096)
	MaxOutput int           // bytes of the result (default 2048)
}

// DefaultToolLimits returns 5 s, 4096 bytes of arguments and 2048 bytes of output.
func DefaultToolLimits() ToolLimits {
	return ToolLimits{Timeout: 5 * time.Second, MaxArgs: 4096, MaxOutput: 2048}
}

func (l ToolLimits) withDefaults() ToolLimits {
	d := DefaultToolLimits()
	if l.Timeout <= 0 {
		l.Timeout = d.Timeout
	}
	if l.MaxArgs <= 0 {
		l.MaxArgs = d.MaxArgs
	}
	if l.MaxOutput <= 0 {
		l.MaxOutput = d.MaxOutput
	}
	return l
}

// Errors of a tool call, usable with errors.Is; the result text the policy reads starts with "error: ".
var (
	ErrUnknownTool  = errors.New("unknown tool")
	ErrBadArguments = errors.New("bad arguments")
	ErrToolTimeout  = errors.New("tool call timed out")
	ErrToolOutput   = errors.New("tool output limit exceeded")
	ErrToolPanic    = errors.New("tool failed")
)

// ToolResult is the outcome of one call: Content is what the tool message carries (the result, or
// "error: " and the reason); Err is the error, nil on success.
type ToolResult struct {
	Content string
	Err     error
	Elapsed time.Duration
}

// ErrorResult is the tool message of a failed call.
func ErrorResult(err error) ToolResult { return ToolResult{Content: "error: " + err.Error(), Err: err} }

// FindTool returns the tool named name among tools, or nil.
func FindTool(tools []Tool, name string) Tool {
	for _, t := range tools {
		if t.Spec().Name == name {
			return t
		}
	}
	return nil
}

// DecodeArguments decodes a call's arguments (JSON text of an object) with numbers as json.Number.
func DecodeArguments(arguments string) (map[string]any, error) {
	dec := json.NewDecoder(strings.NewReader(arguments))
	dec.UseNumber()
	var args map[string]any
	if err := dec.Decode(&args); err != nil {
		return nil, fmt.Errorf("%w: arguments are not a JSON object: %v", ErrBadArguments, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: text after the arguments object", ErrBadArguments)
	}
	if args == nil {
		return nil, fmt.Errorf("%w: arguments are null, want an object", ErrBadArguments)
	}
	return args, nil
}

// CallTool runs the call name(arguments) among tools in the sandbox: an unknown tool, arguments that are not
// a JSON object or exceed lim.MaxArgs, a call that outlives lim.Timeout (its context is cancelled; a tool
// that ignores it is abandoned), a result over lim.MaxOutput bytes and a panic are all error results. It
// never panics and returns within lim.Timeout.
func CallTool(ctx context.Context, tools []Tool, name, arguments string, lim ToolLimits) ToolResult {
	lim = lim.withDefaults()
	start := time.Now()
	res := callTool(ctx, tools, name, arguments, lim)
	res.Elapsed = time.Since(start)
	return res
}

func callTool(ctx context.Context, tools []Tool, name, arguments string, lim ToolLimits) ToolResult {
	tool := FindTool(tools, name)
	if tool == nil {
		names := make([]string, len(tools))
		for i, t := range tools {
			names[i] = t.Spec().Name
		}
		return ErrorResult(fmt.Errorf("%w %q (tools: %s)", ErrUnknownTool, name, strings.Join(names, ", ")))
	}
	if len(arguments) > lim.MaxArgs {
		return ErrorResult(fmt.Errorf("%w: %d bytes of arguments exceed the limit of %d", ErrBadArguments, len(arguments), lim.MaxArgs))
	}
	args, err := DecodeArguments(arguments)
	if err != nil {
		return ErrorResult(err)
	}
	cctx, cancel := context.WithTimeout(ctx, lim.Timeout)
	defer cancel()
	type outcome struct {
		out string
		err error
	}
	done := make(chan outcome, 1) // buffered: an abandoned call's goroutine still exits
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- outcome{err: fmt.Errorf("%w: %s panicked: %v", ErrToolPanic, name, r)}
			}
		}()
		out, err := tool.Call(cctx, args)
		done <- outcome{out, err}
	}()
	select {
	case o := <-done:
		if o.err != nil {
			if errors.Is(o.err, context.DeadlineExceeded) {
				return ErrorResult(fmt.Errorf("%w after %s: %s", ErrToolTimeout, lim.Timeout, name))
			}
			return ErrorResult(o.err)
		}
		if len(o.out) > lim.MaxOutput {
			return ErrorResult(fmt.Errorf("%w: %s wrote %d bytes, the limit is %d", ErrToolOutput, name, len(o.out), lim.MaxOutput))
		}
		return ToolResult{Content: o.out}
	case <-cctx.Done():
		if ctx.Err() != nil {
			return ErrorResult(fmt.Errorf("%s: %w", name, ctx.Err()))
		}
		return ErrorResult(fmt.Errorf("%w after %s: %s", ErrToolTimeout, lim.Timeout, name))
	}
}

// ToolSystemMessage is the system message of a tool environment: its System text and its tools.
func ToolSystemMessage(e ToolEnv) data.Message {
	m := data.Message{Role: "system", Content: e.System()}
	for _, t := range e.Tools() {
		m.Tools = append(m.Tools, t.Spec().Definition())
	}
	return m
}

// ToolsPreamble is the tools block preamble of tool environments (data.EncodeOptions.ToolsTemplate): short,
// because the byte tokenizer makes every byte of the prompt a position.
const ToolsPreamble = `## Tools`

// ToolEncodeOptions are the chat encoder options of tool episodes: thinking mode, reasoning dropped at a new
// user turn, the short ToolsPreamble.
func ToolEncodeOptions() data.EncodeOptions {
	o := data.DefaultEncodeOptions(data.ModeThinking)
	o.ToolsTemplate = ToolsPreamble
	return o
}

// ToolPrompt returns the prompt messages of a tool environment's task: the system message with the tools,
// then the user message.
func ToolPrompt(e ToolEnv, t Task) []data.Message {
	e = TaskEnv(e, t)
	return []data.Message{ToolSystemMessage(e), {Role: "user", Content: t.Prompt}}
}

// callMessage returns an assistant message with reasoning, content and calls name(args JSON) in order.
func callMessage(reasoning string, calls ...data.FunctionCall) data.Message {
	m := data.Message{Role: "assistant", ReasoningContent: reasoning}
	for _, c := range calls {
		m.ToolCalls = append(m.ToolCalls, data.ToolCall{Type: "function", Function: c})
	}
	return m
}

// runCalls calls every tool call of m in e's sandbox and returns the tool messages.
func runCalls(ctx context.Context, e ToolEnv, m data.Message) []data.Message {
	var out []data.Message
	for _, c := range m.ToolCalls {
		r := CallTool(ctx, e.Tools(), c.Function.Name, c.Function.Arguments, ToolLimits{})
		out = append(out, data.Message{Role: "tool", Content: r.Content})
	}
	return out
}

// MisuseDraw picks the misuse of one worked conversation: −1 (right) with probability 1−share, else one of
// MisuseKinds uniformly.
func MisuseDraw(rng *rand.Rand, share float64) int {
	if share <= 0 || rng.Float64() >= share {
		return -1
	}
	return rng.IntN(len(MisuseKinds))
}

// Tempter is implemented by tool environments some of whose tasks look easy enough to answer without the
// tool (calc: a first operand starting with 1–4; search: a person whose name starts with A–M). A corpus's overconfident
// share of the worked conversations of those tasks answers them without calling: a systematic misuse a
// policy can see in the prompt, as math's flawed procedure applies to the problems with a carry. With a
// share over ½ the pre-trained policy's greedy choice on them is not to call, and RL has that choice to
// overturn.
type Tempter interface {
	Tempting(t Task) bool
}

// Tempting reports whether t is a task its environment marks as tempting to answer without the tool
// (Tempter); false for environments that mark none.
func Tempting(e ToolEnv, t Task) bool {
	tm, ok := TaskEnv(e, t).(Tempter)
	return ok && tm.Tempting(t)
}

// MisuseDrawFor picks the misuse of one worked conversation of t: on a tempting task (Tempting), no_call
// with probability overconfident; otherwise MisuseDraw(rng, share). With overconfident 0 it draws exactly
// what MisuseDraw draws.
func MisuseDrawFor(rng *rand.Rand, e ToolEnv, t Task, share, overconfident float64) int {
	if overconfident > 0 && Tempting(e, t) && rng.Float64() < overconfident {
		return MisuseNoCall
	}
	return MisuseDraw(rng, share)
}

// ToolCallRecord is one call an episode made, as the misuse classifier reads it.
type ToolCallRecord struct {
	Name, Arguments, Result string
	Failed                  bool
}

// FirstCaller is implemented by tool environments whose worked solution starts with one known call: the tool
// and the argument (key, value) copied from the task (calc: calc(expr), search: search(query),
// interpreter: run(program)).
type FirstCaller interface {
	FirstCall(t Task) (tool, key, value string)
}

// ClassifyMisuse says how an episode of t used the tools, as MisuseKinds name the ways: "no_call" (no call
// made), "miscopied_argument" (the environment's first call made with an argument other than the task's:
// FirstCaller), "ignored_result" (the answer, white space collapsed, is in no successful result), or "" (none of these).
func ClassifyMisuse(e ToolEnv, t Task, calls []ToolCallRecord, answer string) string {
	if len(calls) == 0 {
		return MisuseKinds[MisuseNoCall]
	}
	if fc, ok := TaskEnv(e, t).(FirstCaller); ok {
		tool, key, value := fc.FirstCall(t)
		for _, c := range calls {
			if c.Name != tool {
				continue
			}
			args, err := DecodeArguments(c.Arguments)
			if s, ok := args[key].(string); err != nil || !ok || strings.TrimSpace(s) != strings.TrimSpace(value) {
				return MisuseKinds[MisuseMiscopied]
			}
			break
		}
	}
	answer = normSpaces(answer)
	for _, c := range calls {
		if !c.Failed && answer != "" && strings.Contains(normSpaces(c.Result), answer) {
			return ""
		}
	}
	return MisuseKinds[MisuseIgnored]
}

// chat_parse.go implements the DeepSeek-V3.2 completion parser (chat-format.md §8): it splits what the
// model wrote after the prompt's final <think> or </think> into reasoning, content and DSML tool calls,
// exactly as the reference parse_message_from_completion_text does (same stop strings, same regular
// expressions with Python's semantics for \s and $), and returns a typed error for malformed output
// instead of guessing. It never panics (FuzzParseCompletion).
//
// Stricter than the reference: a tool-call block cut off before </｜DSML｜function_calls> (text ending right
// after "\n\n<｜DSML｜function_calls", inside or after an invoke) is ErrDSMLUnclosed, where the reference
// accepts the truncated block. As in the reference, a missing EOS after a complete tool-call block is
// accepted (reported in ParsedMessage.MissingEOS).

package data

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// parseError is a parser error class; Unwrap links a DSML error to ErrBadDSML.
type parseError struct {
	msg    string
	parent error
}

func (e *parseError) Error() string { return e.msg }
func (e *parseError) Unwrap() error { return e.parent }

func parseErr(msg string, parent error) error {
	return &parseError{msg: "chat parse: " + msg, parent: parent}
}

// Parser errors, usable with errors.Is; the reference's assertion message of each is in its comment.
// Every DSML error also matches ErrBadDSML.
var (
	// ErrUnclosedThink: "Invalid thinking format".
	ErrUnclosedThink = parseErr("invalid thinking format: no </think> before the content or tool calls", nil)
	// ErrMissingEOS: "Invalid summary format".
	ErrMissingEOS = parseErr("invalid summary format: content ends neither with EOS nor with a tool-call block", nil)
	// ErrBadDSML is the parent of every malformed tool-call block error.
	ErrBadDSML = parseErr("malformed DSML tool-call block", nil)
	// ErrDSMLFormat: "Tool call format error".
	ErrDSMLFormat = parseErr("tool call format error: expected \">\\n\" before the next invoke or the block's end", ErrBadDSML)
	// ErrDSMLMissingToken: "Missing special token".
	ErrDSMLMissingToken = parseErr("missing special token: neither an invoke nor </｜DSML｜function_calls> follows", ErrBadDSML)
	// ErrDSMLToolName: "Tool name format error".
	ErrDSMLToolName = parseErr("tool name format error", ErrBadDSML)
	// ErrDSMLParameter: "Parameter format error".
	ErrDSMLParameter = parseErr("parameter format error", ErrBadDSML)
	// ErrDSMLDuplicate: "Duplicate parameter name".
	ErrDSMLDuplicate = parseErr("duplicate parameter name", ErrBadDSML)
	// ErrDSMLUnclosed: a truncated tool-call block (the reference accepts it).
	ErrDSMLUnclosed = parseErr("tool-call block not closed by </｜DSML｜function_calls>", ErrBadDSML)
	// ErrTrailingAfterCalls: "Unexpected content after tool calls".
	ErrTrailingAfterCalls = parseErr("unexpected content after tool calls", nil)
	// ErrTrailingAfterEOS: "Unexpected content at end".
	ErrTrailingAfterEOS = parseErr("unexpected content at end", nil)
	// ErrSpecialInContent: "Unexpected special token in content".
	ErrSpecialInContent = parseErr("unexpected special token in content", nil)
)

// ParsedParam is one DSML parameter: Value is the raw text between the tags; String is its string="true".
type ParsedParam struct {
	Name   string
	Value  string
	String bool
}

// JSON returns the parameter value as JSON text: the quoted string for string="true", else the raw text
// (not validated, as in the reference).
func (p ParsedParam) JSON() string {
	if p.String {
		return PyQuote(p.Value)
	}
	return p.Value
}

// Decode returns the value as a Go JSON value: a string for string="true", else the decoded JSON
// (numbers as json.Number), or an error if the text is not JSON.
func (p ParsedParam) Decode() (any, error) {
	if p.String {
		return p.Value, nil
	}
	dec := json.NewDecoder(strings.NewReader(p.Value))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("parameter %q: value is not JSON: %w", p.Name, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("parameter %q: value has text after its JSON", p.Name)
	}
	return v, nil
}

// ParsedCall is one tool call of a completion. Arguments is the reference's JSON text:
// "{" + JSON(key) + ": " + JSON(value) ... + "}".
type ParsedCall struct {
	Name      string
	Params    []ParsedParam
	Arguments string
}

// ParsedMessage is the assistant message recovered from a completion.
type ParsedMessage struct {
	Content          string
	ReasoningContent string
	ToolCalls        []ParsedCall
	// MissingEOS is set when a complete tool-call block ended the text without EOS (accepted).
	MissingEOS bool
}

// Message returns the parsed completion as an assistant Message in the OpenAI shape.
func (p *ParsedMessage) Message() Message {
	m := Message{Role: "assistant", Content: p.Content, ReasoningContent: p.ReasoningContent}
	for _, c := range p.ToolCalls {
		m.ToolCalls = append(m.ToolCalls, ToolCall{Type: "function", Function: FunctionCall{Name: c.Name, Arguments: c.Arguments}})
	}
	return m
}

// JSON returns the result as the reference prints it: {"role": "assistant", "content": ...,
// "reasoning_content": ..., "tool_calls": [{"type": "function", "function": {"name", "arguments"}}]}.
func (p *ParsedMessage) JSON() string { return p.Message().PyJSON() }

const (
	dsmlCallsStart = "\n\n<" + "｜DSML｜" + "function_calls"
	dsmlCallsEnd   = "</" + "｜DSML｜" + "function_calls>"
	dsmlInvoke     = "<" + "｜DSML｜" + "invoke"
	dsmlInvokeEnd  = "</" + "｜DSML｜" + "invoke"
	dsmlParam      = "<" + "｜DSML｜" + "parameter"
	dsmlParamEnd   = "/" + "｜DSML｜" + "parameter"
)

// pyWS is Python's \s for str patterns (the characters of str.isspace).
const pyWS = `[\t\n\v\f\r \x{1c}-\x{1f}\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}]`

var (
	// ^\s*name="(.*?)">\n$ with DOTALL; Python's $ also matches before a final newline.
	reToolName = regexp.MustCompile(`(?s)\A` + pyWS + `*name="(.*?)">\n\n?\z`)
	// ^ name="(.*?)" string="(true|false)">(.*?)<$ with DOTALL.
	reParam = regexp.MustCompile(`(?s)\A name="(.*?)" string="(true|false)">(.*?)<\n?\z`)
)

// scanner finds the reference's stop strings in a completion. It remembers where each stop string next
// occurs, so the whole parse stays linear in the text however many parameters it holds (a fresh search
// per parameter would be quadratic on hostile output).
type scanner struct {
	text string
	next map[string]int // absolute position of the first occurrence at or after the last search, -1: none
}

func (sc *scanner) find(s string, i int) int {
	if p, ok := sc.next[s]; ok && (p < 0 || p >= i) {
		return p
	}
	p := strings.Index(sc.text[i:], s)
	if p >= 0 {
		p += i
	}
	sc.next[s] = p
	return p
}

// until returns the text from i to the earliest of stops (the first listed wins a tie), the index after
// that stop, and the stop; with no stop found it returns the rest, len(text) and "".
func (sc *scanner) until(i int, stops ...string) (next int, content, stop string) {
	best := -1
	for _, s := range stops {
		if p := sc.find(s, i); p >= 0 && (best < 0 || p < best) {
			best, stop = p, s
		}
	}
	if best < 0 {
		return len(sc.text), sc.text[i:], ""
	}
	return best + len(stop), sc.text[i:best], stop
}

// ParseCompletion parses a completion in mode "thinking" (reasoning up to </think> first) or "chat".
// Errors wrap the sentinels above and give the byte offset.
func ParseCompletion(text, mode string) (*ParsedMessage, error) {
	if mode != ModeThinking && mode != ModeChat {
		return nil, fmt.Errorf("%w, got %q", ErrBadMode, mode)
	}
	out := &ParsedMessage{}
	sc := &scanner{text: text, next: map[string]int{}}
	i := 0
	var stop string
	if mode == ModeThinking {
		i, out.ReasoningContent, stop = sc.until(0, litTE, dsmlCallsStart)
		if stop != litTE {
			return nil, fmt.Errorf("%w (at byte %d)", ErrUnclosedThink, i)
		}
	}
	i, out.Content, stop = sc.until(i, litEOS, dsmlCallsStart)
	switch stop {
	case dsmlCallsStart:
		var err error
		if i, out.ToolCalls, err = parseToolCalls(sc, i); err != nil {
			return nil, err
		}
		var after string
		at := i
		i, after, stop = sc.until(i, litEOS)
		if after != "" {
			return nil, fmt.Errorf("%w (at byte %d)", ErrTrailingAfterCalls, at)
		}
		out.MissingEOS = stop == ""
	case litEOS:
	default:
		return nil, fmt.Errorf("%w (at byte %d)", ErrMissingEOS, i)
	}
	if i != len(text) {
		return nil, fmt.Errorf("%w: %d bytes after EOS (at byte %d)", ErrTrailingAfterEOS, len(text)-i, i)
	}
	for _, lit := range []string{litBOS, litEOS, litTS, litTE, litDSML} {
		if strings.Contains(out.Content, lit) {
			return nil, fmt.Errorf("%w: %s in content", ErrSpecialInContent, lit)
		}
		if strings.Contains(out.ReasoningContent, lit) {
			return nil, fmt.Errorf("%w: %s in reasoning", ErrSpecialInContent, lit)
		}
	}
	return out, nil
}

// parseToolCalls parses from just after "\n\n<｜DSML｜function_calls" to just after the closing tag.
func parseToolCalls(sc *scanner, i int) (int, []ParsedCall, error) {
	text := sc.text
	var calls []ParsedCall
	for i < len(text) {
		at := i
		next, between, stop := sc.until(i, dsmlInvoke, dsmlCallsEnd)
		if between != ">\n" {
			return 0, nil, fmt.Errorf("%w (at byte %d)", ErrDSMLFormat, at)
		}
		if stop == dsmlCallsEnd {
			return next, calls, nil
		}
		if stop == "" {
			return 0, nil, fmt.Errorf("%w (at byte %d)", ErrDSMLMissingToken, at)
		}
		at = next
		var header string
		i, header, stop = sc.until(next, dsmlParam, dsmlInvokeEnd)
		mName := reToolName.FindStringSubmatch(header)
		if mName == nil {
			return 0, nil, fmt.Errorf("%w (at byte %d)", ErrDSMLToolName, at)
		}
		call := ParsedCall{Name: mName[1]}
		seen := map[string]bool{}
		for stop == dsmlParam {
			at = i
			var body string
			i, body, stop = sc.until(i, dsmlParamEnd)
			m := reParam.FindStringSubmatch(body)
			if m == nil {
				return 0, nil, fmt.Errorf("%w (at byte %d)", ErrDSMLParameter, at)
			}
			if seen[m[1]] {
				return 0, nil, fmt.Errorf("%w %q in %s (at byte %d)", ErrDSMLDuplicate, m[1], call.Name, at)
			}
			seen[m[1]] = true
			call.Params = append(call.Params, ParsedParam{Name: m[1], Value: m[3], String: m[2] == "true"})
			at = i
			i, between, stop = sc.until(i, dsmlParam, dsmlInvokeEnd)
			if between != ">\n" {
				return 0, nil, fmt.Errorf("%w: expected \">\\n\" after the parameter (at byte %d)", ErrDSMLParameter, at)
			}
		}
		var b strings.Builder
		b.WriteByte('{')
		for k, p := range call.Params {
			if k > 0 {
				b.WriteString(", ")
			}
			b.WriteString(PyQuote(p.Name))
			b.WriteString(": ")
			b.WriteString(p.JSON())
		}
		b.WriteByte('}')
		call.Arguments = b.String()
		calls = append(calls, call)
	}
	return 0, nil, fmt.Errorf("%w (at byte %d)", ErrDSMLUnclosed, len(text))
}

// ParseCompletionIDs parses completion ids. A special literal spelled in byte ids is not structure: it is
// refused with ErrSpecialInContent (the model emitted bytes where the format has a special token).
func ParseCompletionIDs(tok *Tokenizer, ids []int32, mode string) (*ParsedMessage, error) {
	if tok == nil {
		tok = &Tokenizer{}
	}
	var run []byte
	check := func() error {
		for _, lit := range []string{litBOS, litEOS, litTS, litTE, litDSML} {
			if strings.Contains(string(run), lit) {
				return fmt.Errorf("%w: %s spelled in byte tokens", ErrSpecialInContent, lit)
			}
		}
		run = run[:0]
		return nil
	}
	for _, id := range ids {
		if id >= 0 && id < 256 {
			run = append(run, byte(id))
			continue
		}
		if err := check(); err != nil {
			return nil, err
		}
	}
	if err := check(); err != nil {
		return nil, err
	}
	return ParseCompletion(tok.Decode(ids), mode)
}

// IsParseError reports whether err is one of the parser's typed errors.
func IsParseError(err error) bool {
	var pe *parseError
	return errors.As(err, &pe)
}

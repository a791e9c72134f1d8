// chat.go implements the DeepSeek-V3.2 chat encoder (chat-format.md §1–§6, dsv32-spec.md §4): it renders
// a conversation in the usual HF/OpenAI message shape to the exact prompt string of the official
// encoding_dsv32.py, and to token ids where the structural literals the renderer emits (BOS, EOS, role
// markers, think tags, the DSML marker) become special ids while all text of users, tools and the
// assistant stays plain bytes, so a special literal typed by a user never becomes a special id.
// EncodeForTraining adds the loss mask of chat SFT: 1 on what the assistant generates (reasoning,
// </think>, content, DSML calls, EOS), 0 on everything else.
//
// The natural-language preambles of the tools and response-format blocks are Sparrow's own wording by
// default; a user who needs byte-exact DeepSeek prompts supplies the official text as a template
// (EncodeOptions.ToolsTemplate / ResponseFormatTemplate, or ReadTemplateFile).
//
// Deviations from the reference: null content of a user, developer or tool message is an error (the
// reference prints "None"); a tool message that does not follow an assistant with enough tool calls is an
// error even at index 0; the developer role needs AllowDeveloper. DropThinking=false keeps past reasoning
// (the reference prints the same bytes for either value; see EncodeOptions.DropThinking).
// Accepted beyond the reference: function.arguments given as a JSON object instead of a JSON string, and
// "reasoning" as an alias of "reasoning_content" (as vLLM does).

package data

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Chat modes.
const (
	ModeThinking = "thinking"
	ModeChat     = "chat"
)

// Special literals of the chat format (chat-format.md §1).
var (
	litBOS    = SpecialTokens[BOS-256]
	litEOS    = SpecialTokens[EOS-256]
	litTS     = SpecialTokens[ThinkBeg-256]
	litTE     = SpecialTokens[ThinkEnd-256]
	litDSML   = SpecialTokens[DSML-256]
	litUser   = SpecialTokens[User-256]
	litAssist = SpecialTokens[Assistant-256]
)

// Template placeholders. A tools template may hold {tool_schemas} (the JSON schemas, one per line); a
// response-format template may hold {schema}. Both may hold the token placeholders of the official Python
// templates, which are replaced by the literals.
const (
	PlaceholderToolSchemas = "{tool_schemas}"
	PlaceholderSchema      = "{schema}"
)

var templateTokens = strings.NewReplacer(
	"{dsml_token}", litDSML,
	"{thinking_start_token}", litTS,
	"{thinking_end_token}", litTE,
	"{bos_token}", litBOS,
	"{eos_token}", litEOS,
)

// DefaultToolsTemplate is Sparrow's own preamble of the tools block (no placeholder: the encoder appends
// "\n<functions>\n" + schemas + "\n</functions>\n", as the official block ends).
const DefaultToolsTemplate = `## Tools

The functions listed at the end of this section can be called. To call one or more of them, end the reply with a block of this shape:
<{dsml_token}function_calls>
<{dsml_token}invoke name="FUNCTION">
<{dsml_token}parameter name="PARAMETER" string="true">text value</{dsml_token}parameter>
<{dsml_token}parameter name="PARAMETER2" string="false">JSON value</{dsml_token}parameter>
</{dsml_token}invoke>
</{dsml_token}function_calls>

A parameter whose value is a string takes string="true" and the text exactly as it is, without quotes or escapes. Any other value (number, boolean, null, array, object) takes string="false" and is written as JSON. One block may hold several invoke elements.

The results come back as <function_results> with one <result> per call, in call order. In thinking mode, reason about them inside {thinking_start_token}…{thinking_end_token} before answering or calling again.

The functions, one JSON Schema per line:`

// DefaultResponseFormatTemplate is Sparrow's own preamble of the response-format block (the encoder appends
// "\n" + the schema as JSON).
const DefaultResponseFormatTemplate = `## Response Format

The reply must be JSON that conforms to this schema:`

// FunctionCall is the function part of an OpenAI tool call. Arguments is JSON text of an object.
type FunctionCall struct {
	Name      string
	Arguments string
}

// ToolCall is one OpenAI-shaped tool call of an assistant message.
type ToolCall struct {
	ID       string
	Type     string // "function" when empty
	Function FunctionCall
}

// Message is one chat message in the HF/OpenAI shape. Tools and ResponseFormat count only on system and
// developer messages, ToolCalls and ReasoningContent only on assistant messages.
type Message struct {
	Role string
	// Content is the text; NullContent records that the JSON had null or no content (printed as "" for
	// system and assistant, refused for user, developer and tool).
	Content          string
	NullContent      bool
	ReasoningContent string
	ToolCalls        []ToolCall
	// Tools holds OpenAI tool definitions ({"type": "function", "function": {...}}), in order, as raw JSON.
	Tools          []json.RawMessage
	ResponseFormat json.RawMessage
}

type jsonFunction struct {
	Name      *string         `json:"name"`
	Arguments json.RawMessage `json:"arguments"`
}

type jsonToolCall struct {
	ID       string        `json:"id"`
	Type     string        `json:"type"`
	Function *jsonFunction `json:"function"`
}

type jsonMessage struct {
	Role             *string          `json:"role"`
	Content          json.RawMessage  `json:"content"`
	ReasoningContent json.RawMessage  `json:"reasoning_content"`
	Reasoning        json.RawMessage  `json:"reasoning"`
	ToolCalls        []jsonToolCall   `json:"tool_calls"`
	Tools            *json.RawMessage `json:"tools"`
	ResponseFormat   json.RawMessage  `json:"response_format"`
}

func isJSONNull(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || string(t) == "null"
}

// optString decodes a JSON string or null.
func optString(raw json.RawMessage, field string) (s string, null bool, err error) {
	if isJSONNull(raw) {
		return "", true, nil
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false, fmt.Errorf("%s must be a string or null, got %.40s", field, raw)
	}
	return s, false, nil
}

// UnmarshalJSON reads the HF/OpenAI message shape. Unknown fields (name, tool_call_id, ...) are ignored.
func (m *Message) UnmarshalJSON(b []byte) error {
	var j jsonMessage
	if err := json.Unmarshal(b, &j); err != nil {
		return fmt.Errorf("message: %w", err)
	}
	if j.Role == nil {
		return errors.New("message: no role")
	}
	*m = Message{Role: *j.Role}
	var err error
	if m.Content, m.NullContent, err = optString(j.Content, "content"); err != nil {
		return fmt.Errorf("message (%s): %w", m.Role, err)
	}
	rc := j.ReasoningContent
	if isJSONNull(rc) {
		rc = j.Reasoning
	}
	if m.ReasoningContent, _, err = optString(rc, "reasoning_content"); err != nil {
		return fmt.Errorf("message (%s): %w", m.Role, err)
	}
	for k, tc := range j.ToolCalls {
		if tc.Function == nil || tc.Function.Name == nil {
			return fmt.Errorf("message (%s): tool_calls[%d]: no function.name", m.Role, k)
		}
		args := bytes.TrimSpace(tc.Function.Arguments)
		var argText string
		switch {
		case len(args) == 0:
			return fmt.Errorf("message (%s): tool_calls[%d]: no function.arguments", m.Role, k)
		case args[0] == '"':
			if err := json.Unmarshal(args, &argText); err != nil {
				return fmt.Errorf("message (%s): tool_calls[%d].function.arguments: %w", m.Role, k, err)
			}
		case args[0] == '{':
			argText = string(args) // already an object: kept as its JSON text
		default:
			return fmt.Errorf("message (%s): tool_calls[%d].function.arguments must be a JSON string or object, got %.40s", m.Role, k, args)
		}
		m.ToolCalls = append(m.ToolCalls, ToolCall{ID: tc.ID, Type: tc.Type, Function: FunctionCall{Name: *tc.Function.Name, Arguments: argText}})
	}
	if j.Tools != nil && !isJSONNull(*j.Tools) {
		if err := json.Unmarshal(*j.Tools, &m.Tools); err != nil {
			return fmt.Errorf("message (%s): tools must be an array: %w", m.Role, err)
		}
	}
	if !isJSONNull(j.ResponseFormat) {
		m.ResponseFormat = append(json.RawMessage(nil), j.ResponseFormat...)
	}
	return nil
}

// MarshalJSON writes the message in the HF/OpenAI shape (Python json.dumps formatting).
func (m Message) MarshalJSON() ([]byte, error) { return []byte(m.PyJSON()), nil }

// PyJSON writes the message as json.dumps(message, ensure_ascii=False) would, fields in the order role,
// content, reasoning_content, tool_calls, tools, response_format; empty optional fields are left out.
func (m Message) PyJSON() string {
	obj := &PyValue{Kind: PyObject}
	obj.Set("role", PyStr(m.Role))
	if m.NullContent && m.Content == "" {
		obj.Set("content", &PyValue{Kind: PyNull})
	} else {
		obj.Set("content", PyStr(m.Content))
	}
	if m.ReasoningContent != "" || m.Role == "assistant" {
		obj.Set("reasoning_content", PyStr(m.ReasoningContent))
	}
	if len(m.ToolCalls) > 0 || m.Role == "assistant" {
		obj.Set("tool_calls", toolCallsValue(m.ToolCalls))
	}
	if len(m.Tools) > 0 {
		arr := &PyValue{Kind: PyArray}
		for _, r := range m.Tools {
			v, err := ParsePyJSON(string(r))
			if err != nil {
				v = PyStr(string(r)) // not JSON: kept visible as text rather than dropped
			}
			arr.Items = append(arr.Items, v)
		}
		obj.Set("tools", arr)
	}
	if len(m.ResponseFormat) > 0 {
		v, err := ParsePyJSON(string(m.ResponseFormat))
		if err != nil {
			v = PyStr(string(m.ResponseFormat))
		}
		obj.Set("response_format", v)
	}
	return obj.String()
}

func toolCallsValue(calls []ToolCall) *PyValue {
	arr := &PyValue{Kind: PyArray}
	for _, tc := range calls {
		typ := tc.Type
		if typ == "" {
			typ = "function"
		}
		fn := &PyValue{Kind: PyObject}
		fn.Set("name", PyStr(tc.Function.Name))
		fn.Set("arguments", PyStr(tc.Function.Arguments))
		c := &PyValue{Kind: PyObject}
		if tc.ID != "" {
			c.Set("id", PyStr(tc.ID))
		}
		c.Set("type", PyStr(typ))
		c.Set("function", fn)
		arr.Items = append(arr.Items, c)
	}
	return arr
}

// ParseMessages reads a JSON array of messages.
func ParseMessages(b []byte) ([]Message, error) {
	var msgs []Message
	if err := json.Unmarshal(b, &msgs); err != nil {
		return nil, err
	}
	return msgs, nil
}

// EncodeOptions controls rendering. Use DefaultEncodeOptions for the reference defaults: the zero value
// has AddBOS false and DropThinking false.
type EncodeOptions struct {
	Mode string // ModeThinking or ModeChat
	// Context is the conversation already rendered (e.g. a cached prompt): it is not emitted, but counts
	// for the last-user index and tool-result matching, and a non-empty Context suppresses BOS.
	Context []Message
	// DropThinking (the reference default) drops the reasoning of assistant turns before the last user or
	// developer message in thinking mode; their tool calls and results stay. False keeps it: every user
	// turn and results block then ends in <think> and every assistant turn prints reasoning </think>, so
	// history renders as it was generated and appending a user turn never changes earlier bytes. (The
	// reference encoding_dsv32.py ignores drop_thinking=False when printing; its only effect there is that
	// with True a developer message before the last user message is an error, which is kept here.)
	DropThinking bool
	AddBOS       bool
	// AllowDeveloper admits the developer role (reserved for search-agent flows by the official API).
	AllowDeveloper bool
	// ToolsTemplate replaces DefaultToolsTemplate; ResponseFormatTemplate replaces
	// DefaultResponseFormatTemplate. See RenderToolsBlock for the placeholders.
	ToolsTemplate          string
	ResponseFormatTemplate string
}

// DefaultEncodeOptions returns the reference defaults for mode: BOS on, reasoning dropped.
func DefaultEncodeOptions(mode string) EncodeOptions {
	return EncodeOptions{Mode: mode, DropThinking: true, AddBOS: true}
}

// Errors of the encoder, usable with errors.Is.
var (
	ErrBadMode          = errors.New("chat: mode must be \"thinking\" or \"chat\"")
	ErrDeveloperRole    = errors.New("chat: the developer role is reserved for search-agent flows and is disabled (enable allow_developer / --allow-developer)")
	ErrBadMessage       = errors.New("chat: invalid message")
	ErrOrphanToolResult = errors.New("chat: tool result without a matching tool call")
)

// ReadTemplateFile reads a tools or response-format template. A template without its schema placeholder
// is a preamble to which the encoder appends the structural part, so one final newline (which editors add)
// is removed from it; a template with the placeholder is used as it is.
func ReadTemplateFile(path, placeholder string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("chat template: %w", err)
	}
	s := string(b)
	if !strings.Contains(s, placeholder) {
		s = strings.TrimSuffix(s, "\n")
		s = strings.TrimSuffix(s, "\r")
	}
	return s, nil
}

// SHA-256 of the official DeepSeek-V3.2 preambles once rendered (chat-format.md §3.1): the tools text
// (1120 bytes) and the first 16 hex digits of the response-format text (79 bytes). TemplateDigest lets a
// user check that the template they supply reproduces the official prompts.
const (
	OfficialToolsTextSHA256         = "a4968eee0c1d1b527ff66e0017036f1d4ec6e9c8fd16b67864853e201c33c48c"
	OfficialResponseFormatSHA256Pre = "27cfb1a03906e063"
)

// TemplateDigest returns the hex SHA-256 of the preamble a template renders: its token placeholders
// replaced, and for a full template (one holding placeholder) the text before the schemas without the
// structural "\n<functions>\n" (tools) or "\n" (response format) that precedes them.
func TemplateDigest(tmpl, placeholder string) string {
	pre := templateTokens.Replace(tmpl)
	if i := strings.Index(pre, placeholder); i >= 0 {
		pre = pre[:i]
		if placeholder == PlaceholderToolSchemas {
			pre = strings.TrimSuffix(pre, "\n<functions>\n")
		} else {
			pre = strings.TrimSuffix(pre, "\n")
		}
	}
	sum := sha256.Sum256([]byte(pre))
	return hex.EncodeToString(sum[:])
}

// piece is one run of the rendered prompt: either a special id or text, and whether the assistant
// generates it (loss mask).
type piece struct {
	special int32 // 0: text
	text    string
	gen     bool
}

type renderer struct {
	pieces []piece
	gen    bool // current pieces are generated by the assistant
}

func (r *renderer) sp(id int32) { r.pieces = append(r.pieces, piece{special: id, gen: r.gen}) }

func (r *renderer) text(s string) {
	if s != "" {
		r.pieces = append(r.pieces, piece{text: s, gen: r.gen})
	}
}

// trusted writes template text: the special literals in it become special ids, as the official
// tokenizer would make them.
func (r *renderer) trusted(s string) {
	for s != "" {
		best, bestID := -1, int32(0)
		for k, lit := range SpecialTokens {
			if i := strings.Index(s, lit); i >= 0 && (best < 0 || i < best) {
				best, bestID = i, int32(256+k)
			}
		}
		if best < 0 {
			r.text(s)
			return
		}
		r.text(s[:best])
		r.sp(bestID)
		s = s[best+len(SpecialTokens[bestID-256]):]
	}
}

func (r *renderer) String() string {
	var b strings.Builder
	for _, p := range r.pieces {
		if p.special != 0 {
			b.WriteString(SpecialTokens[p.special-256])
		} else {
			b.WriteString(p.text)
		}
	}
	return b.String()
}

func (r *renderer) ids(tok *Tokenizer, withMask bool) ([]int32, []uint8) {
	if tok == nil {
		tok = &Tokenizer{}
	}
	var ids []int32
	var mask []uint8
	for _, p := range r.pieces {
		n := len(ids)
		if p.special != 0 {
			ids = tok.AppendSpecial(ids, p.special)
		} else {
			ids = tok.AppendText(ids, p.text)
		}
		if withMask {
			m := uint8(0)
			if p.gen {
				m = 1
			}
			for ; n < len(ids); n++ {
				mask = append(mask, m)
			}
		}
	}
	return ids, mask
}

// Encode renders msgs to the exact DeepSeek-V3.2 prompt string.
func Encode(msgs []Message, opt EncodeOptions) (string, error) {
	r, err := render(msgs, opt)
	if err != nil {
		return "", err
	}
	return r.String(), nil
}

// EncodeIDs renders msgs to token ids: structural literals are special ids, all message text is bytes.
func EncodeIDs(tok *Tokenizer, msgs []Message, opt EncodeOptions) ([]int32, error) {
	r, err := render(msgs, opt)
	if err != nil {
		return nil, err
	}
	ids, _ := r.ids(tok, false)
	return ids, nil
}

// EncodeForTraining renders msgs to ids with the chat-SFT loss mask: 1 on every token of every rendered
// assistant message (its reasoning and </think> where printed, content, DSML tool calls, EOS), 0 on BOS,
// system, user, developer and tool text and on the template's structure around them (role markers, the
// <think>/</think> that ends a user turn or a results block).
func EncodeForTraining(tok *Tokenizer, msgs []Message, opt EncodeOptions) (ids []int32, lossMask []uint8, err error) {
	r, err := render(msgs, opt)
	if err != nil {
		return nil, nil, err
	}
	ids, lossMask = r.ids(tok, true)
	return ids, lossMask, nil
}

func render(msgs []Message, opt EncodeOptions) (*renderer, error) {
	if opt.Mode != ModeThinking && opt.Mode != ModeChat {
		return nil, fmt.Errorf("%w, got %q", ErrBadMode, opt.Mode)
	}
	all := make([]Message, 0, len(opt.Context)+len(msgs))
	all = append(all, opt.Context...)
	all = append(all, msgs...)
	last := -1
	for i, m := range all {
		if m.Role == "user" || m.Role == "developer" {
			last = i
		}
	}
	for i, m := range all {
		if m.Role == "developer" {
			if !opt.AllowDeveloper {
				return nil, fmt.Errorf("message %d: %w", i, ErrDeveloperRole)
			}
			if opt.Mode == ModeThinking && opt.DropThinking && i < last {
				return nil, fmt.Errorf("message %d: %w: a developer message before the last user message cannot be rendered in thinking mode with reasoning dropped (the reference encoder deletes it); keep reasoning to render it", i, ErrBadMessage)
			}
		}
	}
	e := &encoder{all: all, last: last, opt: opt, r: &renderer{}}
	if opt.AddBOS && len(opt.Context) == 0 {
		e.r.sp(BOS)
	}
	for i := len(opt.Context); i < len(all); i++ {
		if err := e.message(i); err != nil {
			return nil, fmt.Errorf("message %d (%s): %w", i, all[i].Role, err)
		}
	}
	return e.r, nil
}

type encoder struct {
	all  []Message
	last int
	opt  EncodeOptions
	r    *renderer
}

func (e *encoder) thinking() bool { return e.opt.Mode == ModeThinking }

// keep reports whether reasoning of past turns is kept (thinking mode, DropThinking off).
func (e *encoder) keep() bool { return e.thinking() && !e.opt.DropThinking }

// turnEnd writes <｜Assistant｜> and <think> (thinking mode, last user turn) or </think>.
func (e *encoder) turnEnd(i int) {
	e.r.sp(Assistant)
	if e.thinking() && (i == e.last || e.keep()) {
		e.r.sp(ThinkBeg)
	} else {
		e.r.sp(ThinkEnd)
	}
}

func (e *encoder) message(i int) error {
	m := e.all[i]
	switch m.Role {
	case "system":
		e.r.text(m.Content)
		return e.blocks(m)
	case "user":
		if m.NullContent {
			return fmt.Errorf("%w: content is null", ErrBadMessage)
		}
		e.r.sp(User)
		e.r.text(m.Content)
		e.turnEnd(i)
	case "developer":
		if m.Content == "" {
			return fmt.Errorf("%w: a developer message needs content", ErrBadMessage)
		}
		e.r.sp(User)
		if err := e.blocks(m); err != nil {
			return err
		}
		e.r.text("\n\n# The user's message is: ")
		e.r.text(m.Content)
		e.turnEnd(i)
	case "assistant":
		return e.assistant(i, m)
	case "tool":
		return e.tool(i, m)
	default:
		return fmt.Errorf("%w: unknown role %q", ErrBadMessage, m.Role)
	}
	return nil
}

// blocks writes the tools and response-format blocks of a system or developer message.
func (e *encoder) blocks(m Message) error {
	if len(m.Tools) > 0 {
		var schemas []string
		for k, raw := range m.Tools {
			t, err := ParsePyJSON(string(raw))
			if err != nil {
				return fmt.Errorf("%w: tools[%d]: %v", ErrBadMessage, k, err)
			}
			fn, ok := t.Get("function")
			if !ok {
				return fmt.Errorf("%w: tools[%d] has no \"function\" member", ErrBadMessage, k)
			}
			schemas = append(schemas, fn.String())
		}
		e.r.text("\n\n")
		tmpl := e.opt.ToolsTemplate
		if tmpl == "" {
			tmpl = DefaultToolsTemplate
		}
		e.fill(tmpl, PlaceholderToolSchemas, strings.Join(schemas, "\n"), "\n<functions>\n", "\n</functions>\n")
	}
	if len(m.ResponseFormat) > 0 {
		rf, err := ParsePyJSON(string(m.ResponseFormat))
		if err != nil {
			return fmt.Errorf("%w: response_format: %v", ErrBadMessage, err)
		}
		if rf.Truthy() {
			e.r.text("\n\n")
			tmpl := e.opt.ResponseFormatTemplate
			if tmpl == "" {
				tmpl = DefaultResponseFormatTemplate
			}
			e.fill(tmpl, PlaceholderSchema, rf.String(), "\n", "")
		}
	}
	return nil
}

// fill writes a template: its token placeholders become literals (special ids), and the data (JSON,
// plain bytes) replaces every placeholder; a template without the placeholder gets before+data+after
// appended.
func (e *encoder) fill(tmpl, placeholder, data, before, after string) {
	tmpl = templateTokens.Replace(tmpl)
	parts := strings.Split(tmpl, placeholder)
	if len(parts) == 1 {
		e.r.trusted(tmpl)
		e.r.text(before)
		e.r.text(data)
		e.r.text(after)
		return
	}
	for k, p := range parts {
		if k > 0 {
			e.r.text(data)
		}
		e.r.trusted(p)
	}
}

func (e *encoder) assistant(i int, m Message) error {
	e.r.gen = true
	defer func() { e.r.gen = false }()
	if e.thinking() && (i > e.last || e.keep()) {
		if i > e.last && m.ReasoningContent == "" && len(m.ToolCalls) == 0 {
			return fmt.Errorf("%w: in thinking mode an assistant message after the last user message needs reasoning_content or tool_calls", ErrBadMessage)
		}
		e.r.text(m.ReasoningContent)
		e.r.sp(ThinkEnd)
	}
	e.r.text(m.Content)
	if len(m.ToolCalls) > 0 {
		// Validate every call before writing any of the block.
		args := make([]*PyValue, len(m.ToolCalls))
		for k, tc := range m.ToolCalls {
			v, err := ParsePyJSON(tc.Function.Arguments)
			if err != nil {
				return fmt.Errorf("%w: tool_calls[%d] (%s): arguments: %v", ErrBadMessage, k, tc.Function.Name, err)
			}
			if v.Kind != PyObject {
				return fmt.Errorf("%w: tool_calls[%d] (%s): arguments must be a JSON object, got %s", ErrBadMessage, k, tc.Function.Name, v.KindName())
			}
			args[k] = v
		}
		e.r.text("\n\n<")
		e.r.sp(DSML)
		e.r.text("function_calls>\n")
		for k, tc := range m.ToolCalls {
			if k > 0 {
				e.r.text("\n")
			}
			e.r.text("<")
			e.r.sp(DSML)
			e.r.text(`invoke name="`)
			e.r.text(tc.Function.Name)
			e.r.text("\">\n")
			for n, mem := range args[k].Members {
				if n > 0 {
					e.r.text("\n")
				}
				e.r.text("<")
				e.r.sp(DSML)
				e.r.text(`parameter name="`)
				e.r.text(mem.Key)
				if mem.Value.Kind == PyString {
					e.r.text(`" string="true">`)
					e.r.text(mem.Value.Str)
				} else {
					e.r.text(`" string="false">`)
					e.r.text(mem.Value.String())
				}
				e.r.text("</")
				e.r.sp(DSML)
				e.r.text("parameter>")
			}
			e.r.text("\n</")
			e.r.sp(DSML)
			e.r.text("invoke>")
		}
		e.r.text("\n</")
		e.r.sp(DSML)
		e.r.text("function_calls>")
	}
	e.r.sp(EOS)
	return nil
}

func (e *encoder) tool(i int, m Message) error {
	if m.NullContent {
		return fmt.Errorf("%w: content is null", ErrBadMessage)
	}
	prev := i - 1
	for prev >= 0 && e.all[prev].Role == "tool" {
		prev--
	}
	if prev < 0 || e.all[prev].Role != "assistant" {
		return fmt.Errorf("%w: a tool message must follow an assistant message with tool_calls", ErrOrphanToolResult)
	}
	order, n := i-prev, len(e.all[prev].ToolCalls)
	if order > n {
		return fmt.Errorf("%w: result %d but the assistant message %d made %d tool calls", ErrOrphanToolResult, order, prev, n)
	}
	if order == 1 {
		e.r.text("\n\n<function_results>")
	}
	e.r.text("\n<result>")
	e.r.text(m.Content)
	e.r.text("</result>")
	if order == n {
		e.r.text("\n</function_results>\n\n")
		if e.thinking() && (i >= e.last || e.keep()) {
			e.r.sp(ThinkBeg)
		} else {
			e.r.sp(ThinkEnd)
		}
	}
	return nil
}

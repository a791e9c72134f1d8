// chat_parse_test.go checks the completion parser: the examples of chat-format.md §9
// (testdata/chat/parse), one malformed completion per typed error, the reference's regex quirks, and
// the ids variant.
package data

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// referenceErrors maps the reference's assertion messages to the sentinels.
var referenceErrors = map[string]error{
	"Invalid thinking format":             ErrUnclosedThink,
	"Invalid summary format":              ErrMissingEOS,
	"Tool call format error":              ErrDSMLFormat,
	"Missing special token":               ErrDSMLMissingToken,
	"Tool name format error":              ErrDSMLToolName,
	"Parameter format error":              ErrDSMLParameter,
	"Duplicate parameter name":            ErrDSMLDuplicate,
	"Unexpected content after tool calls": ErrTrailingAfterCalls,
	"Unexpected content at end":           ErrTrailingAfterEOS,
	"Unexpected special token in content": ErrSpecialInContent,
}

func TestParseGolden(t *testing.T) {
	paths, _ := filepath.Glob("testdata/chat/parse/*.json")
	if len(paths) < 3 {
		t.Fatalf("want the 3 parser examples in testdata/chat/parse, found %d", len(paths))
	}
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			var fx struct {
				Mode, Text, Expected, Error string
			}
			if err := json.Unmarshal(b, &fx); err != nil {
				t.Fatal(err)
			}
			got, err := ParseCompletion(fx.Text, fx.Mode)
			if fx.Error != "" {
				want := referenceErrors[fx.Error]
				if want == nil || !errors.Is(err, want) {
					t.Fatalf("error %v, want %q", err, fx.Error)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.JSON() != fx.Expected {
				t.Fatalf("parsed\n %s\nwant\n %s", got.JSON(), fx.Expected)
			}
		})
	}
}

const (
	tEOS = "<｜end▁of▁sentence｜>"
	tD   = "｜DSML｜"
	tFC  = "\n\n<" + tD + "function_calls>\n"
	tEnd = "</" + tD + "function_calls>"
)

func tParam(name, str, val string) string {
	return "<" + tD + `parameter name="` + name + `" string="` + str + `">` + val + "</" + tD + "parameter>"
}

func tInvoke(name string, params ...string) string {
	return "<" + tD + `invoke name="` + name + "\">\n" + strings.Join(params, "\n") + "\n</" + tD + "invoke>"
}

func TestParseErrors(t *testing.T) {
	good := tFC + tInvoke("f", tParam("a", "true", "x")) + "\n" + tEnd
	tests := []struct {
		name, mode, text string
		want             error
	}{
		{"thinking without </think>", ModeThinking, "abc" + tEOS, ErrUnclosedThink},
		{"call before </think> (P3)", ModeThinking, "Hmm." + good + "</think>" + tEOS, ErrUnclosedThink},
		{"no EOS", ModeChat, "hello", ErrMissingEOS},
		{"text after EOS", ModeChat, "hi" + tEOS + "x", ErrTrailingAfterEOS},
		{"second EOS", ModeChat, "hi" + tEOS + tEOS, ErrTrailingAfterEOS},
		{"text after the calls", ModeChat, good + "junk" + tEOS, ErrTrailingAfterCalls},
		{"text after calls and EOS", ModeChat, good + tEOS + "x", ErrTrailingAfterEOS},
		{"no newline after function_calls", ModeChat, "\n\n<" + tD + "function_calls>" + tInvoke("f") + "\n" + tEnd + tEOS, ErrDSMLFormat},
		{"text between invokes", ModeChat, tFC + tInvoke("f") + "\nx\n" + tInvoke("g") + "\n" + tEnd + tEOS, ErrDSMLFormat},
		{"block opened, nothing follows", ModeChat, tFC, ErrDSMLMissingToken},
		{"truncated at the block start", ModeChat, "\n\n<" + tD + "function_calls", ErrDSMLUnclosed},
		{"truncated inside an invoke", ModeChat, tFC + "<" + tD + `invoke name="f">` + "\n", ErrDSMLUnclosed},
		{"truncated after an invoke", ModeChat, strings.TrimSuffix(tFC+tInvoke("f"), ">"), ErrDSMLUnclosed},
		{"invoke closed, block not", ModeChat, tFC + tInvoke("f") + "\n", ErrDSMLMissingToken},
		{"invoke closed without newline", ModeChat, tFC + tInvoke("f"), ErrDSMLFormat},
		{"bad invoke header", ModeChat, tFC + "<" + tD + `invoke nam="f">` + "\n</" + tD + "invoke>\n" + tEnd + tEOS, ErrDSMLToolName},
		{"no string attribute (P2)", ModeChat, tFC + tInvoke("f", "<"+tD+`parameter name="a">x</`+tD+"parameter>") + "\n" + tEnd + tEOS, ErrDSMLParameter},
		{"string attribute not boolean", ModeChat, tFC + tInvoke("f", tParam("a", "yes", "x")) + "\n" + tEnd + tEOS, ErrDSMLParameter},
		{"parameters not on separate lines", ModeChat, tFC + tInvoke("f", tParam("a", "true", "x")+tParam("b", "true", "y")) + "\n" + tEnd + tEOS, ErrDSMLParameter},
		{"duplicate parameter", ModeChat, tFC + tInvoke("f", tParam("a", "true", "x"), tParam("a", "false", "1")) + "\n" + tEnd + tEOS, ErrDSMLDuplicate},
		{"<think> in content", ModeChat, "a<think>b" + tEOS, ErrSpecialInContent},
		{"DSML in content", ModeChat, "a" + tD + tEOS, ErrSpecialInContent},
		{"BOS in reasoning", ModeThinking, "<｜begin▁of▁sentence｜></think>a" + tEOS, ErrSpecialInContent},
		{"<think> in reasoning", ModeThinking, "<think>x</think>a" + tEOS, ErrSpecialInContent},
		{"bad mode", "", "a" + tEOS, ErrBadMode},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseCompletion(tc.text, tc.mode)
			if !errors.Is(err, tc.want) {
				t.Fatalf("ParseCompletion(%q) = %+v, %v; want %v", tc.text, got, err, tc.want)
			}
			dsml := errors.Is(tc.want, ErrBadDSML)
			if errors.Is(err, ErrBadDSML) != dsml {
				t.Fatalf("errors.Is(%v, ErrBadDSML) = %v, want %v", err, !dsml, dsml)
			}
		})
	}
}

func TestParseValid(t *testing.T) {
	tests := []struct {
		name, mode, text string
		want             ParsedMessage
	}{
		{"chat content", ModeChat, "Hello." + tEOS, ParsedMessage{Content: "Hello."}},
		{"empty thinking", ModeThinking, "</think>Hi" + tEOS, ParsedMessage{Content: "Hi"}},
		{"role markers are allowed in content", ModeChat, "a<｜User｜>b<｜Assistant｜>" + tEOS, ParsedMessage{Content: "a<｜User｜>b<｜Assistant｜>"}},
		{"empty block without EOS", ModeChat, tFC + tEnd, ParsedMessage{ToolCalls: nil, MissingEOS: true}},
		{"call, no parameters", ModeThinking, "r</think>" + tFC + tInvoke("ping") + "\n" + tEnd + tEOS,
			ParsedMessage{ReasoningContent: "r", ToolCalls: []ParsedCall{{Name: "ping", Arguments: "{}"}}}},
		{"values: raw string with newlines and quotes, raw JSON kept as written", ModeChat,
			"ok" + tFC + tInvoke("f", tParam("s", "true", "a \"b\"\n\\c"), tParam("n", "false", "1.50"), tParam("o", "false", `{"k": [1, null]}`)) + "\n" + tInvoke("g", tParam("b", "false", "true")) + "\n" + tEnd + tEOS,
			ParsedMessage{Content: "ok", ToolCalls: []ParsedCall{
				{Name: "f", Params: []ParsedParam{{"s", "a \"b\"\n\\c", true}, {"n", "1.50", false}, {"o", `{"k": [1, null]}`, false}},
					Arguments: `{"s": "a \"b\"\n\\c", "n": 1.50, "o": {"k": [1, null]}}`},
				{Name: "g", Params: []ParsedParam{{"b", "true", false}}, Arguments: `{"b": true}`}}}},
		// Python's \s and $ in the reference's regular expressions.
		{"whitespace before name (Python \\s includes U+3000)", ModeChat, tFC + "<" + tD + "invoke\u3000\n name=\"f\">\n\n</" + tD + "invoke>\n" + tEnd + tEOS,
			ParsedMessage{ToolCalls: []ParsedCall{{Name: "f", Arguments: "{}"}}}},
		{"$ before a final newline in a parameter", ModeChat, tFC + tInvoke("f", "<"+tD+`parameter name="a" string="true">v<`+"\n/"+tD+"parameter>") + "\n" + tEnd + tEOS,
			ParsedMessage{ToolCalls: []ParsedCall{{Name: "f", Params: []ParsedParam{{"a", "v", true}}, Arguments: `{"a": "v"}`}}}},
		{"value with < and quotes in name", ModeChat, tFC + tInvoke(`a">b`, tParam("k", "true", "x<y<")) + "\n" + tEnd + tEOS,
			ParsedMessage{ToolCalls: []ParsedCall{{Name: `a">b`, Params: []ParsedParam{{"k", "x<y<", true}}, Arguments: `{"k": "x<y<"}`}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseCompletion(tc.text, tc.mode)
			if err != nil {
				t.Fatalf("ParseCompletion(%q): %v", tc.text, err)
			}
			if !reflect.DeepEqual(*got, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", *got, tc.want)
			}
		})
	}
}

func TestParsedParamDecode(t *testing.T) {
	tests := []struct {
		p    ParsedParam
		want any
		ok   bool
	}{
		{ParsedParam{"s", "12", true}, "12", true},
		{ParsedParam{"n", "12", false}, json.Number("12"), true},
		{ParsedParam{"b", "false", false}, false, true},
		{ParsedParam{"a", `[1, "x"]`, false}, []any{json.Number("1"), "x"}, true},
		{ParsedParam{"bad", "abc", false}, nil, false},
		{ParsedParam{"two", "1 2", false}, nil, false},
	}
	for _, tc := range tests {
		got, err := tc.p.Decode()
		if (err == nil) != tc.ok || (tc.ok && !reflect.DeepEqual(got, tc.want)) {
			t.Errorf("Decode(%+v) = %#v, %v; want %#v ok=%v", tc.p, got, err, tc.want, tc.ok)
		}
	}
	if got := (ParsedParam{"s", "a\"b", true}).JSON(); got != `"a\"b"` {
		t.Errorf("JSON of a string parameter = %s", got)
	}
}

func TestParseCompletionIDs(t *testing.T) {
	tok := &Tokenizer{VocabSize: NumTokenIDs}
	ids := tok.AppendText(nil, "why")
	ids = tok.AppendSpecial(ids, ThinkEnd)
	ids = tok.AppendText(ids, "because")
	ids = tok.AppendSpecial(ids, EOS)
	got, err := ParseCompletionIDs(tok, ids, ModeThinking)
	if err != nil || got.ReasoningContent != "why" || got.Content != "because" {
		t.Fatalf("ParseCompletionIDs = %+v, %v", got, err)
	}
	// The same text with </think> spelled in bytes is not structure.
	spelled := tok.AppendText(nil, "why</think>because")
	spelled = tok.AppendSpecial(spelled, EOS)
	if _, err := ParseCompletionIDs(tok, spelled, ModeThinking); !errors.Is(err, ErrSpecialInContent) {
		t.Fatalf("byte-spelled </think>: err %v, want ErrSpecialInContent", err)
	}
	// A rendered assistant turn parses back from its ids.
	conv := msgs(t, `[{"role": "user", "content": "q"}, {"role": "assistant", "reasoning_content": "r", "content": "c", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{\"x\": [1]}"}}]}]`)
	prompt, _ := EncodeIDs(tok, conv[:1], DefaultEncodeOptions(ModeThinking))
	full, _ := EncodeIDs(tok, conv, DefaultEncodeOptions(ModeThinking))
	got, err = ParseCompletionIDs(tok, full[len(prompt):], ModeThinking)
	if err != nil || got.ToolCalls[0].Arguments != `{"x": [1]}` || got.Content != "c" {
		t.Fatalf("ParseCompletionIDs(rendered turn) = %+v, %v", got, err)
	}
}

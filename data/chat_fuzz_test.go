// chat_fuzz_test.go fuzzes the chat format. FuzzParseCompletion: the parser never panics, every error is
// one of its typed errors, and a parsed message re-rendered and re-parsed is a fixpoint.
// FuzzEncodeRoundTrip: an assistant message rendered as a completion parses back to itself. Seed corpora
// live in testdata/fuzz/<FuzzName>/ besides the f.Add seeds.
package data

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// renderAssistant renders m as the completion of a prompt (reasoning printed in thinking mode).
func renderAssistant(m Message, mode string) (string, error) {
	e := &encoder{all: []Message{m}, last: -1, opt: EncodeOptions{Mode: mode}, r: &renderer{}}
	if err := e.assistant(0, m); err != nil {
		return "", err
	}
	return e.r.String(), nil
}

func FuzzParseCompletion(f *testing.F) {
	seeds := []string{
		"Need data.</think>One sec." + tFC + tInvoke("wx", tParam("city", "true", "Oulu"), tParam("hours", "false", "[6, 12]")) + "\n" + tEnd + tEOS,
		tFC + tInvoke("wx", "<"+tD+`parameter name="city">Oulu</`+tD+"parameter>") + "\n" + tEnd + tEOS,
		"Hmm." + tFC + tEnd + "</think>" + tEOS,
		"plain answer" + tEOS,
		"r</think>" + tFC + tInvoke("a") + "\n" + tInvoke("b", tParam("x", "false", "{\"k\": 1}")) + "\n" + tEnd,
		tFC + "<" + tD + "invoke\u3000name=\"f\">\n\n</" + tD + "invoke>\n" + tEnd + tEOS + "tail",
	}
	// Every assistant turn of the golden conversations, as its completion text.
	paths, _ := filepath.Glob("testdata/chat/encode/*.txt")
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err == nil {
			for _, part := range strings.SplitAfter(string(b), "<｜Assistant｜><think>") {
				seeds = append(seeds, part)
			}
		}
	}
	for _, s := range seeds {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, text string, thinking bool) {
		mode := ModeChat
		if thinking {
			mode = ModeThinking
		}
		p, err := ParseCompletion(text, mode)
		if err != nil {
			if !IsParseError(err) {
				t.Fatalf("ParseCompletion(%q): untyped error %v", text, err)
			}
			return
		}
		if !utf8.ValidString(text) {
			return // JSON re-encoding replaces invalid bytes
		}
		t2, err := renderAssistant(p.Message(), mode)
		if err != nil {
			// Raw string="false" values need not be JSON, and a thinking reply may lack reasoning and calls.
			if !errors.Is(err, ErrBadMessage) {
				t.Fatalf("renderAssistant: %v", err)
			}
			return
		}
		p2, err := ParseCompletion(t2, mode)
		if err != nil {
			t.Fatalf("re-rendered %q (from %q) does not parse: %v", t2, text, err)
		}
		t3, err := renderAssistant(p2.Message(), mode)
		if err != nil || t3 != t2 {
			t.Fatalf("not a fixpoint: %q -> %q (%v)", t2, t3, err)
		}
	})
}

// hasLiteral reports whether s holds a special literal or invalid UTF-8, which the round trip excludes:
// the parser rightly refuses such text in content and reasoning.
func hasLiteral(s string) bool {
	if !utf8.ValidString(s) {
		return true
	}
	for _, lit := range SpecialTokens {
		if strings.Contains(s, lit) {
			return true
		}
	}
	return strings.Contains(s, "｜DSML｜")
}

func FuzzEncodeRoundTrip(f *testing.F) {
	f.Add("One sec.", "Need data.", "wx", "city", "Oulu", 2.5, true)
	f.Add("", "", "ping", "", "", 0.0, false)
	f.Add("a\n\nb", "x<y", "n\"m", "k\ney", "line1\nline2 \"q\" \\", 1e16, true)
	f.Add("チーズ", "😀", "note", "ключ", "a\u2028b\x01", -0.0, false)
	f.Fuzz(func(t *testing.T, content, reasoning, name, key, sval string, num float64, thinking bool) {
		for _, s := range []string{content, reasoning, name, key, sval} {
			if hasLiteral(s) {
				return
			}
		}
		mode := ModeChat
		if thinking {
			mode = ModeThinking
		}
		args := &PyValue{Kind: PyObject}
		args.Set(key, PyStr(sval))
		args.Set("n", &PyValue{Kind: PyFloat, Float: num})
		m := Message{Role: "assistant", Content: content, ReasoningContent: reasoning,
			ToolCalls: []ToolCall{{Type: "function", Function: FunctionCall{Name: name, Arguments: args.String()}}}}
		conv := []Message{{Role: "user", Content: "q"}, m}
		opt := DefaultEncodeOptions(mode)
		prompt, err := Encode(conv[:1], opt)
		if err != nil {
			t.Fatal(err)
		}
		full, err := Encode(conv, opt)
		if err != nil {
			t.Fatalf("Encode: %v", err)
		}
		p, err := ParseCompletion(full[len(prompt):], mode)
		if err != nil {
			t.Fatalf("ParseCompletion(%q): %v", full[len(prompt):], err)
		}
		wantReasoning := reasoning
		if mode == ModeChat {
			wantReasoning = ""
		}
		if p.Content != content || p.ReasoningContent != wantReasoning || len(p.ToolCalls) != 1 ||
			p.ToolCalls[0].Name != name || p.ToolCalls[0].Arguments != args.String() {
			t.Fatalf("round trip of %q:\n got %+v\nwant content %q reasoning %q call %s(%s)", full[len(prompt):], p, content, wantReasoning, name, args.String())
		}
	})
}

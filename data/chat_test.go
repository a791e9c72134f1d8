// chat_test.go checks the DeepSeek-V3.2 encoder against the golden conversations of
// testdata/chat/encode (NAME.json input, NAME.txt the expected prompt, worked out by hand from
// chat-format.md; e1…e5 are the document's own examples with {TOOLS_TEXT}/{RF_TEXT} supplied as the
// templates), the rendering rules, the token ids, the training loss mask, and encode → parse round trips.
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

type chatFixture struct {
	Description string    `json:"description"`
	Mode        string    `json:"mode"`
	Context     []Message `json:"context"`
	Messages    []Message `json:"messages"`
	Options     struct {
		KeepReasoning  bool   `json:"keep_reasoning"`
		NoBOS          bool   `json:"no_bos"`
		AllowDeveloper bool   `json:"allow_developer"`
		ToolsTemplate  string `json:"tools_template"`
		RFTemplate     string `json:"rf_template"`
	} `json:"options"`
}

func (f *chatFixture) opts() EncodeOptions {
	return EncodeOptions{
		Mode: f.Mode, Context: f.Context, DropThinking: !f.Options.KeepReasoning, AddBOS: !f.Options.NoBOS,
		AllowDeveloper: f.Options.AllowDeveloper, ToolsTemplate: f.Options.ToolsTemplate,
		ResponseFormatTemplate: f.Options.RFTemplate,
	}
}

type namedFixture struct {
	name     string
	fx       chatFixture
	expected string
}

func loadEncodeFixtures(t *testing.T) []namedFixture {
	t.Helper()
	paths, err := filepath.Glob("testdata/chat/encode/*.json")
	if err != nil || len(paths) < 20 {
		t.Fatalf("want ≥ 20 golden conversations in testdata/chat/encode, found %d (%v)", len(paths), err)
	}
	var out []namedFixture
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var nf namedFixture
		nf.name = strings.TrimSuffix(filepath.Base(p), ".json")
		if err := json.Unmarshal(b, &nf.fx); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		exp, err := os.ReadFile(strings.TrimSuffix(p, ".json") + ".txt")
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		nf.expected = string(exp)
		out = append(out, nf)
	}
	return out
}

func TestEncodeGolden(t *testing.T) {
	tok := &Tokenizer{VocabSize: NumTokenIDs}
	for _, nf := range loadEncodeFixtures(t) {
		t.Run(nf.name, func(t *testing.T) {
			got, err := Encode(nf.fx.Messages, nf.fx.opts())
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if got != nf.expected {
				t.Fatalf("Encode mismatch (%s)\n got: %q\nwant: %q", nf.fx.Description, got, nf.expected)
			}
			ids, err := EncodeIDs(tok, nf.fx.Messages, nf.fx.opts())
			if err != nil {
				t.Fatalf("EncodeIDs: %v", err)
			}
			if dec := tok.Decode(ids); dec != got {
				t.Fatalf("Decode(EncodeIDs) differs from Encode:\n got: %q\nwant: %q", dec, got)
			}
			tids, mask, err := EncodeForTraining(tok, nf.fx.Messages, nf.fx.opts())
			if err != nil || !reflect.DeepEqual(tids, ids) || len(mask) != len(ids) {
				t.Fatalf("EncodeForTraining: err %v, ids equal %v, mask len %d for %d ids", err, reflect.DeepEqual(tids, ids), len(mask), len(ids))
			}
		})
	}
}

// TestEncodeParseRoundTrip renders every assistant turn of every golden conversation as the completion of
// the conversation before it, parses it back, and compares with the message.
func TestEncodeParseRoundTrip(t *testing.T) {
	turns := 0
	for _, nf := range loadEncodeFixtures(t) {
		all := append(append([]Message{}, nf.fx.Context...), nf.fx.Messages...)
		opt := nf.fx.opts()
		opt.Context = nil
		for k, m := range all {
			if m.Role != "assistant" {
				continue
			}
			turns++
			prompt, err := Encode(all[:k], opt)
			if err != nil {
				t.Fatalf("%s turn %d: prompt: %v", nf.name, k, err)
			}
			full, err := Encode(all[:k+1], opt)
			if err != nil {
				t.Fatalf("%s turn %d: full: %v", nf.name, k, err)
			}
			if !strings.HasPrefix(full, prompt) {
				t.Fatalf("%s turn %d: the prompt is not a prefix of the prompt with the reply", nf.name, k)
			}
			got, err := ParseCompletion(full[len(prompt):], opt.Mode)
			if err != nil {
				t.Fatalf("%s turn %d: parse %q: %v", nf.name, k, full[len(prompt):], err)
			}
			want := m.ReasoningContent
			if opt.Mode == ModeChat {
				want = ""
			}
			if got.Content != m.Content || got.ReasoningContent != want || len(got.ToolCalls) != len(m.ToolCalls) {
				t.Fatalf("%s turn %d: parsed %+v, want content %q reasoning %q and %d calls", nf.name, k, got, m.Content, want, len(m.ToolCalls))
			}
			for c, tc := range m.ToolCalls {
				args, err := ParsePyJSON(tc.Function.Arguments)
				if err != nil {
					t.Fatal(err)
				}
				if got.ToolCalls[c].Name != tc.Function.Name || got.ToolCalls[c].Arguments != args.String() {
					t.Errorf("%s turn %d call %d: parsed %s(%s), want %s(%s)", nf.name, k, c, got.ToolCalls[c].Name, got.ToolCalls[c].Arguments, tc.Function.Name, args.String())
				}
			}
		}
	}
	if turns < 15 {
		t.Fatalf("only %d assistant turns round-tripped, want ≥ 15", turns)
	}
}

func msgs(t *testing.T, js string) []Message {
	t.Helper()
	m, err := ParseMessages([]byte(js))
	if err != nil {
		t.Fatalf("ParseMessages(%s): %v", js, err)
	}
	return m
}

// TestEncodeContinuation checks the cached-prompt identity Encode(ctx) + Encode(msgs, context=ctx) ==
// Encode(ctx ++ msgs) when msgs adds no user turn, and that a new user turn changes earlier bytes in
// thinking mode unless reasoning is kept.
func TestEncodeContinuation(t *testing.T) {
	ctx := msgs(t, `[{"role": "system", "content": "S"}, {"role": "user", "content": "Q1"},
		{"role": "assistant", "reasoning_content": "R1", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}}]}]`)
	more := msgs(t, `[{"role": "tool", "content": "T1"}, {"role": "assistant", "reasoning_content": "R2", "content": "A1"}]`)
	newUser := msgs(t, `[{"role": "user", "content": "Q2"}]`)
	for _, mode := range []string{ModeThinking, ModeChat} {
		for _, keep := range []bool{false, true} {
			opt := DefaultEncodeOptions(mode)
			opt.DropThinking = !keep
			head, err := Encode(ctx, opt)
			if err != nil {
				t.Fatal(err)
			}
			cont := opt
			cont.Context = ctx
			tail, err := Encode(more, cont)
			if err != nil {
				t.Fatal(err)
			}
			whole, err := Encode(append(append([]Message{}, ctx...), more...), opt)
			if err != nil {
				t.Fatal(err)
			}
			if head+tail != whole {
				t.Errorf("%s keep=%v: Encode(ctx)+Encode(msgs, ctx) = %q, Encode(all) = %q", mode, keep, head+tail, whole)
			}
			if strings.HasPrefix(tail, SpecialTokens[0]) {
				t.Errorf("%s: continuation starts with a second BOS", mode)
			}
			// A new user turn: extension identity holds only where past turns keep their bytes.
			ctx2 := append(append([]Message{}, ctx...), more...)
			cont.Context = ctx2
			tail2, err := Encode(newUser, cont)
			if err != nil {
				t.Fatal(err)
			}
			whole2, err := Encode(append(append([]Message{}, ctx2...), newUser...), opt)
			if err != nil {
				t.Fatal(err)
			}
			wantSame := mode == ModeChat || keep
			if (whole+tail2 == whole2) != wantSame {
				t.Errorf("%s keep=%v: extension across a new user turn equal=%v, want %v", mode, keep, whole+tail2 == whole2, wantSame)
			}
		}
	}
}

func TestEncodeErrors(t *testing.T) {
	tool := `{"type": "function", "function": {"name": "f", "arguments": "{}"}}`
	tests := []struct {
		name string
		js   string
		opt  EncodeOptions
		want error
	}{
		{"developer refused", `[{"role": "developer", "content": "x"}]`, DefaultEncodeOptions(ModeChat), ErrDeveloperRole},
		{"developer empty", `[{"role": "developer", "content": ""}]`, EncodeOptions{Mode: ModeChat, AllowDeveloper: true}, ErrBadMessage},
		{"developer before last user, thinking, drop", `[{"role": "developer", "content": "x"}, {"role": "user", "content": "y"}]`,
			EncodeOptions{Mode: ModeThinking, DropThinking: true, AllowDeveloper: true}, ErrBadMessage},
		{"user null content", `[{"role": "user", "content": null}]`, DefaultEncodeOptions(ModeChat), ErrBadMessage},
		{"user without content", `[{"role": "user"}]`, DefaultEncodeOptions(ModeChat), ErrBadMessage},
		{"tool null content", `[{"role": "user", "content": "q"}, {"role": "assistant", "content": "", "tool_calls": [` + tool + `]}, {"role": "tool", "content": null}]`, DefaultEncodeOptions(ModeChat), ErrBadMessage},
		{"tool first", `[{"role": "tool", "content": "r"}]`, DefaultEncodeOptions(ModeChat), ErrOrphanToolResult},
		{"tool after user", `[{"role": "user", "content": "q"}, {"role": "tool", "content": "r"}]`, DefaultEncodeOptions(ModeChat), ErrOrphanToolResult},
		{"more results than calls", `[{"role": "user", "content": "q"}, {"role": "assistant", "content": "", "tool_calls": [` + tool + `]}, {"role": "tool", "content": "1"}, {"role": "tool", "content": "2"}]`, DefaultEncodeOptions(ModeChat), ErrOrphanToolResult},
		{"thinking reply without reasoning", `[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]`, DefaultEncodeOptions(ModeThinking), ErrBadMessage},
		{"arguments not JSON", `[{"role": "user", "content": "q"}, {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{a: 1}"}}]}]`, DefaultEncodeOptions(ModeChat), ErrBadMessage},
		{"arguments not an object", `[{"role": "user", "content": "q"}, {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]`, DefaultEncodeOptions(ModeChat), ErrBadMessage},
		{"tool without function", `[{"role": "system", "content": "", "tools": [{"type": "function", "name": "f"}]}]`, DefaultEncodeOptions(ModeChat), ErrBadMessage},
		{"unknown role", `[{"role": "narrator", "content": "x"}]`, DefaultEncodeOptions(ModeChat), ErrBadMessage},
		{"bad mode", `[{"role": "user", "content": "x"}]`, EncodeOptions{Mode: "think"}, ErrBadMode},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Encode(msgs(t, tc.js), tc.opt)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Encode error = %v, want %v", err, tc.want)
			}
		})
	}
	// The same developer conversation renders once the switches allow it.
	ok := msgs(t, `[{"role": "developer", "content": "x"}, {"role": "user", "content": "y"}]`)
	if _, err := Encode(ok, EncodeOptions{Mode: ModeThinking, AllowDeveloper: true}); err != nil {
		t.Fatalf("developer before the last user with reasoning kept: %v", err)
	}
}

func TestMessageUnmarshalErrors(t *testing.T) {
	for _, js := range []string{
		`[{"content": "no role"}]`,
		`[{"role": "user", "content": ["part"]}]`,
		`[{"role": "assistant", "tool_calls": [{"type": "function", "function": {"arguments": "{}"}}]}]`,
		`[{"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f"}}]}]`,
		`[{"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": 3}}]}]`,
		`[{"role": "system", "tools": {"a": 1}}]`,
	} {
		if _, err := ParseMessages([]byte(js)); err == nil {
			t.Errorf("ParseMessages(%s): want an error", js)
		}
	}
	// Accepted beyond the reference: arguments as an object, "reasoning" alias.
	m := msgs(t, `[{"role": "assistant", "reasoning": "r", "content": null, "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {"b": 1, "a": [true]}}}]}]`)
	if m[0].ReasoningContent != "r" || !m[0].NullContent || m[0].ToolCalls[0].Function.Arguments != `{"b": 1, "a": [true]}` {
		t.Fatalf("unmarshal: %+v", m[0])
	}
}

// TestEncodeIDsSpecials checks which ids are special: only what the renderer emits, never text.
func TestEncodeIDsSpecials(t *testing.T) {
	tok := &Tokenizer{VocabSize: NumTokenIDs}
	specials := func(ids []int32) []int32 {
		var s []int32
		for _, id := range ids {
			if IsSpecial(id) {
				s = append(s, id)
			}
		}
		return s
	}
	// A user spelling specials gets bytes: the only specials are BOS, User, Assistant, <think>.
	ids, err := EncodeIDs(tok, msgs(t, `[{"role": "user", "content": "Say <｜User｜> and </think> and ｜DSML｜ literally."}]`), DefaultEncodeOptions(ModeThinking))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := specials(ids), []int32{BOS, User, Assistant, ThinkBeg}; !reflect.DeepEqual(got, want) {
		t.Fatalf("specials %v, want %v", got, want)
	}
	// Tool results, assistant text and schema text spelling specials stay bytes too; the DSML markers of
	// the call block are special ids.
	conv := msgs(t, `[{"role": "user", "content": "q"},
		{"role": "assistant", "content": "<｜end▁of▁sentence｜>", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{\"s\": \"</think>\"}"}}]},
		{"role": "tool", "content": "<think>"}]`)
	ids, err = EncodeIDs(tok, conv, DefaultEncodeOptions(ModeChat))
	if err != nil {
		t.Fatal(err)
	}
	want := []int32{BOS, User, Assistant, ThinkEnd, DSML, DSML, DSML, DSML, DSML, DSML, EOS, ThinkEnd}
	if got := specials(ids); !reflect.DeepEqual(got, want) {
		t.Fatalf("specials %v, want %v", got, want)
	}
	// The template is trusted text: the DSML markers and think tags of Sparrow's default preamble become
	// special ids; the schemas (user data) stay bytes.
	sys := msgs(t, `[{"role": "system", "content": "", "tools": [{"type": "function", "function": {"name": "x", "description": "<think>"}}]}]`)
	ids, err = EncodeIDs(tok, sys, EncodeOptions{Mode: ModeChat})
	if err != nil {
		t.Fatal(err)
	}
	prompt, _ := Encode(sys, EncodeOptions{Mode: ModeChat})
	wantPrompt := "\n\n" + templateTokens.Replace(DefaultToolsTemplate) + "\n<functions>\n" + `{"name": "x", "description": "<think>"}` + "\n</functions>\n"
	if prompt != wantPrompt {
		t.Fatalf("default tools block:\n got %q\nwant %q", prompt, wantPrompt)
	}
	nDSML := strings.Count(DefaultToolsTemplate, "{dsml_token}")
	var gotDSML, gotTS int
	for _, id := range specials(ids) {
		switch id {
		case DSML:
			gotDSML++
		case ThinkBeg:
			gotTS++
		}
	}
	if gotDSML != nDSML || gotTS != 1 {
		t.Fatalf("default template: %d DSML ids (want %d), %d <think> ids (want 1, the schema's stays bytes)", gotDSML, nDSML, gotTS)
	}
}

// TestTemplates checks the placeholder forms: a preamble gets the structural part appended; a full
// template with {tool_schemas} / {schema} and the Python token placeholders is filled in place.
func TestTemplates(t *testing.T) {
	conv := msgs(t, `[{"role": "system", "content": "S", "tools": [{"type": "function", "function": {"name": "a"}}, {"type": "function", "function": {"name": "b"}}], "response_format": {"type": "json_object"}}]`)
	tests := []struct {
		tools, rf, want string
	}{
		{"PRE", "RF", "S\n\nPRE\n<functions>\n{\"name\": \"a\"}\n{\"name\": \"b\"}\n</functions>\n\n\nRF\n{\"type\": \"json_object\"}"},
		{"T {dsml_token} {thinking_start_token}{thinking_end_token}\n<functions>\n{tool_schemas}\n</functions>\n", "R:\n{schema}!",
			"S\n\nT ｜DSML｜ <think></think>\n<functions>\n{\"name\": \"a\"}\n{\"name\": \"b\"}\n</functions>\n\n\nR:\n{\"type\": \"json_object\"}!"},
	}
	for _, tc := range tests {
		got, err := Encode(conv, EncodeOptions{Mode: ModeChat, ToolsTemplate: tc.tools, ResponseFormatTemplate: tc.rf})
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("templates %q/%q:\n got %q\nwant %q", tc.tools, tc.rf, got, tc.want)
		}
	}
	// Empty tools and a falsy response_format count as absent.
	got, err := Encode(msgs(t, `[{"role": "system", "content": "S", "tools": [], "response_format": {}}]`), EncodeOptions{Mode: ModeChat})
	if err != nil || got != "S" {
		t.Fatalf("empty tools/response_format: %q, %v", got, err)
	}
	// TemplateDigest: the preamble and full forms of one template hash alike.
	pd := TemplateDigest("A {dsml_token}", PlaceholderToolSchemas)
	if fd := TemplateDigest("A {dsml_token}\n<functions>\n{tool_schemas}\n</functions>\n", PlaceholderToolSchemas); fd != pd {
		t.Errorf("TemplateDigest: full form %s, preamble form %s", fd, pd)
	}
	// sha256("A ｜DSML｜") worked out with sha256sum.
	if pd != "faed1685b80c138da8e1f95bc16be2622e2c080558fa02b5df85a1bc9e698f18" {
		t.Errorf("TemplateDigest = %s", pd)
	}
	if rd := TemplateDigest("R:\n{schema}", PlaceholderSchema); rd != "12f1d3ff206f28173f14989e3c3a314f62733426ff926b67e8d4612af95715f3" { // sha256("R:")
		t.Errorf("TemplateDigest(rf) = %s", rd)
	}
	// ReadTemplateFile drops the editor's final newline from a preamble only.
	dir := t.TempDir()
	pre, full := filepath.Join(dir, "pre.txt"), filepath.Join(dir, "full.txt")
	os.WriteFile(pre, []byte("PRE\n"), 0o644)
	os.WriteFile(full, []byte("X\n{tool_schemas}\n"), 0o644)
	if s, err := ReadTemplateFile(pre, PlaceholderToolSchemas); err != nil || s != "PRE" {
		t.Errorf("ReadTemplateFile(preamble) = %q, %v", s, err)
	}
	if s, err := ReadTemplateFile(full, PlaceholderToolSchemas); err != nil || s != "X\n{tool_schemas}\n" {
		t.Errorf("ReadTemplateFile(full) = %q, %v", s, err)
	}
}

// TestEncodeForTrainingMask checks the loss mask by hand: the runs of 1 are exactly the assistant
// messages as rendered, the runs of 0 everything else.
func TestEncodeForTrainingMask(t *testing.T) {
	tok := &Tokenizer{VocabSize: NumTokenIDs}
	ids, mask, err := EncodeForTraining(tok, msgs(t, `[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]`), DefaultEncodeOptions(ModeChat))
	if err != nil {
		t.Fatal(err)
	}
	wantIDs := []int32{BOS, User, 'H', 'i', Assistant, ThinkEnd, 'Y', 'o', EOS}
	wantMask := []uint8{0, 0, 0, 0, 0, 0, 1, 1, 1}
	if !reflect.DeepEqual(ids, wantIDs) || !reflect.DeepEqual(mask, wantMask) {
		t.Fatalf("ids %v mask %v, want %v %v", ids, mask, wantIDs, wantMask)
	}

	conv := msgs(t, `[{"role": "system", "content": "S", "tools": [{"type": "function", "function": {"name": "f"}}]},
		{"role": "user", "content": "Q"},
		{"role": "assistant", "reasoning_content": "r", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{}"}}]},
		{"role": "tool", "content": "x"},
		{"role": "assistant", "reasoning_content": "s", "content": "A"}]`)
	ids, mask, err = EncodeForTraining(tok, conv, EncodeOptions{Mode: ModeThinking, AddBOS: true, DropThinking: true, ToolsTemplate: "T"})
	if err != nil {
		t.Fatal(err)
	}
	var runs []string
	var flags []uint8
	for i := 0; i < len(ids); {
		j := i
		for j < len(ids) && mask[j] == mask[i] {
			j++
		}
		runs = append(runs, tok.Decode(ids[i:j]))
		flags = append(flags, mask[i])
		i = j
	}
	wantRuns := []string{
		"<｜begin▁of▁sentence｜>S\n\nT\n<functions>\n{\"name\": \"f\"}\n</functions>\n<｜User｜>Q<｜Assistant｜><think>",
		"r</think>\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"f\">\n\n</｜DSML｜invoke>\n</｜DSML｜function_calls><｜end▁of▁sentence｜>",
		"\n\n<function_results>\n<result>x</result>\n</function_results>\n\n<think>",
		"s</think>A<｜end▁of▁sentence｜>",
	}
	if !reflect.DeepEqual(runs, wantRuns) || !reflect.DeepEqual(flags, []uint8{0, 1, 0, 1}) {
		t.Fatalf("mask runs %q flags %v,\nwant %q flags [0 1 0 1]", runs, flags, wantRuns)
	}
}

func TestMessagePyJSON(t *testing.T) {
	m := msgs(t, `[{"role": "assistant", "content": "é", "reasoning_content": "r", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}}]}]`)[0]
	want := `{"role": "assistant", "content": "é", "reasoning_content": "r", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}}]}`
	if got := m.PyJSON(); got != want {
		t.Fatalf("PyJSON:\n got %s\nwant %s", got, want)
	}
	var back []Message
	if err := json.Unmarshal([]byte("["+want+"]"), &back); err != nil || !reflect.DeepEqual(back[0], m) {
		t.Fatalf("PyJSON does not read back: %v %+v", err, back)
	}
}

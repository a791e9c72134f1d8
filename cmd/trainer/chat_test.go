// chat_test.go runs `trainer chat encode` and `trainer chat parse` on the golden fixtures of
// data/testdata/chat and checks the printed prompt, ids and parsed messages byte for byte.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sparrow-rl/sparrow/data"
)

const chatFixtures = "../../data/testdata/chat"

func runChat(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newChatCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func readFixture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(chatFixtures, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestChatEncodeCmd(t *testing.T) {
	dir := t.TempDir()
	tools := filepath.Join(dir, "tools.txt")
	rf := filepath.Join(dir, "rf.txt")
	// Template files as an editor saves them: with a final newline, which the preamble form drops.
	if err := os.WriteFile(tools, []byte("{TOOLS_TEXT}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rf, []byte("{RF_TEXT}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The encode fixtures' inputs are {"mode", "context", "messages", ...} objects, which the command reads.
	tests := []struct {
		fixture string
		args    []string
	}{
		{"e1_chat_multiturn", nil},
		{"e2_thinking_drop", nil},
		{"e3_tools_results", []string{"--template", tools}},
		{"e4_developer_rf", []string{"--rf-template", rf, "--allow-developer"}},
		{"e5_context_tool_result", nil},
		{"g07_thinking_keep", []string{"--keep-reasoning"}},
		{"g10_system_tools_rf", []string{"--template", tools, "--rf-template", rf}},
		{"g15_no_bos", []string{"--no-bos"}},
	}
	for _, tc := range tests {
		t.Run(tc.fixture, func(t *testing.T) {
			args := append([]string{"encode", filepath.Join(chatFixtures, "encode", tc.fixture+".json")}, tc.args...)
			got, err := runChat(t, args...)
			if err != nil {
				t.Fatalf("chat %v: %v", args, err)
			}
			if want := readFixture(t, "encode/"+tc.fixture+".txt"); got != want {
				t.Fatalf("chat %v:\n got %q\nwant %q", args, got, want)
			}
		})
	}

	// A plain JSON array, --mode from the flag, --ids and --mask.
	arr := filepath.Join(dir, "conv.json")
	if err := os.WriteFile(arr, []byte(`[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]`), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := runChat(t, "encode", arr, "--mode", "chat")
	if want := "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜></think>Yo<｜end▁of▁sentence｜>"; err != nil || got != want {
		t.Fatalf("encode array: %q, %v; want %q", got, err, want)
	}
	got, err = runChat(t, "encode", arr, "--mode", "chat", "--ids")
	if want := "[256,259,72,105,260,262,89,111,257]\n"; err != nil || got != want {
		t.Fatalf("encode --ids: %q, %v; want %q", got, err, want)
	}
	got, err = runChat(t, "encode", arr, "--mode", "chat", "--mask")
	if want := `{"ids":[256,259,72,105,260,262,89,111,257],"loss_mask":[0,0,0,0,0,0,1,1,1]}` + "\n"; err != nil || got != want {
		t.Fatalf("encode --mask: %q, %v; want %q", got, err, want)
	}

	// The developer role is refused without the switch.
	_, err = runChat(t, "encode", filepath.Join(chatFixtures, "encode", "e4_developer_rf.json"))
	if !errors.Is(err, data.ErrDeveloperRole) {
		t.Fatalf("developer without --allow-developer: %v", err)
	}
	if _, err := runChat(t, "encode", filepath.Join(dir, "missing.json")); err == nil {
		t.Fatal("missing file: want an error")
	}
}

func TestChatParseCmd(t *testing.T) {
	var p1 struct{ Text, Expected string }
	if err := json.Unmarshal([]byte(readFixture(t, "parse/p1_tool_call.json")), &p1); err != nil {
		t.Fatal(err)
	}
	// The .json form, with the mode taken from the file.
	got, err := runChat(t, "parse", filepath.Join(chatFixtures, "parse", "p1_tool_call.json"))
	if err != nil || got != p1.Expected+"\n" {
		t.Fatalf("parse p1: %q, %v; want %q", got, err, p1.Expected)
	}
	// The raw text form, saved with an editor's final newline.
	dir := t.TempDir()
	txt := filepath.Join(dir, "p1.txt")
	if err := os.WriteFile(txt, []byte(p1.Text+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := runChat(t, "parse", txt, "--mode", "thinking"); err != nil || got != p1.Expected+"\n" {
		t.Fatalf("parse p1.txt: %q, %v", got, err)
	}
	if _, err := runChat(t, "parse", txt, "--keep-final-newline"); !errors.Is(err, data.ErrTrailingAfterEOS) {
		t.Fatalf("parse with the final newline kept: %v, want ErrTrailingAfterEOS", err)
	}
	// Malformed completions give the typed error.
	for name, want := range map[string]error{"p2_no_string_attr.json": data.ErrDSMLParameter, "p3_call_before_think_end.json": data.ErrUnclosedThink} {
		_, err := runChat(t, "parse", filepath.Join(chatFixtures, "parse", name))
		if !errors.Is(err, want) || !strings.Contains(err.Error(), name) {
			t.Errorf("parse %s: %v, want %v naming the file", name, err, want)
		}
	}
}

// Tests of the chat-format task documents (batches.go): kvretrieval's follow-up questions become further
// turns of the conversation, every answer trained (SFT mask), the earlier ones without their reasoning.
package trainer

import (
	"regexp"
	"strings"
	"testing"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/data"
)

func TestFamilyDocsChatFollowUps(t *testing.T) {
	tok, err := data.NewTokenizer(configs.DefaultModel().VocabSize)
	if err != nil {
		t.Fatal(err)
	}
	next := func(params map[string]string) data.Doc {
		d := configs.Data{Source: "synthetic", Generator: "kvretrieval", Format: "chat", HeldOut: 0.05, Params: params}
		docs, err := newFamilyDocs(d, 7, tok, data.SplitTrain, true)
		if err != nil {
			t.Fatal(err)
		}
		doc, err := docs.Next()
		if err != nil {
			t.Fatal(err)
		}
		return doc
	}
	doc := next(map[string]string{"length": "64", "kinds": "single", "followups": "3"})
	one := next(map[string]string{"length": "64", "kinds": "single"})
	text, plain := tok.Decode(doc.IDs), tok.Decode(one.IDs)
	ctx := plain[:strings.Index(plain, "Value of")]
	if !strings.HasPrefix(text, ctx) {
		t.Fatalf("follow-ups changed the task's context:\n%q\n%q", text, plain)
	}
	values := map[string]string{}
	for _, m := range regexp.MustCompile(`(\w+)=(\w+)\n`).FindAllStringSubmatch(ctx, -1) {
		values[m[1]] = m[2]
	}
	var asked []string
	for _, m := range regexp.MustCompile(`Value of (\w+)\?`).FindAllStringSubmatch(text, -1) {
		asked = append(asked, m[1])
	}
	// the trained bytes, EOS written as '|': three bare values (history turns), then the last lookup worked
	var trained strings.Builder
	for i, id := range doc.IDs {
		switch {
		case doc.Mask[i] == 0:
		case id == data.EOS:
			trained.WriteByte('|')
		case id < 256:
			trained.WriteByte(byte(id))
		}
	}
	if len(asked) != 4 {
		t.Fatalf("%d questions in %q, want the task's and 3 follow-ups", len(asked), text)
	}
	want := ""
	for _, k := range asked[:3] {
		want += values[k] + "|"
	}
	want += asked[3] + "=" + values[asked[3]] + values[asked[3]] + "|"
	if trained.String() != want || values[asked[3]] == "" {
		t.Errorf("trained text %q, want %q (document %q)", trained.String(), want, text)
	}
}

// TestDataLoss: data.loss picks the trained tokens of chat task documents whatever the stage kind: assistant
// turns only, or everything after BOS; "" follows the kind (sft: assistant, pretrain: all).
func TestDataLoss(t *testing.T) {
	tok, err := data.NewTokenizer(configs.DefaultModel().VocabSize)
	if err != nil {
		t.Fatal(err)
	}
	trained := func(kind, loss string) (tokens, real int) {
		d := configs.Data{Source: "synthetic", Generator: "kvretrieval", Format: "chat", Packing: "padded", HeldOut: 0.05, Loss: loss,
			Params: map[string]string{"length": "64", "kinds": "single"}}
		batch := firstBatch(t, configs.Stage{Kind: kind, Data: d}, 3, tok, 2, 128)
		for _, l := range batch.Lengths {
			real += l
		}
		return batch.Tokens, real
	}
	for _, tc := range []struct {
		kind, loss string
		all        bool
	}{
		{configs.KindPretrain, "", true}, {configs.KindPretrain, "all", true}, {configs.KindPretrain, "assistant", false},
		{configs.KindSFT, "", false}, {configs.KindSFT, "all", true},
	} {
		tokens, real := trained(tc.kind, tc.loss)
		if tc.all && tokens != real || !tc.all && (tokens >= real/2 || tokens < 2*8) {
			t.Errorf("kind %s, loss %q: %d of %d tokens trained (all: %v)", tc.kind, tc.loss, tokens, real, tc.all)
		}
	}
}

// firstBatch returns the first B×T training batch of stage st.
func firstBatch(t *testing.T, st configs.Stage, seed int64, tok *data.Tokenizer, B, T int) data.Batch {
	t.Helper()
	b, err := newBatcher(st, seed, tok, data.SplitTrain, B, T)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var batch data.Batch
	if err := b.Next(&batch); err != nil {
		t.Fatal(err)
	}
	return batch
}

// TestFamilyDocsOverconfident: data.params.overconfident reaches a tool corpus: at 1, every conversation of
// a tempting task (calc whose first operand starts with 1–4) answers without a call and every other one
// calls; at 0 (and flaw 0) every one calls; the key is refused for a family without tools, naming it.
func TestFamilyDocsOverconfident(t *testing.T) {
	tok, err := data.NewTokenizer(configs.DefaultModel().VocabSize)
	if err != nil {
		t.Fatal(err)
	}
	firstDigit := regexp.MustCompile(`Compute ([0-9])`)
	for _, overconfident := range []string{"0", "1"} {
		d := configs.Data{Source: "synthetic", Generator: "calc", Format: "chat", HeldOut: 0.05,
			Params: map[string]string{"digits": "4", "mul_digits": "1", "overconfident": overconfident}}
		corpus, err := newFamilyDocs(d, 7, tok, data.SplitTrain, true)
		if err != nil {
			t.Fatal(err)
		}
		skipped := 0
		for range 60 {
			doc, err := corpus.Next()
			if err != nil {
				t.Fatal(err)
			}
			text := tok.Decode(doc.IDs)
			m := firstDigit.FindStringSubmatch(text)
			if m == nil {
				t.Fatalf("no task in\n%s", text)
			}
			tempting := m[1] <= "4"
			calls := strings.Contains(text, "function_calls")
			if want := !(tempting && overconfident == "1"); calls != want {
				t.Fatalf("overconfident %s, tempting %v: calls %v, want %v\n%s", overconfident, tempting, calls, want, text)
			}
			if !calls {
				if !strings.Contains(text, "I compute it myself.") {
					t.Fatalf("a conversation neither calls nor answers by itself:\n%s", text)
				}
				skipped++
			}
		}
		if overconfident == "1" && (skipped < 10 || skipped > 50) {
			t.Errorf("overconfident 1: %d of 60 conversations skip the call, want about 4/9 of them", skipped)
		}
	}
	d := configs.Data{Source: "synthetic", Generator: "math", Format: "chat", Params: map[string]string{"overconfident": "0.5"}}
	if _, err := newFamilyDocs(d, 7, tok, data.SplitTrain, true); err == nil || !strings.Contains(err.Error(), "data.params.overconfident") {
		t.Errorf("math with overconfident: error %v, want one naming data.params.overconfident", err)
	}
}

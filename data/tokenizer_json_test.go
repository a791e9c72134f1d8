// Tests of tokenizer.json: structure, the GPT-2 byte alphabet (golden symbols), and that applying the file's
// byte-level mapping and vocabulary to text gives the ids of Tokenizer.Encode.
package data

import (
	"encoding/json"
	"strings"
	"testing"
)

type hfTokenizerJSON struct {
	Version     string `json:"version"`
	AddedTokens []struct {
		ID         int    `json:"id"`
		Content    string `json:"content"`
		Special    bool   `json:"special"`
		Normalized bool   `json:"normalized"`
	} `json:"added_tokens"`
	PreTokenizer struct {
		Type     string `json:"type"`
		UseRegex bool   `json:"use_regex"`
	} `json:"pre_tokenizer"`
	Decoder struct {
		Type string `json:"type"`
	} `json:"decoder"`
	Model struct {
		Type   string         `json:"type"`
		Vocab  map[string]int `json:"vocab"`
		Merges []string       `json:"merges"`
	} `json:"model"`
}

func TestHFJSONStructure(t *testing.T) {
	for _, tc := range []struct {
		vocab, wantAdded int
	}{
		{0, 8},    // zero value: specials only
		{264, 8},  // exactly the ids the tokenizer needs
		{272, 16}, // the default model: 8 reserved ids
		{1000, 744},
	} {
		tok := &Tokenizer{VocabSize: tc.vocab}
		b, err := tok.HFJSON()
		if err != nil {
			t.Fatalf("vocab %d: %v", tc.vocab, err)
		}
		var doc hfTokenizerJSON
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatalf("vocab %d: not JSON: %v", tc.vocab, err)
		}
		if doc.Version != "1.0" || doc.Model.Type != "BPE" || doc.PreTokenizer.Type != "ByteLevel" || doc.PreTokenizer.UseRegex || doc.Decoder.Type != "ByteLevel" {
			t.Errorf("vocab %d: wrong header: %+v", tc.vocab, doc)
		}
		if len(doc.Model.Vocab) != 256 || len(doc.Model.Merges) != 0 {
			t.Errorf("vocab %d: %d vocab entries, %d merges; want 256, 0", tc.vocab, len(doc.Model.Vocab), len(doc.Model.Merges))
		}
		if len(doc.AddedTokens) != tc.wantAdded {
			t.Fatalf("vocab %d: %d added tokens, want %d", tc.vocab, len(doc.AddedTokens), tc.wantAdded)
		}
		for i, a := range doc.AddedTokens {
			if a.ID != 256+i || !a.Special || a.Normalized || a.Content != tok.TokenString(int32(a.ID)) {
				t.Errorf("vocab %d: added token %d = %+v", tc.vocab, i, a)
			}
		}
		if doc.AddedTokens[1].Content != "<｜end▁of▁sentence｜>" {
			t.Errorf("EOS literal %q", doc.AddedTokens[1].Content)
		}
		if tc.vocab == 272 && doc.AddedTokens[15].Content != "<｜reserved_7｜>" {
			t.Errorf("last reserved literal %q", doc.AddedTokens[15].Content)
		}
	}
	if _, err := (&Tokenizer{VocabSize: 100}).HFJSON(); err == nil || !strings.Contains(err.Error(), "vocab_size 100") {
		t.Errorf("vocab 100: err = %v, want a vocab_size error", err)
	}
}

func TestByteLevelAlphabetGolden(t *testing.T) {
	// Symbols from GPT-2's bytes_to_unicode: 0 → Ā (U+0100), '\n' → Ċ (U+010A), ' ' → Ġ (U+0120),
	// DEL (0x7F) → ġ (U+0121), 0xA0 → ł (U+0142), 0xAD (soft hyphen) → Ń (U+0143); printable bytes map to themselves.
	a := ByteLevelAlphabet()
	for _, tc := range []struct {
		b    byte
		want rune
	}{{0, 'Ā'}, {'\n', 'Ċ'}, {' ', 'Ġ'}, {'!', '!'}, {'A', 'A'}, {'~', '~'}, {0x7F, 'ġ'}, {0xA0, 'ł'}, {0xA1, '¡'}, {0xAD, 'Ń'}, {0xFF, 'ÿ'}} {
		if a[tc.b] != tc.want {
			t.Errorf("byte %#x → %q, want %q", tc.b, a[tc.b], tc.want)
		}
	}
	seen := map[rune]bool{}
	for _, r := range a {
		if seen[r] {
			t.Fatalf("symbol %q used twice", r)
		}
		seen[r] = true
	}
}

// TestHFJSONEncodesLikeTokenizer applies the file's model the way HF's ByteLevel + BPE(no merges) does —
// map each byte to its symbol, look the symbol up in the vocab — and compares with Encode.
func TestHFJSONEncodesLikeTokenizer(t *testing.T) {
	tok := &Tokenizer{VocabSize: 272}
	b, err := tok.HFJSON()
	if err != nil {
		t.Fatal(err)
	}
	var doc hfTokenizerJSON
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	alpha := ByteLevelAlphabet()
	for _, text := range []string{"", "hello world\n", "2+2=4", "naïve — 数学 🙂", "\x00\x7f\xff", "<｜User｜> typed"} {
		want := tok.Encode(text)
		var got []int32
		for i := 0; i < len(text); i++ {
			id, ok := doc.Model.Vocab[string(alpha[text[i]])]
			if !ok {
				t.Fatalf("%q: byte %#x has no vocab entry", text, text[i])
			}
			got = append(got, int32(id))
		}
		if len(got) != len(want) {
			t.Fatalf("%q: %d ids, want %d", text, len(got), len(want))
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("%q: id %d = %d, want %d", text, i, got[i], want[i])
			}
		}
	}
}

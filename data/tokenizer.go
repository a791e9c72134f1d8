// tokenizer.go implements the byte-level tokenizer: ids 0–255 are the bytes of UTF-8 text, and the ids
// above them are reserved for the DeepSeek-V3.2 special tokens (dsv32-spec.md §4.2, chat-format.md §1).
// Plain text never yields a special id, even text that spells one: a user who types "<｜User｜>" gets its
// bytes. Only the chat renderer emits specials, through Special / AppendSpecial.

package data

import (
	"fmt"
	"strings"
)

// Special token ids. The strings are the DeepSeek-V3.2 literals (U+FF5C full-width bars, U+2581).
const (
	BOS       = 256 // <｜begin▁of▁sentence｜>
	EOS       = 257 // <｜end▁of▁sentence｜>
	PAD       = 258 // <｜▁pad▁｜>
	User      = 259 // <｜User｜>
	Assistant = 260 // <｜Assistant｜>
	ThinkBeg  = 261 // <think>
	ThinkEnd  = 262 // </think>
	DSML      = 263 // ｜DSML｜
	// NumTokenIDs is the number of ids the tokenizer can produce; ids in [NumTokenIDs, vocab_size) are
	// reserved (<｜reserved_N｜>) so the model's vocabulary can be rounded up.
	NumTokenIDs = 264
)

// SpecialTokens lists the literal of every special id, indexed by id-256.
var SpecialTokens = [...]string{
	"<｜begin▁of▁sentence｜>",
	"<｜end▁of▁sentence｜>",
	"<｜▁pad▁｜>",
	"<｜User｜>",
	"<｜Assistant｜>",
	"<think>",
	"</think>",
	"｜DSML｜",
}

// Tokenizer is the byte-level tokenizer with DeepSeek-V3.2 specials. The zero value is ready to use; VocabSize
// is the model's vocabulary (≥ NumTokenIDs), used to name reserved ids.
type Tokenizer struct {
	VocabSize int
}

// NewTokenizer returns a tokenizer for a model vocabulary of vocabSize ids.
func NewTokenizer(vocabSize int) (*Tokenizer, error) {
	if vocabSize < NumTokenIDs {
		return nil, fmt.Errorf("tokenizer: vocab_size %d is smaller than the %d ids the byte tokenizer needs", vocabSize, NumTokenIDs)
	}
	return &Tokenizer{VocabSize: vocabSize}, nil
}

// Encode returns the byte ids of text. It never returns a special id.
func (t *Tokenizer) Encode(text string) []int32 { return t.AppendText(nil, text) }

// AppendText appends the byte ids of text to ids.
func (t *Tokenizer) AppendText(ids []int32, text string) []int32 {
	for i := 0; i < len(text); i++ {
		ids = append(ids, int32(text[i]))
	}
	return ids
}

// AppendSpecial appends one special id (BOS … DSML). It panics on a non-special id, which is a programming error.
func (t *Tokenizer) AppendSpecial(ids []int32, id int32) []int32 {
	if !IsSpecial(id) {
		panic(fmt.Sprintf("tokenizer: %d is not a special id", id))
	}
	return append(ids, id)
}

// IsSpecial reports whether id is one of the special ids.
func IsSpecial(id int32) bool { return id >= 256 && id < NumTokenIDs }

// SpecialID returns the id of a special token literal, e.g. "<think>".
func SpecialID(literal string) (int32, bool) {
	for i, s := range SpecialTokens {
		if s == literal {
			return int32(256 + i), true
		}
	}
	return 0, false
}

// TokenString returns the text of one id: its byte (possibly an incomplete UTF-8 sequence), the special
// literal, or <｜reserved_N｜>.
func (t *Tokenizer) TokenString(id int32) string {
	switch {
	case id >= 0 && id < 256:
		return string([]byte{byte(id)})
	case IsSpecial(id):
		return SpecialTokens[id-256]
	default:
		return fmt.Sprintf("<｜reserved_%d｜>", id-NumTokenIDs)
	}
}

// Decode renders ids back to text: bytes are concatenated (so any UTF-8 string round-trips) and special
// ids are written as their literals.
func (t *Tokenizer) Decode(ids []int32) string {
	var b strings.Builder
	for _, id := range ids {
		if id >= 0 && id < 256 {
			b.WriteByte(byte(id))
		} else {
			b.WriteString(t.TokenString(id))
		}
	}
	return b.String()
}

// DecodeBytes returns the bytes of the byte ids only, skipping specials.
func (t *Tokenizer) DecodeBytes(ids []int32) []byte {
	out := make([]byte, 0, len(ids))
	for _, id := range ids {
		if id >= 0 && id < 256 {
			out = append(out, byte(id))
		}
	}
	return out
}

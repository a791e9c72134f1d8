// tokenizer_json.go renders the byte tokenizer as a Hugging Face `tokenizers` tokenizer.json, so that a
// checkpoint directory is usable by HF tooling.
//
// The model is a BPE with no merges whose vocabulary is the 256 GPT-2 byte-level symbols (bytes_to_unicode)
// at ids 0..255 in raw byte order, behind a ByteLevel pre-tokenizer without the regex split
// (use_regex: false) and a ByteLevel decoder: each byte of the text becomes the id equal to its value,
// exactly as Tokenizer.Encode does. The special tokens (ids 256..263) and the reserved ids up to the vocab
// size are added_tokens with special: true. One difference is HF's own: the HF tokenizer recognises added
// tokens typed in plain text, where Sparrow's Encode keeps them as bytes.

package data

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// ByteLevelAlphabet returns GPT-2's bytes_to_unicode table: the printable symbol standing for each byte.
// Bytes '!'..'~', '¡'..'¬' and '®'..'ÿ' stand for themselves; the others map to U+0100 onward in byte order.
func ByteLevelAlphabet() [256]rune {
	var t [256]rune
	n := 0
	for b := 0; b < 256; b++ {
		if (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF) {
			t[b] = rune(b)
		} else {
			t[b] = rune(256 + n)
			n++
		}
	}
	return t
}

// HFJSON returns the tokenizer.json of t. A zero VocabSize means NumTokenIDs (no reserved ids).
func (t *Tokenizer) HFJSON() ([]byte, error) {
	vocab := t.VocabSize
	if vocab == 0 {
		vocab = NumTokenIDs
	}
	if vocab < NumTokenIDs {
		return nil, fmt.Errorf("tokenizer.json: vocab_size %d is smaller than the %d ids the byte tokenizer needs", vocab, NumTokenIDs)
	}
	type addedToken struct {
		ID         int    `json:"id"`
		Content    string `json:"content"`
		SingleWord bool   `json:"single_word"`
		LStrip     bool   `json:"lstrip"`
		RStrip     bool   `json:"rstrip"`
		Normalized bool   `json:"normalized"`
		Special    bool   `json:"special"`
	}
	added := make([]addedToken, 0, vocab-256)
	for id := 256; id < vocab; id++ {
		added = append(added, addedToken{ID: id, Content: t.TokenString(int32(id)), Special: true})
	}
	byteLevel := map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}

	// The vocab object is written by hand so that it lists symbols in id order, as HF does.
	var v bytes.Buffer
	v.WriteByte('{')
	for b, r := range ByteLevelAlphabet() {
		if b > 0 {
			v.WriteByte(',')
		}
		k, err := json.Marshal(string(r))
		if err != nil {
			return nil, fmt.Errorf("tokenizer.json: vocab: %w", err)
		}
		fmt.Fprintf(&v, "%s:%d", k, b)
	}
	v.WriteByte('}')

	doc := struct {
		Version       string          `json:"version"`
		Truncation    any             `json:"truncation"`
		Padding       any             `json:"padding"`
		AddedTokens   []addedToken    `json:"added_tokens"`
		Normalizer    any             `json:"normalizer"`
		PreTokenizer  any             `json:"pre_tokenizer"`
		PostProcessor any             `json:"post_processor"`
		Decoder       any             `json:"decoder"`
		Model         json.RawMessage `json:"model"`
	}{
		Version:       "1.0",
		AddedTokens:   added,
		PreTokenizer:  byteLevel,
		PostProcessor: byteLevel,
		Decoder:       byteLevel,
	}
	model := struct {
		Type                    string          `json:"type"`
		Dropout                 any             `json:"dropout"`
		UnkToken                any             `json:"unk_token"`
		ContinuingSubwordPrefix any             `json:"continuing_subword_prefix"`
		EndOfWordSuffix         any             `json:"end_of_word_suffix"`
		FuseUnk                 bool            `json:"fuse_unk"`
		ByteFallback            bool            `json:"byte_fallback"`
		IgnoreMerges            bool            `json:"ignore_merges"`
		Vocab                   json.RawMessage `json:"vocab"`
		Merges                  []string        `json:"merges"`
	}{Type: "BPE", Vocab: v.Bytes(), Merges: []string{}}
	mb, err := json.Marshal(model)
	if err != nil {
		return nil, fmt.Errorf("tokenizer.json: model: %w", err)
	}
	doc.Model = mb
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("tokenizer.json: %w", err)
	}
	return append(out, '\n'), nil
}

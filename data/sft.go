// sft.go implements the token-level side of chat SFT: documents that are already token ids with a loss mask
// (Doc, from a DocSource such as the conversation corpora of conversations.go), and DocPacker, which turns
// them into the same fixed-shape Batch the pre-training packer fills, in one of three modes.
//
// Packed (NewDocPacker): like Packer, the documents are concatenated into one stream (a conversation's BOS
// comes from the chat encoder, the packer adds nothing) and row r is the window of T+1 tokens starting at
// r·T: inputs its first T tokens, targets its last T; consecutive windows share one token and a document that
// does not fit continues in the next row. LossMask[b*T+t] is the mask of the TARGET token (the token at
// position t+1 of the window), so the model is trained exactly on the tokens the encoder marked (the
// assistant's reasoning, content, tool calls and EOS), never on system, user or tool text. Rows hold no
// padding (Lengths[b] = T); Tokens = Σ LossMask, which may be 0 for a batch of long prompts.
//
// Padded (NewDocPackerPadded): one document per row, truncated to its first T+1 tokens (the rest is dropped
// and counted), inputs its first n-1 tokens and targets its last n-1 (n = min(len, T+1)), the remaining
// positions PAD with LossMask 0, and Lengths[b] = n-1, the number of real input positions. A document needs
// at least two tokens (one target).
//
// Whole (NewDocPackerWhole): rows hold whole documents only. Documents are appended to a row while they fit
// in its T+1 tokens; the one that does not fit opens the next row, and the row's tail is PAD with LossMask 0
// (Lengths[b] = the row's real tokens − 1). A document longer than T+1 is truncated like in padded mode. No
// target is ever trained without its document's beginning (its prompt) in context, at the cost of a little
// padding — what a family of short prompt+solution documents wants.
//
// The packer's cursor (DocPackerState) is the source cursor plus the tokens and mask drawn but not yet
// emitted, so a restored packer continues the exact stream of an uninterrupted run. Next reuses the Batch's
// buffers and the packer's own: it allocates nothing in steady state beyond what the source allocates to
// produce a document.

package data

import (
	"fmt"
)

// Doc is one training document already in token ids, with its loss mask (1 = the model is trained to
// produce this token, 0 = context only). Mask has one entry per id.
type Doc struct {
	IDs  []int32
	Mask []uint8
}

// DocSource is a deterministic, resumable stream of token documents (the token-level Corpus).
type DocSource interface {
	// Next returns the next document. The packer copies what it keeps, so the source may reuse the slices
	// on the following call.
	Next() (Doc, error)
	// State is the cursor after the documents returned so far.
	State() CorpusState
	// Restore moves the cursor to a state taken from a source opened with the same configuration and split.
	Restore(CorpusState) error
	// Close releases open files.
	Close() error
}

// DocPacker modes, as recorded in DocPackerState.Mode.
const (
	DocPackPacked = "packed"
	DocPackPadded = "padded"
	DocPackWhole  = "whole"
)

// DocPacker packs or pads the documents of a DocSource into batches (see the file comment).
type DocPacker struct {
	src    DocSource
	B, T   int
	padded bool
	whole  bool

	ids   []int32 // packed: token stream; ids[start:] is not emitted yet
	mask  []uint8 // packed: the loss mask of ids
	start int

	truncated, truncatedTokens int64
}

// DocPackerState is a DocPacker's cursor: its mode, the source cursor after the last document drawn, the
// tokens drawn but not yet consumed with their mask (packed mode; the first of them is the last target of
// the previous row), and the truncation counters (padded mode). LeftoverMask is []uint8, which encoding/json
// writes as base64.
type DocPackerState struct {
	Mode            string      `json:"mode"`
	Corpus          CorpusState `json:"corpus"`
	Leftover        []int32     `json:"leftover"`
	LeftoverMask    []uint8     `json:"leftover_mask"`
	Truncated       int64       `json:"truncated,omitempty"`        // documents truncated to T+1 tokens
	TruncatedTokens int64       `json:"truncated_tokens,omitempty"` // tokens dropped by truncation
}

// NewDocPacker returns a packer that concatenates the documents of src into rows of T+1-token windows with
// carry-over, emitting batches of B rows of T tokens.
func NewDocPacker(src DocSource, B, T int) *DocPacker {
	return &DocPacker{src: src, B: B, T: T}
}

// NewDocPackerPadded returns a packer that puts one document per row, truncated to T+1 tokens and padded
// with PAD (LossMask 0), emitting batches of B rows of T tokens.
func NewDocPackerPadded(src DocSource, B, T int) *DocPacker {
	return &DocPacker{src: src, B: B, T: T, padded: true}
}

// NewDocPackerWhole returns a packer that fills each row with whole documents, padding its tail with PAD
// (LossMask 0), emitting batches of B rows of T tokens.
func NewDocPackerWhole(src DocSource, B, T int) *DocPacker {
	return &DocPacker{src: src, B: B, T: T, whole: true}
}

// NewDocPackerMode returns the packer of mode DocPackPacked, DocPackWhole or DocPackPadded ("" = packed).
func NewDocPackerMode(mode string, src DocSource, B, T int) (*DocPacker, error) {
	switch mode {
	case "", DocPackPacked:
		return NewDocPacker(src, B, T), nil
	case DocPackWhole:
		return NewDocPackerWhole(src, B, T), nil
	case DocPackPadded:
		return NewDocPackerPadded(src, B, T), nil
	}
	return nil, fmt.Errorf("doc packer: unknown mode %q (want %s, %s or %s)", mode, DocPackPacked, DocPackWhole, DocPackPadded)
}

// Mode returns DocPackPacked, DocPackWhole or DocPackPadded.
func (p *DocPacker) Mode() string {
	switch {
	case p.padded:
		return DocPackPadded
	case p.whole:
		return DocPackWhole
	}
	return DocPackPacked
}

// Truncated returns the number of documents the padded packer truncated and the tokens it dropped, since
// the start of the run (the counters travel in the state).
func (p *DocPacker) Truncated() (docs, tokens int64) { return p.truncated, p.truncatedTokens }

// Next fills dst with the next batch, reusing dst's buffers. On error dst's contents are unspecified and the
// packer should be restored from a saved state before further use.
func (p *DocPacker) Next(dst *Batch) error {
	if p.B < 1 || p.T < 1 {
		return fmt.Errorf("doc packer: batch shape B=%d T=%d, want both ≥ 1", p.B, p.T)
	}
	if p.src == nil {
		return fmt.Errorf("doc packer: no document source")
	}
	dst.Reset(p.B, p.T)
	if p.padded {
		return p.nextPadded(dst)
	}
	if p.whole {
		return p.nextWhole(dst)
	}
	B, T := p.B, p.T
	tokens := 0
	for b := range B {
		for len(p.ids)-p.start < T+1 {
			if err := p.appendDocument(); err != nil {
				return err
			}
		}
		row := p.ids[p.start : p.start+T+1]
		copy(dst.Inputs[b*T:(b+1)*T], row[:T])
		copy(dst.Targets[b*T:(b+1)*T], row[1:])
		lm := dst.LossMask[b*T : (b+1)*T]
		for i, m := range p.mask[p.start+1 : p.start+T+1] {
			lm[i] = float32(m)
			tokens += int(m)
		}
		dst.Lengths[b] = T
		p.start += T
	}
	dst.Tokens = tokens
	return nil
}

func (p *DocPacker) nextPadded(dst *Batch) error {
	B, T := p.B, p.T
	tokens := 0
	for b := range B {
		doc, err := p.nextDoc()
		if err != nil {
			return err
		}
		n := len(doc.IDs)
		if n < 2 {
			return fmt.Errorf("doc packer: document %d has %d token, nothing to predict (a padded row needs at least 2)",
				p.src.State().Docs, n)
		}
		if n > T+1 {
			p.truncated++
			p.truncatedTokens += int64(n - (T + 1))
			n = T + 1
		}
		in, tg, lm := dst.Inputs[b*T:(b+1)*T], dst.Targets[b*T:(b+1)*T], dst.LossMask[b*T:(b+1)*T]
		copy(in, doc.IDs[:n-1])
		copy(tg, doc.IDs[1:n])
		for i, m := range doc.Mask[1:n] {
			lm[i] = float32(m)
			tokens += int(m)
		}
		for i := n - 1; i < T; i++ {
			in[i], tg[i], lm[i] = PAD, PAD, 0
		}
		dst.Lengths[b] = n - 1
	}
	dst.Tokens = tokens
	return nil
}

// nextWhole fills each row with whole documents. p.ids/p.mask hold at most one document drawn but not yet
// placed (it did not fit in the previous row).
func (p *DocPacker) nextWhole(dst *Batch) error {
	B, T := p.B, p.T
	tokens := 0
	dst.DocStart = resize(dst.DocStart, B*T)
	for b := range B {
		in, tg, lm := dst.Inputs[b*T:(b+1)*T], dst.Targets[b*T:(b+1)*T], dst.LossMask[b*T:(b+1)*T]
		ds := dst.DocStart[b*T : (b+1)*T]
		n := 0 // real tokens placed in this row's T+1 window
		place := func(ids []int32, mask []uint8) {
			for i, id := range ids {
				pos := n + i // window position of this token
				if pos < T {
					in[pos] = id
					ds[pos] = int32(n)
				}
				if pos > 0 {
					tg[pos-1] = id
					lm[pos-1] = float32(mask[i])
					tokens += int(mask[i])
				}
			}
			n += len(ids)
		}
		for {
			if len(p.ids) == 0 {
				doc, err := p.nextDoc()
				if err != nil {
					return err
				}
				p.ids = append(p.ids[:0], doc.IDs...)
				p.mask = append(p.mask[:0], doc.Mask...)
			}
			d := len(p.ids)
			if n+d > T+1 {
				if n > 0 {
					break // opens the next row
				}
				p.truncated++
				p.truncatedTokens += int64(d - (T + 1))
				d = T + 1
			}
			place(p.ids[:d], p.mask[:d])
			p.ids, p.mask = p.ids[:0], p.mask[:0]
			if n == T+1 {
				break
			}
		}
		if n < 2 {
			return fmt.Errorf("doc packer: document %d has %d token, nothing to predict (a row needs at least 2)",
				p.src.State().Docs, n)
		}
		for i := n - 1; i < T; i++ {
			in[i], tg[i], lm[i], ds[i] = PAD, PAD, 0, 0
		}
		dst.Lengths[b] = n - 1
	}
	dst.Tokens = tokens
	return nil
}

// nextDoc draws one document and checks it: as many mask entries as ids, at least one token, no negative
// id, mask values 0 or 1.
func (p *DocPacker) nextDoc() (Doc, error) {
	doc, err := p.src.Next()
	if err != nil {
		return Doc{}, fmt.Errorf("doc packer: %w", err)
	}
	if err := checkDoc(doc.IDs, doc.Mask); err != nil {
		return Doc{}, fmt.Errorf("doc packer: document %d: %w", p.src.State().Docs, err)
	}
	return doc, nil
}

func checkDoc(ids []int32, mask []uint8) error {
	if len(ids) != len(mask) {
		return fmt.Errorf("%d ids but %d mask entries", len(ids), len(mask))
	}
	if len(ids) == 0 {
		return fmt.Errorf("empty document")
	}
	for i, id := range ids {
		if id < 0 {
			return fmt.Errorf("token %d has negative id %d", i, id)
		}
		if mask[i] > 1 {
			return fmt.Errorf("token %d has mask %d, want 0 or 1", i, mask[i])
		}
	}
	return nil
}

// appendDocument draws one document and appends its ids and mask to the stream, first dropping the tokens
// already emitted so the buffers do not grow.
func (p *DocPacker) appendDocument() error {
	if p.start > 0 {
		n := copy(p.ids, p.ids[p.start:])
		copy(p.mask, p.mask[p.start:])
		p.ids, p.mask = p.ids[:n], p.mask[:n]
		p.start = 0
	}
	doc, err := p.nextDoc()
	if err != nil {
		return err
	}
	p.ids = append(p.ids, doc.IDs...)
	p.mask = append(p.mask, doc.Mask...)
	return nil
}

// State returns the packer's cursor (a copy: later calls to Next do not change it).
func (p *DocPacker) State() DocPackerState {
	s := DocPackerState{Mode: p.Mode(), Corpus: p.src.State(), Truncated: p.truncated, TruncatedTokens: p.truncatedTokens}
	if !p.padded {
		s.Leftover = append(make([]int32, 0, len(p.ids)-p.start), p.ids[p.start:]...)
		s.LeftoverMask = append(make([]uint8, 0, len(p.mask)-p.start), p.mask[p.start:]...)
	}
	return s
}

// Restore moves the packer (and its source) to s, which must come from a packer of the same mode.
func (p *DocPacker) Restore(s DocPackerState) error {
	switch {
	case s.Mode != p.Mode():
		return fmt.Errorf("doc packer: restore: state is for a %q packer, this one is %s", s.Mode, p.Mode())
	case len(s.Leftover) != len(s.LeftoverMask):
		return fmt.Errorf("doc packer: restore: %d leftover tokens but %d mask entries", len(s.Leftover), len(s.LeftoverMask))
	case p.padded && len(s.Leftover) > 0:
		return fmt.Errorf("doc packer: restore: a padded packer has no leftover, the state has %d tokens", len(s.Leftover))
	case s.Truncated < 0 || s.TruncatedTokens < 0 || s.TruncatedTokens < s.Truncated:
		return fmt.Errorf("doc packer: restore: invalid truncation counters (%d documents, %d tokens)", s.Truncated, s.TruncatedTokens)
	}
	if len(s.Leftover) > 0 {
		if err := checkDoc(s.Leftover, s.LeftoverMask); err != nil {
			return fmt.Errorf("doc packer: restore: leftover: %w", err)
		}
	}
	if p.src == nil {
		return fmt.Errorf("doc packer: restore: no document source")
	}
	if err := p.src.Restore(s.Corpus); err != nil {
		return fmt.Errorf("doc packer: restore: %w", err)
	}
	p.ids = append(p.ids[:0], s.Leftover...)
	p.mask = append(p.mask[:0], s.LeftoverMask...)
	p.start = 0
	p.truncated, p.truncatedTokens = s.Truncated, s.TruncatedTokens
	return nil
}

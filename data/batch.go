// batch.go implements the pre-training packer: it turns a Corpus into fixed-shape micro-batches.
//
// Packing with carry-over (nanoGPT-style): each document becomes BOS + its bytes + EOS, the documents are
// concatenated into one token stream, and row r of the stream is the window of T+1 tokens starting at r·T:
// inputs are its first T tokens, targets its last T (the inputs shifted by one). Consecutive windows share
// one token, so every token of the stream after the very first is a target exactly once, and a document
// that does not fit continues in the next row (of the same batch or the next one). Rows therefore never
// hold padding: LossMask is all 1, Lengths[b] = T and Tokens = B·T. Attention is not masked at document
// boundaries; the model learns to reset at BOS (as GPT-2/nanoGPT pre-training does).
//
// The tokens drawn from the corpus but not yet emitted are the packer's leftover buffer; PackerState holds
// it with the corpus cursor, so a restored packer continues the exact token stream of an uninterrupted run.
// Next reuses the Batch's buffers and the packer's own buffer: it allocates nothing in steady state beyond
// what the corpus allocates to produce a document.

package data

import (
	"fmt"
)

// Batch is one micro-batch of B rows of T tokens. Inputs[b*T+t] is the token at position t; Targets the next
// token; LossMask 1 where the target is a real token to predict, 0 on padding; Lengths[b] the number of valid
// (non-pad) input positions of row b (the key-padding mask of attention).
type Batch struct {
	B, T     int
	Inputs   []int32
	Targets  []int32
	LossMask []float32
	Lengths  []int
	Tokens   int // sum of LossMask
	// DocStart, when non-nil, is [B·T]: the row position where the document of each input position begins.
	// Attention then never crosses a document boundary (a packed row holding several documents trains as
	// if each were alone). Packers that do not track documents leave it nil.
	DocStart []int32
}

// Reset shapes b for B rows of T tokens, reusing its buffers when they are large enough. The contents are
// left as they were, except DocStart, which is emptied (a packer that tracks documents refills it).
func (b *Batch) Reset(B, T int) {
	n := B * T
	b.B, b.T = B, T
	b.Inputs = resize(b.Inputs, n)
	b.Targets = resize(b.Targets, n)
	b.LossMask = resize(b.LossMask, n)
	b.Lengths = resize(b.Lengths, B)
	b.DocStart = b.DocStart[:0]
}

func resize[E any](s []E, n int) []E {
	if cap(s) < n {
		return make([]E, n)
	}
	return s[:n]
}

// Packer packs the documents of a corpus into batches (see the file comment).
type Packer struct {
	c    Corpus
	tok  *Tokenizer
	B, T int

	buf   []int32 // token stream; buf[start:] is not emitted yet
	start int
}

// PackerState is the packer's cursor: the corpus cursor after the last document drawn, and the tokens of
// the stream drawn but not yet consumed (the first of them is the last target of the previous row).
type PackerState struct {
	Corpus   CorpusState `json:"corpus"`
	Leftover []int32     `json:"leftover"`
}

// NewPacker returns a packer drawing from c and emitting batches of B rows of T tokens. A nil tok is the
// byte tokenizer.
func NewPacker(c Corpus, tok *Tokenizer, B, T int) *Packer {
	if tok == nil {
		tok = &Tokenizer{}
	}
	return &Packer{c: c, tok: tok, B: B, T: T}
}

// Next fills dst with the next batch, reusing dst's buffers. On error dst's contents are unspecified and the
// packer should be restored from a saved state before further use.
func (p *Packer) Next(dst *Batch) error {
	if p.B < 1 || p.T < 1 {
		return fmt.Errorf("packer: batch shape B=%d T=%d, want both ≥ 1", p.B, p.T)
	}
	if p.c == nil {
		return fmt.Errorf("packer: no corpus")
	}
	B, T := p.B, p.T
	dst.Reset(B, T)
	for b := range B {
		for len(p.buf)-p.start < T+1 {
			if err := p.appendDocument(); err != nil {
				return err
			}
		}
		row := p.buf[p.start : p.start+T+1]
		copy(dst.Inputs[b*T:(b+1)*T], row[:T])
		copy(dst.Targets[b*T:(b+1)*T], row[1:])
		mask := dst.LossMask[b*T : (b+1)*T]
		for i := range mask {
			mask[i] = 1
		}
		dst.Lengths[b] = T
		p.start += T
	}
	dst.Tokens = B * T
	return nil
}

// appendDocument draws one document and appends BOS, its bytes and EOS to the stream, first dropping the
// tokens already emitted so the buffer does not grow.
func (p *Packer) appendDocument() error {
	if p.start > 0 {
		n := copy(p.buf, p.buf[p.start:])
		p.buf = p.buf[:n]
		p.start = 0
	}
	doc, err := p.c.Next()
	if err != nil {
		return fmt.Errorf("packer: %w", err)
	}
	p.buf = p.tok.AppendSpecial(p.buf, BOS)
	p.buf = p.tok.AppendText(p.buf, doc)
	p.buf = p.tok.AppendSpecial(p.buf, EOS)
	return nil
}

// State returns the packer's cursor (a copy: later calls to Next do not change it).
func (p *Packer) State() PackerState {
	left := make([]int32, len(p.buf)-p.start)
	copy(left, p.buf[p.start:])
	return PackerState{Corpus: p.c.State(), Leftover: left}
}

// Restore moves the packer (and its corpus) to s.
func (p *Packer) Restore(s PackerState) error {
	for i, id := range s.Leftover {
		if (id < 0 || id > 255) && id != BOS && id != EOS {
			return fmt.Errorf("packer: restore: leftover token %d is %d, not a byte, BOS or EOS", i, id)
		}
	}
	if err := p.c.Restore(s.Corpus); err != nil {
		return fmt.Errorf("packer: restore: %w", err)
	}
	p.buf = append(p.buf[:0], s.Leftover...)
	p.start = 0
	return nil
}

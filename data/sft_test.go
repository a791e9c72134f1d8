// sft_test.go checks the SFT document packer on hand-computed cases: packed mode (documents concatenated into
// overlapping T+1 windows, LossMask = the mask of the target token, Tokens = Σ LossMask), padded mode (one
// document per row, truncation counted, PAD with mask 0, Lengths = real input positions), the stream invariant
// of packed mode, exact resume of both modes through a JSON round trip of the state, rejection of bad
// documents and bad states, and no allocation in Next in steady state.

package data

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// sliceDocs cycles through fixed documents without allocating; its cursor is the number of documents drawn.
type sliceDocs struct {
	docs []Doc
	n    int64
}

func (s *sliceDocs) Next() (Doc, error) {
	d := s.docs[s.n%int64(len(s.docs))]
	s.n++
	return d, nil
}
func (s *sliceDocs) State() CorpusState { return CorpusState{Source: "slice_docs", Docs: s.n} }
func (s *sliceDocs) Restore(c CorpusState) error {
	if c.Source != "slice_docs" {
		return fmt.Errorf("slice docs: state source %q", c.Source)
	}
	s.n = c.Docs
	return nil
}
func (s *sliceDocs) Close() error { return nil }

// goldenDocs: A = 10 11 12 13 (mask 0 0 1 1), B = 20 21 22 (0 1 1), C = 30 31 (0 1).
func goldenDocs() []Doc {
	return []Doc{
		{IDs: []int32{10, 11, 12, 13}, Mask: []uint8{0, 0, 1, 1}},
		{IDs: []int32{20, 21, 22}, Mask: []uint8{0, 1, 1}},
		{IDs: []int32{30, 31}, Mask: []uint8{0, 1}},
	}
}

type wantBatch struct {
	in, tg  []int32
	mask    []float32
	lengths []int
	tokens  int
}

func checkBatch(t *testing.T, i int, b *Batch, w wantBatch) {
	t.Helper()
	if !slices.Equal(b.Inputs, w.in) || !slices.Equal(b.Targets, w.tg) || !slices.Equal(b.LossMask, w.mask) ||
		!slices.Equal(b.Lengths, w.lengths) || b.Tokens != w.tokens {
		t.Errorf("batch %d:\n got in %v tg %v mask %v len %v tokens %d\nwant in %v tg %v mask %v len %v tokens %d",
			i, b.Inputs, b.Targets, b.LossMask, b.Lengths, b.Tokens, w.in, w.tg, w.mask, w.lengths, w.tokens)
	}
}

func TestDocPackerPackedGolden(t *testing.T) {
	// Stream (index: id/mask): 0:10/0 1:11/0 2:12/1 3:13/1 4:20/0 5:21/1 6:22/1 7:30/0 8:31/1 9:10/0 10:11/0
	// 11:12/1 12:13/1 13:20/0 14:21/1 15:22/1 16:30/0 17:31/1 18:10/0. With T=3, row r is stream[3r:3r+4] and
	// its loss mask is the mask of stream[3r+1:3r+4] (the targets).
	p := NewDocPacker(&sliceDocs{docs: goldenDocs()}, 2, 3)
	want := []wantBatch{
		{in: []int32{10, 11, 12, 13, 20, 21}, tg: []int32{11, 12, 13, 20, 21, 22},
			mask: []float32{0, 1, 1, 0, 1, 1}, lengths: []int{3, 3}, tokens: 4},
		{in: []int32{22, 30, 31, 10, 11, 12}, tg: []int32{30, 31, 10, 11, 12, 13},
			mask: []float32{0, 1, 0, 0, 1, 1}, lengths: []int{3, 3}, tokens: 3},
		{in: []int32{13, 20, 21, 22, 30, 31}, tg: []int32{20, 21, 22, 30, 31, 10},
			mask: []float32{0, 1, 1, 0, 1, 0}, lengths: []int{3, 3}, tokens: 3},
	}
	var b Batch
	for i, w := range want {
		if err := p.Next(&b); err != nil {
			t.Fatal(err)
		}
		if b.B != 2 || b.T != 3 {
			t.Fatalf("batch %d: shape %dx%d", i, b.B, b.T)
		}
		checkBatch(t, i, &b, w)
	}
	// After 3 batches (18 tokens consumed) the leftover is stream[18:] = the A drawn last: 10 11 12 13.
	s := p.State()
	if s.Mode != DocPackPacked || !slices.Equal(s.Leftover, []int32{10, 11, 12, 13}) ||
		!slices.Equal(s.LeftoverMask, []uint8{0, 0, 1, 1}) || s.Corpus.Docs != 7 {
		t.Errorf("state %+v", s)
	}
}

func TestDocPackerPaddedGolden(t *testing.T) {
	docs := []Doc{
		{IDs: []int32{10, 11, 12, 13}, Mask: []uint8{0, 0, 1, 1}},               // exactly T+1
		{IDs: []int32{20, 21, 22}, Mask: []uint8{0, 1, 1}},                      // one pad
		{IDs: []int32{30, 31}, Mask: []uint8{0, 1}},                             // two pads
		{IDs: []int32{40, 41, 42, 43, 44, 45}, Mask: []uint8{0, 0, 1, 1, 1, 1}}, // truncated: 2 tokens dropped
	}
	p := NewDocPackerPadded(&sliceDocs{docs: docs}, 2, 3)
	want := []wantBatch{
		{in: []int32{10, 11, 12, 20, 21, PAD}, tg: []int32{11, 12, 13, 21, 22, PAD},
			mask: []float32{0, 1, 1, 1, 1, 0}, lengths: []int{3, 2}, tokens: 4},
		{in: []int32{30, PAD, PAD, 40, 41, 42}, tg: []int32{31, PAD, PAD, 41, 42, 43},
			mask: []float32{1, 0, 0, 0, 1, 1}, lengths: []int{1, 3}, tokens: 3},
	}
	var b Batch
	for i, w := range want {
		if err := p.Next(&b); err != nil {
			t.Fatal(err)
		}
		checkBatch(t, i, &b, w)
	}
	if d, n := p.Truncated(); d != 1 || n != 2 {
		t.Errorf("truncated %d documents, %d tokens; want 1, 2", d, n)
	}
	s := p.State()
	if s.Mode != DocPackPadded || len(s.Leftover) != 0 || s.Corpus.Docs != 4 || s.Truncated != 1 || s.TruncatedTokens != 2 {
		t.Errorf("state %+v", s)
	}
}

func TestDocPackerWholeGolden(t *testing.T) {
	docs := []Doc{
		{IDs: []int32{10, 11, 12, 13}, Mask: []uint8{0, 0, 1, 1}},               // A: B does not fit after it
		{IDs: []int32{20, 21, 22}, Mask: []uint8{0, 1, 1}},                      // B
		{IDs: []int32{30, 31}, Mask: []uint8{0, 1}},                             // C: B+C fill T+1 = 5 exactly
		{IDs: []int32{40, 41, 42, 43, 44, 45}, Mask: []uint8{0, 0, 1, 1, 1, 1}}, // D: longer than a row, 1 token dropped
	}
	p := NewDocPackerWhole(&sliceDocs{docs: docs}, 2, 4)
	want := []wantBatch{
		// row A: 10 11 12 13 + pad; row B+C: 20 21 22 30 31 (C's first token is a target with mask 0).
		{in: []int32{10, 11, 12, PAD, 20, 21, 22, 30}, tg: []int32{11, 12, 13, PAD, 21, 22, 30, 31},
			mask: []float32{0, 1, 1, 0, 1, 1, 0, 1}, lengths: []int{3, 4}, tokens: 5},
		// row D truncated to 40..44; then A again (B is drawn, does not fit, and waits).
		{in: []int32{40, 41, 42, 43, 10, 11, 12, PAD}, tg: []int32{41, 42, 43, 44, 11, 12, 13, PAD},
			mask: []float32{0, 1, 1, 1, 0, 1, 1, 0}, lengths: []int{4, 3}, tokens: 5},
	}
	wantStarts := [][]int32{{0, 0, 0, 0, 0, 0, 0, 3}, {0, 0, 0, 0, 0, 0, 0, 0}} // C starts at position 3 of row 1
	var b Batch
	for i, w := range want {
		if err := p.Next(&b); err != nil {
			t.Fatal(err)
		}
		checkBatch(t, i, &b, w)
		if !slices.Equal(b.DocStart, wantStarts[i]) {
			t.Errorf("batch %d: document starts %v, want %v", i, b.DocStart, wantStarts[i])
		}
	}
	if d, n := p.Truncated(); d != 1 || n != 1 {
		t.Errorf("truncated %d documents, %d tokens; want 1, 1", d, n)
	}
	s := p.State()
	if s.Mode != DocPackWhole || !slices.Equal(s.Leftover, []int32{20, 21, 22}) || s.Corpus.Docs != 6 {
		t.Errorf("state %+v", s)
	}
	if _, err := NewDocPackerMode("stream", &sliceDocs{docs: docs}, 2, 4); err == nil || !strings.Contains(err.Error(), `"stream"`) {
		t.Errorf("unknown mode: err %v", err)
	}
}

// TestDocPackerStreamInvariant checks, over many batches of documents of varied lengths, that packed rows
// are consecutive windows of the document stream and that each LossMask entry is the mask of its target.
func TestDocPackerStreamInvariant(t *testing.T) {
	var docs []Doc
	var stream []int32
	var smask []uint8
	for d := range 7 {
		n := 1 + 3*d // 1, 4, 7, ... 19 tokens
		doc := Doc{IDs: make([]int32, n), Mask: make([]uint8, n)}
		for i := range n {
			doc.IDs[i] = int32(100*d + i)
			doc.Mask[i] = uint8((i + d) % 2)
		}
		docs = append(docs, doc)
	}
	for len(stream) < 2000 {
		for _, d := range docs {
			stream = append(stream, d.IDs...)
			smask = append(smask, d.Mask...)
		}
	}
	const B, T = 3, 5
	p := NewDocPacker(&sliceDocs{docs: docs}, B, T)
	var b Batch
	for k := range 50 {
		if err := p.Next(&b); err != nil {
			t.Fatal(err)
		}
		tokens := 0
		for r := range B {
			at := (k*B + r) * T
			for i := range T {
				j := r*T + i
				if b.Inputs[j] != stream[at+i] || b.Targets[j] != stream[at+i+1] || b.LossMask[j] != float32(smask[at+i+1]) {
					t.Fatalf("batch %d row %d pos %d: in %d tg %d mask %v, want %d %d %d", k, r, i,
						b.Inputs[j], b.Targets[j], b.LossMask[j], stream[at+i], stream[at+i+1], smask[at+i+1])
				}
				tokens += int(smask[at+i+1])
			}
		}
		if b.Tokens != tokens {
			t.Fatalf("batch %d: Tokens %d, want %d", k, b.Tokens, tokens)
		}
	}
}

func TestDocPackerResume(t *testing.T) {
	var docs []Doc
	for d := range 5 {
		n := 2 + 5*d
		doc := Doc{IDs: make([]int32, n), Mask: make([]uint8, n)}
		for i := range n {
			doc.IDs[i] = int32(50*d + i)
			doc.Mask[i] = uint8(i % 3 % 2)
		}
		docs = append(docs, doc)
	}
	for _, mode := range []string{DocPackPacked, DocPackPadded, DocPackWhole} {
		t.Run(mode, func(t *testing.T) {
			mk := func() *DocPacker {
				p, err := NewDocPackerMode(mode, &sliceDocs{docs: docs}, 2, 7)
				if err != nil {
					t.Fatal(err)
				}
				return p
			}
			const N = 12
			refP := mk()
			ref := runDocPacker(t, refP, N)
			if d, _ := refP.Truncated(); mode != DocPackPacked && d == 0 {
				t.Fatalf("the %s case truncates no document", mode)
			}
			for cut := range N {
				p := mk()
				runDocPacker(t, p, cut)
				js, err := json.Marshal(p.State())
				if err != nil {
					t.Fatal(err)
				}
				var s DocPackerState
				if err := json.Unmarshal(js, &s); err != nil {
					t.Fatal(err)
				}
				q := mk()
				if err := q.Restore(s); err != nil {
					t.Fatalf("cut %d: %v", cut, err)
				}
				got := runDocPacker(t, q, N-cut)
				for i := range got {
					if !batchEqual(&got[i], &ref[cut+i]) {
						t.Fatalf("cut %d: batch %d differs after restore", cut, cut+i)
					}
				}
				rd, rn := refP.Truncated()
				qd, qn := q.Truncated()
				if qd != rd || qn != rn {
					t.Errorf("cut %d: truncation counters %d/%d after the run, want %d/%d", cut, qd, qn, rd, rn)
				}
			}
		})
	}
}

func runDocPacker(t *testing.T, p *DocPacker, n int) []Batch {
	t.Helper()
	out := make([]Batch, n)
	for i := range out {
		if err := p.Next(&out[i]); err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
	}
	return out
}

func batchEqual(a, b *Batch) bool {
	return a.B == b.B && a.T == b.T && a.Tokens == b.Tokens && slices.Equal(a.Inputs, b.Inputs) &&
		slices.Equal(a.Targets, b.Targets) && slices.Equal(a.LossMask, b.LossMask) && slices.Equal(a.Lengths, b.Lengths)
}

func TestDocPackerErrors(t *testing.T) {
	tests := []struct {
		name   string
		padded bool
		doc    Doc
		want   string
	}{
		{"mask length", false, Doc{IDs: []int32{1, 2}, Mask: []uint8{1}}, "2 ids but 1 mask entries"},
		{"empty", false, Doc{}, "empty document"},
		{"negative id", false, Doc{IDs: []int32{1, -3}, Mask: []uint8{0, 1}}, "negative id -3"},
		{"mask value", true, Doc{IDs: []int32{1, 2}, Mask: []uint8{0, 2}}, "mask 2"},
		{"single token padded", true, Doc{IDs: []int32{BOS}, Mask: []uint8{0}}, "nothing to predict"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := &sliceDocs{docs: []Doc{tc.doc}}
			p := NewDocPacker(src, 1, 4)
			if tc.padded {
				p = NewDocPackerPadded(src, 1, 4)
			}
			var b Batch
			err := p.Next(&b)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "document 1") {
				t.Errorf("err = %v, want one naming document 1 with %q", err, tc.want)
			}
		})
	}
	if err := NewDocPacker(&sliceDocs{docs: goldenDocs()}, 0, 4).Next(&Batch{}); err == nil {
		t.Error("B=0: no error")
	}
}

func TestDocPackerRestoreErrors(t *testing.T) {
	good := DocPackerState{Mode: DocPackPacked, Corpus: CorpusState{Source: "slice_docs"}}
	tests := []struct {
		name   string
		padded bool
		edit   func(*DocPackerState)
		want   string
	}{
		{"mode", true, func(s *DocPackerState) {}, `state is for a "packed" packer`},
		{"mask length", false, func(s *DocPackerState) { s.Leftover = []int32{1, 2} }, "2 leftover tokens but 0 mask entries"},
		{"mask value", false, func(s *DocPackerState) { s.Leftover, s.LeftoverMask = []int32{1}, []uint8{7} }, "mask 7"},
		{"padded leftover", true, func(s *DocPackerState) {
			s.Mode, s.Leftover, s.LeftoverMask = DocPackPadded, []int32{1}, []uint8{0}
		}, "no leftover"},
		{"counters", false, func(s *DocPackerState) { s.Truncated = 3 }, "truncation counters"},
		{"corpus", false, func(s *DocPackerState) { s.Corpus.Source = "jsonl" }, `state source "jsonl"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := good
			tc.edit(&s)
			p := NewDocPacker(&sliceDocs{docs: goldenDocs()}, 1, 3)
			if tc.padded {
				p = NewDocPackerPadded(&sliceDocs{docs: goldenDocs()}, 1, 3)
			}
			if err := p.Restore(s); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestDocPackerNoAllocs(t *testing.T) {
	for _, padded := range []bool{false, true} {
		p := NewDocPacker(&sliceDocs{docs: goldenDocs()}, 4, 16)
		if padded {
			p = NewDocPackerPadded(&sliceDocs{docs: goldenDocs()}, 4, 16)
		}
		var b Batch
		for range 5 { // grow the buffers
			if err := p.Next(&b); err != nil {
				t.Fatal(err)
			}
		}
		allocs := testing.AllocsPerRun(200, func() {
			if err := p.Next(&b); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("padded=%v: Next allocates %v times per call in steady state", padded, allocs)
		}
	}
}

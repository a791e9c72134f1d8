// batch_test.go checks the packer: a hand-computed packing of short documents, the stream invariant (rows are
// consecutive T+1 windows of BOS+bytes+EOS documents, so targets are inputs shifted by one and documents carry
// over between rows and batches), no special id from plain text, mask/length consistency, exact resume through
// a JSON round trip of the state for synthetic, JSONL and Parquet corpora, and no allocation in steady state.

package data

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// sliceCorpus cycles through fixed documents without allocating; its cursor is the number of documents drawn.
type sliceCorpus struct {
	docs []string
	n    int64
}

func (c *sliceCorpus) Next() (string, error) {
	d := c.docs[c.n%int64(len(c.docs))]
	c.n++
	return d, nil
}
func (c *sliceCorpus) State() CorpusState { return CorpusState{Source: "slice", Docs: c.n} }
func (c *sliceCorpus) Restore(s CorpusState) error {
	if s.Source != "slice" {
		return fmt.Errorf("slice corpus: state source %q", s.Source)
	}
	c.n = s.Docs
	return nil
}
func (c *sliceCorpus) Close() error { return nil }

func TestPackerGolden(t *testing.T) {
	// Stream: BOS a b EOS BOS c EOS BOS a b EOS ... (documents "ab", "c").
	// Rows of T=3 are the windows stream[3r : 3r+4].
	const bos, eos = BOS, EOS
	p := NewPacker(&sliceCorpus{docs: []string{"ab", "c"}}, nil, 2, 3)
	var b Batch
	wantIn := [][]int32{
		{bos, 'a', 'b', eos, bos, 'c'},
		{eos, bos, 'a', 'b', eos, bos},
	}
	wantTg := [][]int32{
		{'a', 'b', eos, bos, 'c', eos},
		{bos, 'a', 'b', eos, bos, 'c'},
	}
	for i := range wantIn {
		if err := p.Next(&b); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(b.Inputs, wantIn[i]) || !slices.Equal(b.Targets, wantTg[i]) {
			t.Errorf("batch %d: inputs %v targets %v, want %v %v", i, b.Inputs, b.Targets, wantIn[i], wantTg[i])
		}
		if b.B != 2 || b.T != 3 || b.Tokens != 6 || !slices.Equal(b.Lengths, []int{3, 3}) ||
			!slices.Equal(b.LossMask, []float32{1, 1, 1, 1, 1, 1}) {
			t.Errorf("batch %d: shape/mask %+v", i, b)
		}
	}
	st := p.State()
	// 4 documents drawn (12 stream tokens); rows consumed 12 tokens, the window start is at 12, so the
	// leftover is the stream from position 12: the last target "c" of the last row, then EOS.
	if st.Corpus.Docs != 4 || !slices.Equal(st.Leftover, []int32{'c', eos}) {
		t.Errorf("state %+v", st)
	}
}

func TestPackerStreamInvariant(t *testing.T) {
	docs := append(slices.Clone(smallTexts), strings.Repeat("a long document ", 20))
	tok := &Tokenizer{}
	var stream []int32
	for len(stream) < 5000 {
		for _, d := range docs {
			stream = append(stream, BOS)
			stream = append(stream, tok.Encode(d)...)
			stream = append(stream, EOS)
		}
	}
	for _, shape := range [][2]int{{1, 1}, {3, 7}, {4, 64}, {2, 400}} {
		B, T := shape[0], shape[1]
		t.Run(fmt.Sprintf("B%dT%d", B, T), func(t *testing.T) {
			p := NewPacker(&sliceCorpus{docs: docs}, tok, B, T)
			var b Batch
			row := 0
			for (row+B)*T+1 < len(stream) {
				if err := p.Next(&b); err != nil {
					t.Fatal(err)
				}
				sum := float32(0)
				for _, m := range b.LossMask {
					sum += m
				}
				if int(sum) != b.Tokens || b.Tokens != B*T || len(b.Inputs) != B*T || len(b.Targets) != B*T || len(b.Lengths) != B {
					t.Fatalf("row %d: inconsistent batch: tokens %d, mask sum %v, lengths %v", row, b.Tokens, sum, b.Lengths)
				}
				for r := range B {
					if b.Lengths[r] != T {
						t.Fatalf("row %d: length %d, want %d (no padding when packing)", row+r, b.Lengths[r], T)
					}
					w := stream[(row+r)*T : (row+r)*T+T+1]
					if !slices.Equal(b.Inputs[r*T:(r+1)*T], w[:T]) || !slices.Equal(b.Targets[r*T:(r+1)*T], w[1:]) {
						t.Fatalf("row %d differs from the stream window", row+r)
					}
					for i := range T {
						if IsSpecial(b.Inputs[r*T+i]) && b.Inputs[r*T+i] != BOS && b.Inputs[r*T+i] != EOS {
							t.Fatalf("row %d: special id %d from plain text", row+r, b.Inputs[r*T+i])
						}
					}
				}
				row += B
			}
		})
	}
}

func TestPackerNoSpecialsFromText(t *testing.T) {
	// Documents that spell every special literal must give exactly one BOS and one EOS each, and no other special.
	docs := make([]string, len(SpecialTokens))
	for i, s := range SpecialTokens {
		docs[i] = "x" + s + "y"
	}
	p := NewPacker(&sliceCorpus{docs: docs}, nil, 4, 16)
	var b Batch
	counts := map[int32]int{}
	for range 20 {
		if err := p.Next(&b); err != nil {
			t.Fatal(err)
		}
		for _, id := range b.Inputs {
			if IsSpecial(id) {
				counts[id]++
			}
		}
	}
	for id := range counts {
		if id != BOS && id != EOS {
			t.Errorf("special id %d appeared %d times", id, counts[id])
		}
	}
	if d := counts[BOS] - counts[EOS]; d < -1 || d > 1 || counts[BOS] < 20 {
		t.Errorf("BOS %d, EOS %d", counts[BOS], counts[EOS])
	}
}

func TestPackerResume(t *testing.T) {
	pq := filepath.Join(t.TempDir(), "small.parquet")
	if err := writeTextParquet(pq, "text", smallTexts, 5); err != nil {
		t.Fatal(err)
	}
	corpora := map[string]func(t *testing.T) Corpus{
		"synthetic": func(t *testing.T) Corpus {
			c, err := OpenCorpus(CorpusConfig{Source: "synthetic", Generator: "arithmetic", MaxDigits: 3, HeldOut: 0.1, Seed: 42}, SplitTrain)
			if err != nil {
				t.Fatal(err)
			}
			return c
		},
		"jsonl": func(t *testing.T) Corpus {
			c, err := OpenCorpus(CorpusConfig{Source: "jsonl", Path: "testdata/corpus/small.jsonl", HeldOut: 0.3}, SplitTrain)
			if err != nil {
				t.Fatal(err)
			}
			return c
		},
		"parquet": func(t *testing.T) Corpus {
			c, err := OpenCorpus(CorpusConfig{Source: "parquet", Path: pq, HeldOut: 0.3}, SplitHeldOut)
			if err != nil {
				t.Fatal(err)
			}
			return c
		},
	}
	const B, T, N = 3, 37, 12
	for name, open := range corpora {
		t.Run(name, func(t *testing.T) {
			run := func(p *Packer, n int) []Batch {
				out := make([]Batch, n)
				for i := range out {
					if err := p.Next(&out[i]); err != nil {
						t.Fatal(err)
					}
				}
				return out
			}
			c := open(t)
			defer c.Close()
			want := run(NewPacker(c, nil, B, T), N)
			for _, cut := range []int{0, 1, 5, N - 1} {
				c1 := open(t)
				p1 := NewPacker(c1, nil, B, T)
				run(p1, cut)
				js, err := json.Marshal(p1.State())
				c1.Close()
				if err != nil {
					t.Fatal(err)
				}
				var st PackerState
				if err := json.Unmarshal(js, &st); err != nil {
					t.Fatal(err)
				}
				c2 := open(t)
				p2 := NewPacker(c2, nil, B, T)
				if err := p2.Restore(st); err != nil {
					t.Fatal(err)
				}
				for i, b := range run(p2, N-cut) {
					w := want[cut+i]
					if !slices.Equal(b.Inputs, w.Inputs) || !slices.Equal(b.Targets, w.Targets) ||
						!slices.Equal(b.LossMask, w.LossMask) || !slices.Equal(b.Lengths, w.Lengths) || b.Tokens != w.Tokens {
						t.Fatalf("cut %d: batch %d differs from the uninterrupted run", cut, cut+i)
					}
				}
				c2.Close()
			}
		})
	}
}

func TestPackerRestoreErrors(t *testing.T) {
	p := NewPacker(&sliceCorpus{docs: []string{"a"}}, nil, 1, 4)
	tests := []struct {
		name string
		st   PackerState
		want string
	}{
		{"special in leftover", PackerState{Corpus: CorpusState{Source: "slice"}, Leftover: []int32{'a', User}}, "leftover token 1"},
		{"negative", PackerState{Corpus: CorpusState{Source: "slice"}, Leftover: []int32{-1}}, "leftover token 0"},
		{"corpus", PackerState{Corpus: CorpusState{Source: "jsonl"}}, "slice corpus"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := p.Restore(tc.st); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Restore: %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
	var b Batch
	if err := NewPacker(&sliceCorpus{docs: []string{"a"}}, nil, 0, 4).Next(&b); err == nil {
		t.Error("B=0 accepted")
	}
}

func TestPackerSteadyStateAllocs(t *testing.T) {
	docs := []string{strings.Repeat("x", 300), "short", strings.Repeat("y", 1000)}
	p := NewPacker(&sliceCorpus{docs: docs}, nil, 4, 128)
	var b Batch
	for range 20 { // warm up: grow the buffers to their steady size
		if err := p.Next(&b); err != nil {
			t.Fatal(err)
		}
	}
	in := &b.Inputs[0]
	allocs := testing.AllocsPerRun(200, func() {
		if err := p.Next(&b); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Next allocates %v times per call in steady state", allocs)
	}
	if &b.Inputs[0] != in {
		t.Error("Next replaced the batch's Inputs buffer")
	}
}

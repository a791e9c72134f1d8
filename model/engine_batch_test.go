package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/sparrow-rl/sparrow/internal/kernels"
)

// decodeRecord is what one decode step leaves in a session: logits, experts, selections.
type decodeRecord struct {
	logits   []float32
	experts  [][]int32
	selected [][]int32
}

func recordOf(s *Session) decodeRecord {
	r := decodeRecord{logits: slices.Clone(s.Logits)}
	for _, ids := range s.Experts {
		r.experts = append(r.experts, slices.Clone(ids))
	}
	for _, sel := range s.Selected {
		r.selected = append(r.selected, slices.Clone(sel))
	}
	return r
}

// bitwiseRows says whether a batched step equals a step of one bit for bit here: with the row-dot kernels
// (AVX2), whatever the BLAS; without them, with gonum's BLAS, whose rows do not depend on the row count
// (OpenBLAS's may, by float rounding).
func bitwiseRows() bool { return kernels.RowsInvariant(8, 4) || kernels.Backend() == "gonum" }

// TestBatchStepMatchesOneAtATime: sequences of different lengths (so different positions per row, and rows
// leaving the batch as they end), decoded together in a varying row order, leave every step the logits,
// experts and DSA selections that decoding each alone leaves — bit for bit (bitwiseRows), within float
// rounding (1e-5 relative) otherwise — for dense and sparse sessions, selecting or with forced experts and
// selections (Keep Routing, Keep Selection).
func TestBatchStepMatchesOneAtATime(t *testing.T) {
	cfg := parityModel()
	p := NewParams(cfg)
	p.Init(11)
	e := NewEngine(p)
	lengths := []int{9, 3, 14, 6, 11}
	rng := rand.New(rand.NewPCG(5, 6))
	tokens := make([][]int32, len(lengths))
	for i, n := range lengths {
		for range n {
			tokens[i] = append(tokens[i], int32(rng.IntN(cfg.VocabSize)))
		}
	}
	for _, tc := range []struct {
		name   string
		topk   int // 0 = dense
		forced bool
	}{
		{"dense", 0, false},
		{"dense forced experts", 0, true},
		{"sparse top-4", 4, false},
		{"sparse forced experts and selections", 4, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			newSession := func() *Session {
				if tc.topk > 0 {
					ds, err := e.NewDSASession(16, tc.topk)
					if err != nil {
						t.Fatal(err)
					}
					return ds.Session
				}
				s, err := e.NewSession(16)
				if err != nil {
					t.Fatal(err)
				}
				return s
			}
			// One at a time, selecting freely: the reference records.
			want := make([][]decodeRecord, len(lengths))
			for i := range lengths {
				s := newSession()
				for _, tok := range tokens[i] {
					if err := s.Step(tok, nil); err != nil {
						t.Fatal(err)
					}
					want[i] = append(want[i], recordOf(s))
				}
			}
			// Batched: at step n every sequence longer than n, rows in a shuffled order.
			sess := make([]*Session, len(lengths))
			for i := range sess {
				sess[i] = newSession()
			}
			b, err := e.NewBatch(len(lengths))
			if err != nil {
				t.Fatal(err)
			}
			order := rand.New(rand.NewPCG(7, 8))
			bitwise := true
			for n := 0; n < slices.Max(lengths); n++ {
				var in []DecodeInput
				for i, L := range lengths {
					if n >= L {
						continue
					}
					row := DecodeInput{S: sess[i], Token: tokens[i][n]}
					if tc.forced {
						row.Experts = want[i][n].experts
						if tc.topk > 0 {
							row.Selection = want[i][n].selected
						}
					}
					in = append(in, row)
				}
				order.Shuffle(len(in), func(a, c int) { in[a], in[c] = in[c], in[a] })
				if err := b.Step(in); err != nil {
					t.Fatal(err)
				}
				for _, row := range in {
					i := slices.Index(sess, row.S)
					got, w := recordOf(row.S), want[i][n]
					where := fmt.Sprintf("sequence %d position %d", i, n)
					for l := range w.experts {
						if !slices.Equal(got.experts[l], w.experts[l]) {
							t.Fatalf("%s layer %d: experts %v, one at a time %v", where, l, got.experts[l], w.experts[l])
						}
					}
					for l := range w.selected {
						if !slices.Equal(got.selected[l], w.selected[l]) {
							t.Fatalf("%s layer %d: selection %v, one at a time %v", where, l, got.selected[l], w.selected[l])
						}
					}
					for j := range w.logits {
						g, x := got.logits[j], w.logits[j]
						if g != x {
							bitwise = false
						}
						if math.Abs(float64(g-x)) > 1e-5*math.Max(1, math.Abs(float64(x))) {
							t.Fatalf("%s: logit %d is %v, one at a time %v", where, j, g, x)
						}
					}
				}
			}
			if bitwiseRows() && !bitwise {
				t.Errorf("with BLAS %s the batched logits should equal one-at-a-time decoding bit for bit", kernels.Backend())
			}
			t.Logf("BLAS %s: bit for bit %v", kernels.Backend(), bitwise)
		})
	}
}

// TestBatchStepErrors: a bad row is an error naming it, and nothing is decoded.
func TestBatchStepErrors(t *testing.T) {
	cfg := parityModel()
	p := NewParams(cfg)
	p.Init(1)
	e := NewEngine(p)
	s1, _ := e.NewSession(4)
	s2, _ := e.NewSession(4)
	b, _ := e.NewBatch(2)
	for _, tc := range []struct {
		in   []DecodeInput
		want string
	}{
		{[]DecodeInput{{S: s1}, {S: s1}}, "decode rows 0 and 1 are the same session"},
		{[]DecodeInput{{S: s1}, {S: s2, Token: int32(cfg.VocabSize)}}, "outside vocabulary"},
		{[]DecodeInput{{S: s1}, {S: s2}, {S: s2}}, "exceeds the batch capacity 2"},
		{[]DecodeInput{{S: s1, Selection: [][]int32{{0}}}}, "forced DSA selections for a dense session"},
	} {
		err := b.Step(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Step: error %v, want one saying %q", err, tc.want)
		}
		if s1.Len != 0 || s2.Len != 0 {
			t.Fatalf("a refused step decoded (lengths %d, %d)", s1.Len, s2.Len)
		}
	}
	if _, err := e.NewBatch(0); err == nil {
		t.Error("NewBatch(0): no error")
	}
}

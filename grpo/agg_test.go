// Tests of the loss aggregation: hand-computed aggregates and weights of every
// mode, invariance under splitting a batch into micro-batches (global
// normalisers), the difference per-micro-batch normalisers would make, and the
// errors.
package grpo

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// aggLayout: seq 0 has loss tokens x = 1, 2, 3 (tokens 0, 1, 3); seq 1 has x = 4
// (token 2) and a loss-masked token (x = 100); seq 2 has no loss token (x = 7).
// So S = 2 sequences, N = 4 tokens, n_0 = 3, n_1 = 1.
func aggLayout() (Layout, []float64) {
	return Layout{
		Seq:      []int{0, 0, 1, 0, 1, 2},
		LossMask: []uint8{1, 1, 1, 1, 0, 0},
		NumSeqs:  3,
	}, []float64{1, 2, 4, 3, 100, 7}
}

func TestAggregateGolden(t *testing.T) {
	tests := []struct {
		mode   AggMode
		maxLen int
		want   float64
		w      []float64
	}{
		// (mean(1,2,3) + mean(4)) / 2 = (2 + 4)/2 = 3; w = 1/(2·3) on seq 0, 1/(2·1) on seq 1
		{AggSeqMeanTokenMean, 0, 3, []float64{1.0 / 6, 1.0 / 6, 0.5, 1.0 / 6, 0, 0}},
		// (1+2+3+4)/4 = 2.5; w = 1/4
		{AggTokenMean, 0, 2.5, []float64{0.25, 0.25, 0.25, 0.25, 0, 0}},
		// (6 + 4)/2 = 5; w = 1/2
		{AggSeqMeanTokenSum, 0, 5, []float64{0.5, 0.5, 0.5, 0.5, 0, 0}},
		// (6/4 + 4/4)/2 = 1.25; w = 1/(2·4)
		{AggSeqMeanTokenSumNorm, 4, 1.25, []float64{0.125, 0.125, 0.125, 0.125, 0, 0}},
	}
	for _, tc := range tests {
		t.Run(string(tc.mode), func(t *testing.T) {
			l, x := aggLayout()
			norm, err := NormalizerOf(l)
			if err != nil {
				t.Fatal(err)
			}
			if norm != (Normalizer{Seqs: 2, Tokens: 4}) {
				t.Fatalf("normaliser = %+v, want {Seqs:2 Tokens:4}", norm)
			}
			got, w, err := Aggregator{Mode: tc.mode, Norm: norm, MaxLen: tc.maxLen}.Aggregate(l, x)
			if err != nil {
				t.Fatal(err)
			}
			requireNear(t, "aggregate", got, tc.want)
			for i := range w {
				requireNear(t, "weight", w[i], tc.w[i])
			}
		})
	}
}

// TestAggregateMicroBatchesGolden splits aggLayout into micro-batch A = {seq 0}
// and B = {seq 1, seq 2}: with the batch's normaliser the parts add up to the
// whole; with each micro-batch's own normaliser they do not (token-mean would
// give 6/3 + 4/1 = 6 instead of 2.5).
func TestAggregateMicroBatchesGolden(t *testing.T) {
	a := Layout{Seq: []int{0, 0, 0}, LossMask: []uint8{1, 1, 1}, NumSeqs: 1}
	xa := []float64{1, 2, 3}
	b := Layout{Seq: []int{0, 0, 1}, LossMask: []uint8{1, 0, 0}, NumSeqs: 2}
	xb := []float64{4, 100, 7}
	norm, err := NormalizerOf(a, b)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mode         AggMode
		whole, local float64
	}{
		{AggSeqMeanTokenMean, 3, 2 + 4},     // local: 2/1 + 4/1
		{AggTokenMean, 2.5, 6.0/3 + 4},      // local: 6/3 + 4/1
		{AggSeqMeanTokenSum, 5, 6 + 4},      // local: 6/1 + 4/1
		{AggSeqMeanTokenSumNorm, 1.25, 2.5}, // local: 6/4 + 4/4
	} {
		ag := Aggregator{Mode: tc.mode, Norm: norm, MaxLen: 4}
		va, _, err := ag.Aggregate(a, xa)
		if err != nil {
			t.Fatal(err)
		}
		vb, _, err := ag.Aggregate(b, xb)
		if err != nil {
			t.Fatal(err)
		}
		requireNear(t, string(tc.mode)+" global", va+vb, tc.whole)
		na, _ := NormalizerOf(a)
		nb, _ := NormalizerOf(b)
		la, _, _ := Aggregator{Mode: tc.mode, Norm: na, MaxLen: 4}.Aggregate(a, xa)
		lb, _, _ := Aggregator{Mode: tc.mode, Norm: nb, MaxLen: 4}.Aggregate(b, xb)
		requireNear(t, string(tc.mode)+" local", la+lb, tc.local)
	}
}

// TestAggregateMicroBatchInvariance splits random batches into random
// micro-batches of whole sequences and checks that the aggregates add up and
// the weights match the whole-batch weights, for every mode.
func TestAggregateMicroBatchInvariance(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 20 {
		b := randomBatch(t, rng, 16, 9, 0.2, trial%2 == 0)
		x := make([]float64, len(b.Seq))
		for i := range x {
			x[i] = rng.NormFloat64()
		}
		parts := 1 + rng.IntN(4)
		part := make([]int, b.NumSeqs)
		for i := range part {
			part[i] = rng.IntN(parts)
		}
		mbs, idx := split(b, parts, part)
		var ls []Layout
		for _, mb := range mbs {
			ls = append(ls, mb.Layout)
		}
		norm, err := NormalizerOf(ls...)
		if err != nil {
			t.Fatal(err)
		}
		whole, err := NormalizerOf(b.Layout)
		if err != nil {
			t.Fatal(err)
		}
		if norm != whole {
			t.Fatalf("normaliser of the parts %+v != of the whole %+v", norm, whole)
		}
		for _, mode := range []AggMode{AggSeqMeanTokenMean, AggTokenMean, AggSeqMeanTokenSum, AggSeqMeanTokenSumNorm} {
			ag := Aggregator{Mode: mode, Norm: norm, MaxLen: 9}
			want, wantW, err := ag.Aggregate(b.Layout, x)
			if err != nil {
				t.Fatal(err)
			}
			var sum float64
			for p, mb := range mbs {
				xs := make([]float64, len(idx[p]))
				for k, t0 := range idx[p] {
					xs[k] = x[t0]
				}
				v, w, err := ag.Aggregate(mb.Layout, xs)
				if err != nil {
					t.Fatal(err)
				}
				sum += v
				for k, t0 := range idx[p] {
					if !near(w[k], wantW[t0], 1e-15, 1e-13) {
						t.Fatalf("trial %d %s: weight of token %d = %g in micro-batch, %g in batch", trial, mode, t0, w[k], wantW[t0])
					}
				}
			}
			if !near(sum, want, 1e-13, 1e-12) {
				t.Fatalf("trial %d %s: micro-batches sum to %.17g, batch %.17g", trial, mode, sum, want)
			}
		}
	}
}

func TestAggregateEmptyAndErrors(t *testing.T) {
	// no loss token anywhere: zero weights, zero aggregate (verl's zero loss)
	empty := Layout{Seq: []int{0, 1}, LossMask: []uint8{0, 0}, NumSeqs: 2}
	norm, err := NormalizerOf(empty)
	if err != nil {
		t.Fatal(err)
	}
	v, w, err := Aggregator{Mode: AggSeqMeanTokenMean, Norm: norm}.Aggregate(empty, []float64{math.NaN(), 5})
	if err != nil || v != 0 || w[0] != 0 || w[1] != 0 {
		t.Fatalf("empty batch: %v %v %v", v, w, err)
	}

	l, x := aggLayout()
	good := Normalizer{Seqs: 2, Tokens: 4}
	tests := []struct {
		name string
		ag   Aggregator
		x    []float64
		want string
	}{
		{"normaliser too small", Aggregator{Mode: AggTokenMean, Norm: Normalizer{Seqs: 2, Tokens: 3}}, x, "more than the batch normaliser"},
		{"normaliser of no tokens", Aggregator{Mode: AggTokenMean}, x, "more than the batch normaliser"},
		{"unknown mode", Aggregator{Mode: "seq-mean", Norm: good}, x, `agg "seq-mean"`},
		{"sum-norm without max_len", Aggregator{Mode: AggSeqMeanTokenSumNorm, Norm: good}, x, "max_len 0"},
		{"NaN at a loss token", Aggregator{Mode: AggTokenMean, Norm: good}, []float64{1, math.NaN(), 4, 3, 100, 7}, "x[1] (sequence 0) = NaN"},
		{"short x", Aggregator{Mode: AggTokenMean, Norm: good}, x[:5], "x has 5 values for 6 tokens"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := tc.ag.Aggregate(l, tc.x)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	// a NaN where the loss mask is 0 is not read
	if _, _, err := (Aggregator{Mode: AggTokenMean, Norm: good}).Aggregate(l, []float64{1, 2, 4, 3, math.NaN(), math.Inf(1)}); err != nil {
		t.Fatalf("NaN at loss-masked tokens: %v", err)
	}
	if _, err := NormalizerOf(l, Layout{Seq: []int{3}, LossMask: []uint8{1}, NumSeqs: 1}); err == nil || !strings.Contains(err.Error(), "micro-batch 1") {
		t.Fatalf("bad micro-batch layout: err = %v", err)
	}
}

func TestParseAgg(t *testing.T) {
	for _, s := range []string{"seq-mean-token-mean", "token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"} {
		if m, err := ParseAgg(s); err != nil || string(m) != s {
			t.Errorf("ParseAgg(%q) = %q, %v", s, m, err)
		}
	}
	for _, s := range []string{"", "token_mean", "seq-mean"} {
		if _, err := ParseAgg(s); err == nil {
			t.Errorf("ParseAgg(%q) accepted", s)
		}
	}
}

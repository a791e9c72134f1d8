// corpus_test.go checks the split hash against values computed with Python's hashlib, the synthetic corpus
// (determinism, split disjointness, exact resume through a JSON round trip of its state) and OpenCorpus'
// validation of the data section.

package data

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

func TestSplitHashGolden(t *testing.T) {
	// hashlib.sha256(key).digest()[:8] as big-endian uint64, >> 11, / 2**53.
	tests := []struct {
		key  string
		want float64
	}{
		{"347+589", 3756715331471815.0 / (1 << 53)},
		{"", 8011147086339971.0 / (1 << 53)},
		{"hello world", 6519712962996647.0 / (1 << 53)},
	}
	for _, tc := range tests {
		if got := SplitHash(tc.key); got != tc.want {
			t.Errorf("SplitHash(%q) = %v, want %v", tc.key, got, tc.want)
		}
	}
	// 0.41708 for "347+589": held out exactly when heldOut exceeds it.
	for _, tc := range []struct {
		heldOut float64
		want    Split
	}{{0, SplitTrain}, {0.4, SplitTrain}, {0.42, SplitHeldOut}, {0.999, SplitHeldOut}} {
		if got := InSplit("347+589", tc.heldOut); got != tc.want {
			t.Errorf("InSplit(347+589, %v) = %v, want %v", tc.heldOut, got, tc.want)
		}
	}
}

func TestInSplitFraction(t *testing.T) {
	const n = 20000
	held := 0
	for i := range n {
		if InSplit("doc-"+strconv.Itoa(i), 0.1) == SplitHeldOut {
			held++
		}
	}
	// Binomial(20000, 0.1): sd ≈ 42; allow 5 sd.
	if f := float64(held) / n; math.Abs(f-0.1) > 5*math.Sqrt(0.1*0.9/n) {
		t.Errorf("held-out fraction %v, want about 0.1", f)
	}
}

func TestSplitString(t *testing.T) {
	for _, s := range []Split{SplitTrain, SplitHeldOut} {
		got, err := ParseSplit(s.String())
		if err != nil || got != s {
			t.Errorf("ParseSplit(%q) = %v, %v", s.String(), got, err)
		}
	}
	if _, err := ParseSplit("test"); err == nil {
		t.Error("ParseSplit(test) succeeded")
	}
}

func drawProblems(t *testing.T, c *SyntheticCorpus, n int) []Problem {
	t.Helper()
	out := make([]Problem, n)
	for i := range out {
		p, err := c.NextProblem()
		if err != nil {
			t.Fatal(err)
		}
		out[i] = p
	}
	return out
}

func TestSyntheticCorpusSplitsAndDeterminism(t *testing.T) {
	gen := ArithmeticGenerator{MaxDigits: 2}
	const heldOut = 0.2
	train := drawProblems(t, &SyntheticCorpus{Gen: gen, HeldOut: heldOut, Split: SplitTrain, Seed: 3}, 2000)
	held := drawProblems(t, &SyntheticCorpus{Gen: gen, HeldOut: heldOut, Split: SplitHeldOut, Seed: 99}, 500)
	trainKeys := map[string]bool{}
	for _, p := range train {
		if InSplit(p.Key, heldOut) != SplitTrain {
			t.Fatalf("train corpus yielded held-out problem %q", p.Key)
		}
		trainKeys[p.Key] = true
	}
	for _, p := range held {
		if InSplit(p.Key, heldOut) != SplitHeldOut {
			t.Fatalf("held-out corpus yielded train problem %q", p.Key)
		}
		if trainKeys[p.Key] {
			t.Fatalf("problem %q is in both splits", p.Key)
		}
	}
	again := drawProblems(t, &SyntheticCorpus{Gen: gen, HeldOut: heldOut, Split: SplitTrain, Seed: 3}, 2000)
	other := drawProblems(t, &SyntheticCorpus{Gen: gen, HeldOut: heldOut, Split: SplitTrain, Seed: 4}, 2000)
	same := 0
	for i := range train {
		if train[i] != again[i] {
			t.Fatalf("draw %d differs with the same seed: %q vs %q", i, train[i].Key, again[i].Key)
		}
		if train[i] == other[i] {
			same++
		}
	}
	if same > len(train)/4 {
		t.Errorf("seeds 3 and 4 agree on %d of %d draws", same, len(train))
	}
}

func TestSyntheticCorpusResume(t *testing.T) {
	gen := ArithmeticGenerator{MaxDigits: 3}
	full := &SyntheticCorpus{Gen: gen, HeldOut: 0.3, Split: SplitHeldOut, Seed: 11}
	want := drawProblems(t, full, 40)
	for _, cut := range []int{0, 1, 17, 39} {
		c := &SyntheticCorpus{Gen: gen, HeldOut: 0.3, Split: SplitHeldOut, Seed: 11}
		drawProblems(t, c, cut)
		js, err := json.Marshal(c.State())
		if err != nil {
			t.Fatal(err)
		}
		var st CorpusState
		if err := json.Unmarshal(js, &st); err != nil {
			t.Fatal(err)
		}
		if st.Docs != int64(cut) || st.Draws < st.Docs {
			t.Errorf("cut %d: state %s", cut, js)
		}
		fresh := &SyntheticCorpus{Gen: gen, HeldOut: 0.3, Split: SplitHeldOut, Seed: 11}
		if err := fresh.Restore(st); err != nil {
			t.Fatal(err)
		}
		for i, p := range drawProblems(t, fresh, len(want)-cut) {
			if p != want[cut+i] {
				t.Fatalf("cut %d: doc %d is %q, want %q", cut, cut+i, p.Key, want[cut+i].Key)
			}
		}
	}
}

func TestSyntheticCorpusRestoreMismatch(t *testing.T) {
	gen := ArithmeticGenerator{MaxDigits: 3}
	c := &SyntheticCorpus{Gen: gen, HeldOut: 0.1, Split: SplitTrain, Seed: 5}
	good := c.State()
	tests := []struct {
		name   string
		modify func(*CorpusState)
		want   string
	}{
		{"source", func(s *CorpusState) { s.Source = "jsonl" }, "jsonl"},
		{"split", func(s *CorpusState) { s.Split = "held_out" }, "held_out"},
		{"seed", func(s *CorpusState) { s.Seed = 6 }, "seed 6"},
		{"generator", func(s *CorpusState) { s.Generator = "sort" }, "sort"},
		{"cursor", func(s *CorpusState) { s.Docs = 3 }, "invalid cursor"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := good
			tc.modify(&s)
			err := c.Restore(s)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Restore: %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

// tinyGen has 4 problems, so with a large held-out fraction one split may be empty.
type tinyGen struct{}

func (tinyGen) Name() string { return "tiny" }
func (tinyGen) Generate(rng *rand.Rand) Problem {
	k := string(rune('a' + rng.IntN(4)))
	return Problem{Key: k, Text: k}
}

func TestSyntheticCorpusEmptySplit(t *testing.T) {
	// Find a held-out fraction that puts all four keys in train.
	hmin := 1.0
	for _, k := range []string{"a", "b", "c", "d"} {
		hmin = min(hmin, SplitHash(k))
	}
	c := &SyntheticCorpus{Gen: tinyGen{}, HeldOut: hmin / 2, Split: SplitHeldOut, Seed: 1}
	if _, err := c.Next(); err == nil || !strings.Contains(err.Error(), "no problem in the held_out split") {
		t.Errorf("Next on an empty split: %v", err)
	}
}

func TestOpenCorpusValidation(t *testing.T) {
	tests := []struct {
		name  string
		cfg   CorpusConfig
		split Split
		want  string // "" when it must succeed
	}{
		{"synthetic", CorpusConfig{Source: "synthetic", Generator: "arithmetic", MaxDigits: 3, HeldOut: 0.1}, SplitHeldOut, ""},
		{"ops", CorpusConfig{Source: "synthetic", Generator: "arithmetic", MaxDigits: 3, Ops: []string{"+"}}, SplitTrain, ""},
		{"jsonl", CorpusConfig{Source: "jsonl", Path: "testdata/corpus/small.jsonl"}, SplitTrain, ""},
		{"unknown source", CorpusConfig{Source: "csv"}, SplitTrain, `data.source "csv"`},
		{"unknown generator", CorpusConfig{Source: "synthetic", Generator: "chess"}, SplitTrain, `data.generator "chess"`},
		{"bad digits", CorpusConfig{Source: "synthetic", Generator: "arithmetic"}, SplitTrain, "max_digits 0"},
		{"bad op", CorpusConfig{Source: "synthetic", Generator: "arithmetic", MaxDigits: 2, Ops: []string{"^"}}, SplitTrain, `"^"`},
		{"held_out 1", CorpusConfig{Source: "synthetic", Generator: "arithmetic", MaxDigits: 2, HeldOut: 1}, SplitTrain, "held_out 1"},
		{"held_out negative", CorpusConfig{Source: "jsonl", Path: "x", HeldOut: -0.1}, SplitTrain, "held_out -0.1"},
		{"empty held-out split", CorpusConfig{Source: "synthetic", Generator: "arithmetic", MaxDigits: 2}, SplitHeldOut, "held-out split is empty"},
		{"no path", CorpusConfig{Source: "parquet"}, SplitTrain, "data.path"},
		{"missing file", CorpusConfig{Source: "jsonl", Path: "testdata/corpus/nope.jsonl"}, SplitTrain, "nope.jsonl"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := OpenCorpus(tc.cfg, tc.split)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if _, err := c.Next(); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("OpenCorpus: %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

func TestRegisterGenerator(t *testing.T) {
	if err := RegisterGenerator("arithmetic", nil); err == nil {
		t.Error("registering arithmetic twice succeeded")
	}
	if err := RegisterGenerator("tiny-test", func(CorpusConfig) (Generator, error) { return tinyGen{}, nil }); err != nil {
		t.Fatal(err)
	}
	c, err := OpenCorpus(CorpusConfig{Source: "synthetic", Generator: "tiny-test", Seed: 2}, SplitTrain)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := c.Next()
	if err != nil || len(doc) != 1 || doc[0] < 'a' || doc[0] > 'd' {
		t.Errorf("Next = %q, %v", doc, err)
	}
}

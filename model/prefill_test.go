package model

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestPrefillBatchMatchesDecode: the batched prefill leaves the same cache, logits and experts as decoding
// the prompt token by token, and decode continues identically from it.
func TestPrefillBatchMatchesDecode(t *testing.T) {
	cfg := parityModel()
	p := NewParams(cfg)
	p.Init(9)
	rng := rand.New(rand.NewPCG(3, 4))
	prompt := make([]int32, 21)
	for i := range prompt {
		prompt[i] = int32(rng.IntN(cfg.VocabSize))
	}
	e := NewEngine(p)
	a, _ := e.NewSession(40)
	b, _ := e.NewSession(40)
	expA := make([][][]int32, len(prompt))
	expB := make([][][]int32, len(prompt))
	if err := a.Prefill(prompt, expA, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.PrefillBatch(prompt, expB); err != nil {
		t.Fatal(err)
	}
	for step := 0; step < 6; step++ {
		var d float64
		for i := range a.Logits {
			d = math.Max(d, math.Abs(float64(a.Logits[i]-b.Logits[i])))
		}
		if d > 1e-4 {
			t.Fatalf("step %d: logits differ by %.3g", step, d)
		}
		next := int32(rng.IntN(cfg.VocabSize))
		if err := a.Step(next, nil); err != nil {
			t.Fatal(err)
		}
		if err := b.Step(next, nil); err != nil {
			t.Fatal(err)
		}
	}
	for i := range expA {
		for l := range expA[i] {
			if expA[i][l] != nil && !sameSet(expA[i][l], expB[i][l]) {
				t.Errorf("position %d layer %d: decode experts %v, batched prefill %v", i, l, expA[i][l], expB[i][l])
			}
		}
	}
}

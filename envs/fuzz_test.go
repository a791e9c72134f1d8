// Fuzz tests of every family's verifier: on any completion and finish reason it returns the three reward
// parts, their sum as Total, no correctness without well-formed untruncated output, and never panics.
// Seed corpora are in testdata/fuzz/FuzzVerify*.
package envs

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/sparrow-rl/sparrow/data"
)

func fuzzVerify(f *testing.F, family string, params map[string]string) {
	fam, err := New(family, Options{Params: params, Reward: RewardOptions{Correct: 1, Format: 0.1, LengthPenalty: 0.2, LengthBudget: 64}})
	if err != nil {
		f.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	tasks := make([]Task, 8)
	for i := range tasks {
		tasks[i] = fam.Sample(rng, data.Split(i%2))
		r, a := fam.Solution(tasks[i])
		f.Add(uint8(i), Completion(r, a), "stop")
		f.Add(uint8(i), Completion(r, a)+litEOS, FinishLength)
	}
	f.Add(uint8(0), "", "")
	f.Add(uint8(1), "\xff</think>\xfe", "stop")
	f.Add(uint8(2), "</think></think>", "stop")
	f.Fuzz(func(t *testing.T, which uint8, completion, finish string) {
		task := tasks[int(which)%len(tasks)]
		r := fam.Verify(task, completion, finish)
		c, fm, lp := r.Parts[PartCorrectness], r.Parts[PartFormat], r.Parts[PartLengthPenalty]
		if len(r.Parts) != 3 || math.Abs(r.Total-(c+fm+lp)) > 1e-12 {
			t.Fatalf("parts %v do not sum to %v", r.Parts, r.Total)
		}
		if r.Correct != (c == 1) || (c != 0 && c != 1) || (fm != 0 && fm != 0.1) || lp > 0 || lp < -0.2 {
			t.Fatalf("reward out of range: %+v", r)
		}
		if finish == FinishLength && (r.Correct || fm != 0) {
			t.Fatalf("truncated completion rewarded: %+v", r)
		}
		if r.Correct && !ParseCompletion(completion).WellFormed {
			t.Fatalf("malformed completion judged correct: %+v", r)
		}
	})
}

func FuzzVerifyMath(f *testing.F)  { fuzzVerify(f, "math", nil) }
func FuzzVerifyLogic(f *testing.F) { fuzzVerify(f, "logic", nil) }
func FuzzVerifyCode(f *testing.F) {
	fuzzVerify(f, "code", map[string]string{"max_steps": "5000", "max_output": "512"})
}
func FuzzVerifyKV(f *testing.F) { fuzzVerify(f, "kvretrieval", map[string]string{"length": "128"}) }

func FuzzVerifyNeedle(f *testing.F) { fuzzVerify(f, "needle", map[string]string{"length": "128"}) }
func FuzzVerifyDataset(f *testing.F) {
	fuzzVerify(f, "dataset", map[string]string{"path": testDataset(f, 60), "case_insensitive": "true"})
}

// Tests of the mixture family: weights, routing of verification and solutions to the task's member, the
// params' errors, and the mixed pre-training generator.

package envs

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/sparrow-rl/sparrow/data"
)

func TestMixWeightsAndRouting(t *testing.T) {
	m, err := NewMix(Options{Params: map[string]string{"families": "math:3,logic:1", "math.digits": "2"}})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	count := map[string]int{}
	const n = 4000
	for range n {
		task := m.Sample(rng, data.SplitTrain)
		count[task.Family]++
		reasoning, answer := m.Solution(task)
		if !m.Verify(task, reasoning+"</think>"+answer, "stop").Correct {
			t.Fatalf("task %s (%s): its member's own solution does not verify through the mix", task.ID, task.Family)
		}
	}
	if len(count) != 2 {
		t.Fatalf("families drawn %v, want math and logic", count)
	}
	// math has weight 3/4: 3000 expected, binomial sd ≈ 27
	if c := count["math"]; c < 2850 || c > 3150 {
		t.Fatalf("math drawn %d of %d, want about 3000 (weight 3:1)", c, n)
	}
	if _, ok := m.Member("code"); ok {
		t.Fatal("code is not a member")
	}
}

func TestMixParamErrors(t *testing.T) {
	for _, c := range []struct {
		params map[string]string
		want   string
	}{
		{map[string]string{}, "params.families: required"},
		{map[string]string{"families": "math:0"}, "want a weight > 0"},
		{map[string]string{"families": "math,math"}, "math listed twice"},
		{map[string]string{"families": "math,mix"}, "cannot contain a mix"},
		{map[string]string{"families": "math", "logic.sort_len": "4"}, "params.logic.sort_len"},
		{map[string]string{"families": "math", "digits": "4"}, "params.digits"},
		{map[string]string{"families": "nosuch"}, "unknown family"},
		{map[string]string{"families": "math", "math.bogus": "1"}, "bogus"},
	} {
		_, err := NewMix(Options{Params: c.params})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error with %q", c.params, err, c.want)
		}
	}
}

func TestMixGenerator(t *testing.T) {
	g, err := newMixGenerator(data.CorpusConfig{HeldOut: 0.05, Params: map[string]string{"families": "math:1,logic:1", "math.flaw": "1", "math.digits": "2"}})
	if err != nil {
		t.Fatal(err)
	}
	mg := g.(MixGenerator)
	if len(mg.Gens) != 2 || mg.Gens[0].Flaw != 1 || mg.Gens[1].Flaw != 0 {
		t.Fatalf("members %+v: want math with flaw 1, logic with flaw 0", mg.Gens)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	seen := map[bool]int{}
	for range 200 {
		p := g.Generate(rng)
		seen[strings.Contains(p.Key, "+") || strings.Contains(p.Key, "-") || strings.Contains(p.Key, "*")]++
	}
	if seen[true] == 0 || seen[false] == 0 {
		t.Fatalf("documents by member %v: want both", seen)
	}
	if _, err := newMixGenerator(data.CorpusConfig{Params: map[string]string{"families": "logic", "logic.flaw": "2"}}); err == nil || !strings.Contains(err.Error(), "data.params.logic.flaw") {
		t.Fatalf("bad member flaw: %v", err)
	}
}

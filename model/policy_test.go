package model

import (
	"math"
	"testing"

	G "gorgonia.org/gorgonia"
)

// TestGradPolicyHead: finite differences through the kept-set, temperature-scaled log-probabilities and a
// nonlinear loss of them.
func TestGradPolicyHead(t *testing.T) {
	const N, V = 5, 7
	side := testPolicySide()
	runGradCase(t, gradCase{name: "policy_head", shapes: [][]int{{N, V}}, ints: [][]int32{{3, 5, 2, 5, 4}},
		build: func(in []*G.Node) (*G.Node, error) {
			return apply[float64](&policyKernel[float64]{side: side}, in...)
		}})
}

// TestPolicyHeadGolden: log-probabilities over a kept set by hand.
func TestPolicyHeadGolden(t *testing.T) {
	k := &policyKernel[float64]{side: &PolicySide{Temperature: 2, KeptOffsets: []int32{0, 2}, KeptIDs: []int32{0, 2},
		Loss: func(lp []float64) (float64, []float64, error) { return lp[0], []float64{1}, nil }}, ids: []int32{2}, N: 1, V: 3,
		prob: make([]float64, 3), logp: make([]float64, 1)}
	// logits (1, 5, 3), T = 2 → z = (0.5, 2.5, 1.5); kept {0, 2}: logp(2) = 1.5 − log(e^0.5 + e^1.5)
	var out [1]float64
	if err := k.Forward([][]float64{{1, 5, 3}, nil}, out[:]); err != nil {
		t.Fatal(err)
	}
	want := 1.5 - math.Log(math.Exp(0.5)+math.Exp(1.5))
	if math.Abs(out[0]-want) > 1e-12 {
		t.Fatalf("logp = %v, want %v", out[0], want)
	}
	if k.prob[1] != 0 {
		t.Fatal("a token outside the kept set has probability")
	}
}

// testPolicySide is a head over 5 positions at temperature 0.7 with kept sets {1 3 6}, the whole vocabulary,
// {0 2}, {2 5} and a single kept token {4}, under the nonlinear loss Σ_i c_i·ℓ_i + ℓ_i²/2 (c_i = 0.3·(i+1)).
func testPolicySide() *PolicySide {
	return &PolicySide{
		Temperature: 0.7,
		KeptOffsets: []int32{0, 3, 3, 5, 7, 8},
		KeptIDs:     []int32{1, 3, 6, 0, 2, 2, 5, 4},
		Loss: func(logp []float64) (float64, []float64, error) {
			var l float64
			d := make([]float64, len(logp))
			for i, v := range logp {
				c := float64(i+1) * 0.3
				l += c*v + 0.5*v*v
				d[i] = c + v
			}
			return l, d, nil
		},
	}
}

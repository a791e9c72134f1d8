// Tests of the policy head's exact-KL term (policy_kl.go): float64 finite differences through the head with
// kept sets of different sizes and the whole vocabulary, the float32 head against the float64 one, and
// malformed teacher offsets refused.

package model

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/sparrow-rl/sparrow/grpo"
	"github.com/sparrow-rl/sparrow/internal/cputime"
	G "gorgonia.org/gorgonia"
)

// keptKLSide is testPolicySide (V = 7) with the exact-KL term weighted at positions 0, 1, 2 and 4 (3 is
// skipped, its teacher range still present).
func keptKLSide() *PolicySide {
	logq := []float64{
		-1.2, -0.7, -2.0, // {1 3 6}
		-2.1, -1.5, -3.0, -0.4, -2.6, -1.9, -2.2, // whole vocabulary
		-0.3, -1.1, // {0 2}
		-0.9, -0.6, // {2 5} (weight 0)
		-0.01, // {4}
	}
	side := testPolicySide()
	side.KeptKL = &KeptKL{
		Weights:        []float64{0.5, 1.25, 2, 0, 0.75},
		TeacherOffsets: []int32{0, 3, 10, 12, 14, 15},
		TeacherLogp:    logq,
		Divergence:     grpo.ExactKL,
	}
	return side
}

// TestGradPolicyHeadKeptKL: finite differences of the head's loss (policy loss + Σ w·KL) w.r.t. the logits.
func TestGradPolicyHeadKeptKL(t *testing.T) {
	side := keptKLSide()
	runGradCase(t, gradCase{name: "policy_head_kept_kl", shapes: [][]int{{5, 7}}, ints: [][]int32{{3, 5, 2, 5, 4}},
		build: func(in []*G.Node) (*G.Node, error) {
			return apply[float64](&policyKernel[float64]{side: side}, in...)
		}})
}

// TestPolicyHeadKeptKLTerm: the term is Σ w·grpo.ExactKL over each set (KL 0 where the weight is 0 and at a
// single kept id), and the float32 head gives the float64 head's loss and gradient to float32 precision.
func TestPolicyHeadKeptKLTerm(t *testing.T) {
	const N, V = 5, 7
	logits := make([]float64, N*V)
	for i := range logits {
		logits[i] = math.Sin(float64(3*i+1)) * 1.5
	}
	ids := []int32{3, 5, 2, 5, 4}
	side64 := keptKLSide()
	k64 := &policyKernel[float64]{side: side64, ids: ids, N: N, V: V, prob: make([]float64, N*V), logp: make([]float64, N)}
	var out64 [1]float64
	if err := k64.Forward([][]float64{logits, nil}, out64[:]); err != nil {
		t.Fatal(err)
	}
	// position 0 by hand through grpo.ExactKL: set {1 3 6}
	z := []float64{logits[1] / 0.7, logits[3] / 0.7, logits[6] / 0.7}
	want0, _ := grpo.ExactKL(z, []float64{-1.2, -0.7, -2.0}, make([]float64, 3))
	kl := side64.KeptKL.KL
	if math.Abs(kl[0]-want0) > 1e-12 || kl[3] != 0 || math.Abs(kl[4]) > 1e-15 || !(kl[1] > 0) || !(kl[2] > 0) {
		t.Fatalf("KL per position %v (want position 0 = %v, position 3 = 0 skipped, position 4 = 0 single id)", kl, want0)
	}
	var sum float64
	for n, w := range side64.KeptKL.Weights {
		sum += w * kl[n]
	}
	if math.Abs(side64.KeptKL.Loss-sum) > 1e-12 {
		t.Fatalf("term %v, want Σ w·KL = %v", side64.KeptKL.Loss, sum)
	}
	din64 := make([]float64, N*V)
	if err := k64.Backward([][]float64{logits, nil}, out64[:], []float64{1}, [][]float64{din64, nil}); err != nil {
		t.Fatal(err)
	}

	logits32 := make([]float32, N*V)
	for i, v := range logits {
		logits32[i] = float32(v)
	}
	side32 := keptKLSide()
	k32 := &policyKernel[float32]{side: side32, ids: ids, N: N, V: V, prob: make([]float32, N*V), logp: make([]float64, N)}
	var out32 [1]float32
	if err := k32.Forward([][]float32{logits32, nil}, out32[:]); err != nil {
		t.Fatal(err)
	}
	din32 := make([]float32, N*V)
	if err := k32.Backward([][]float32{logits32, nil}, out32[:], []float32{1}, [][]float32{din32, nil}); err != nil {
		t.Fatal(err)
	}
	if math.Abs(float64(out32[0])-out64[0]) > 1e-5*math.Max(1, math.Abs(out64[0])) {
		t.Errorf("float32 loss %v, float64 %v", out32[0], out64[0])
	}
	for i := range din64 {
		if math.Abs(float64(din32[i])-din64[i]) > 1e-5 {
			t.Errorf("gradient %d: float32 %v, float64 %v", i, din32[i], din64[i])
		}
	}
}

// TestPolicyHeadKeptKLRefused: teacher log-probabilities that do not cover a weighted position's set.
func TestPolicyHeadKeptKLRefused(t *testing.T) {
	cases := []struct {
		name   string
		modify func(*KeptKL)
		want   string
	}{
		{"whole vocabulary short", func(k *KeptKL) { k.TeacherOffsets = []int32{0, 3, 9, 11, 13, 14}; k.TeacherLogp = k.TeacherLogp[:14] },
			"position 1: 6 teacher log-probabilities (offsets 3..9) for a set of 7 ids"},
		{"offsets end", func(k *KeptKL) { k.TeacherLogp = k.TeacherLogp[:14] }, "teacher offsets span 0..15, 14 log-probabilities"},
		{"weights", func(k *KeptKL) { k.Weights = k.Weights[:4] }, "4 weights"},
		{"no divergence", func(k *KeptKL) { k.Divergence = nil }, "without a divergence function"},
	}
	for _, c := range cases {
		side := keptKLSide()
		c.modify(side.KeptKL)
		k := &policyKernel[float64]{side: side, ids: []int32{3, 5, 2, 5, 4}, N: 5, V: 7, prob: make([]float64, 35), logp: make([]float64, 5)}
		var out [1]float64
		err := k.Forward([][]float64{make([]float64, 35), nil}, out[:])
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want %q", c.name, err, c.want)
		}
	}
}

// BenchmarkPolicyHeadKeptKL: the policy head's forward and backward on B 16 × T 256 positions of a
// 300-token vocabulary with the whole vocabulary as every set (top_p 1, the costliest case), without the
// exact-KL term (sampled), with it at every position (exact_all), and at one position in 7 (exact_1in7: about
// the share of completion tokens in the specialists recipe's distill graph, 63 of 448): report the ratios in
// one run, of cpu-ms/op (the process's CPU time per operation; the head runs on one core) where other work
// shares the machine.
func BenchmarkPolicyHeadKeptKL(b *testing.B) {
	const N, V = 16 * 256, 300
	logits := make([]float32, N*V)
	for i := range logits {
		logits[i] = float32(math.Sin(float64(i)*0.37)) * 2
	}
	ids := make([]int32, N)
	for n := range ids {
		ids[n] = int32(n * 7 % V)
	}
	logq := make([]float64, N*V)
	offs := make([]int32, N+1)
	weights, sparse := make([]float64, N), make([]float64, N)
	for n := range N {
		if n%7 == 0 {
			sparse[n] = 7.0 / N
		}
		for v := range V {
			logq[n*V+v] = -math.Log(V) + 0.1*math.Cos(float64(n+v))
		}
		offs[n+1] = int32((n + 1) * V)
		weights[n] = 1.0 / N
	}
	dlogp := make([]float64, N)
	for _, c := range []struct {
		name string
		w    []float64
	}{{"sampled", nil}, {"exact_all", weights}, {"exact_1in7", sparse}} {
		b.Run(c.name, func(b *testing.B) {
			side := &PolicySide{Loss: func(lp []float64) (float64, []float64, error) {
				for i := range dlogp {
					dlogp[i] = 1.0 / N
				}
				return 0, dlogp, nil
			}}
			if c.w != nil {
				side.KeptKL = &KeptKL{Weights: c.w, TeacherOffsets: offs, TeacherLogp: logq, Divergence: grpo.ExactKL}
			}
			k := &policyKernel[float32]{side: side, ids: ids, N: N, V: V, prob: make([]float32, N*V), logp: make([]float64, N)}
			din := make([]float32, N*V)
			var out [1]float32
			cpu0 := cputime.Process()
			for b.Loop() {
				if err := k.Forward([][]float32{logits, nil}, out[:]); err != nil {
					b.Fatal(err)
				}
				clear(din)
				if err := k.Backward([][]float32{logits, nil}, out[:], []float32{1}, [][]float32{din, nil}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cputime.Process()-cpu0)/1e6/float64(b.N), "cpu-ms/op")
		})
	}
}

// TestGradWholeNetworkPolicyKeptKL: float64 finite differences of the whole network's loss with the policy
// head, a policy loss on the log-probabilities and the exact-KL term over kept sets of 1–4 ids and the whole
// vocabulary, with respect to sampled elements of every parameter (the end-to-end chain of policy_kl.go's
// gradient through the network).
func TestGradWholeNetworkPolicyKeptKL(t *testing.T) {
	cfg := tinyModel()
	p := NewParams(cfg)
	p.Init(3)
	rng := rand.New(rand.NewPCG(21, 22))
	params := make([][]float64, len(p.Data))
	for i, d := range p.Data {
		params[i] = make([]float64, len(d))
		for j, v := range d {
			params[i][j] = float64(v)*10 + rng.NormFloat64()*0.05
		}
	}
	const B, T = 2, 5
	V := cfg.VocabSize
	g, err := NewGraph[float64](cfg, params, GraphOptions{B: B, T: T, Head: "policy"})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	in := StepInput{Tokens: []int32{256, 72, 105, 33, 10, 256, 65, 66, 258, 258}, Targets: []int32{72, 105, 33, 10, 257, 65, 66, 257, 0, 0},
		Weights: []float32{1, 1, 1, 1, 1, 1, 1, 1, 0, 0}, Lengths: []int32{5, 3}, Scale: 1}
	// kept sets per position: {72 100 200}, whole, {10 33}, {10 11 12 13}, whole, {65 70}, whole, {257}, and
	// the two padded positions whole (weight 0)
	sets := [][]int32{{72, 100, 200}, nil, {10, 33}, {10, 11, 12, 13}, nil, {65, 70}, nil, {257}, nil, nil}
	side := g.Policy
	side.Temperature = 0.8
	side.KeptOffsets = []int32{0}
	kl := &KeptKL{TeacherOffsets: []int32{0}, Divergence: grpo.ExactKL, Weights: []float64{0.5, 0.25, 1, 0, 0.75, 0.5, 0.125, 1, 0, 0}}
	for _, set := range sets {
		side.KeptIDs = append(side.KeptIDs, set...)
		side.KeptOffsets = append(side.KeptOffsets, int32(len(side.KeptIDs)))
		size := len(set)
		if size == 0 {
			size = V
		}
		for range size {
			kl.TeacherLogp = append(kl.TeacherLogp, -math.Log(float64(size))+0.7*rng.NormFloat64())
		}
		kl.TeacherOffsets = append(kl.TeacherOffsets, int32(len(kl.TeacherLogp)))
	}
	side.KeptKL = kl
	dlogp := make([]float64, B*T)
	side.Loss = func(logp []float64) (float64, []float64, error) {
		var l float64
		for n := range logp {
			dlogp[n] = 0
			if in.Weights[n] != 0 {
				c := 0.2 * float64(n+1)
				l += c * logp[n]
				dlogp[n] = c
			}
		}
		return l, dlogp, nil
	}
	if _, err := g.Run(in); err != nil {
		t.Fatal(err)
	}
	for _, r := range g.Routing {
		if r != nil {
			r.Forced = append([]int32(nil), r.Chosen...)
		}
	}
	loss := func() float64 {
		v, err := g.Run(in)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	loss()
	if !(kl.Loss > 0) {
		t.Fatalf("exact-KL term %v, want > 0", kl.Loss)
	}
	checkParamGradients(t, g, params, loss, [4]int{256, 72, 11, 200}, cfg.HiddenSize, rng) // rows in kept sets, and the whole vocabulary's
}

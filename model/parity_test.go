// Parity between the training graph (gorgonia, MHA mode, batched) and the inference engine (token-by-token
// decode, absorbed MQA mode, latent KV cache) on random weights and inputs, in float32.
package model

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/sparrow-rl/sparrow/configs"
)

func parityModel() configs.Model {
	m := configs.DefaultModel()
	m.HiddenSize, m.NumHiddenLayers = 64, 3
	m.QLoraRank, m.KVLoraRank, m.QKNopeHeadDim, m.QKRopeHeadDim, m.VHeadDim = 32, 16, 16, 8, 16
	m.IntermediateSize, m.MoEIntermediateSize = 96, 32
	m.InitializerRange = 0.08 // larger than the default so attention and routing are far from uniform
	return m
}

func TestTrainingInferenceParity(t *testing.T) {
	cfg := parityModel()
	p := NewParams(cfg)
	p.Init(42)
	// non-trivial correction biases, as after some balancing
	rng := rand.New(rand.NewPCG(1, 2))
	for l := 0; l < cfg.NumHiddenLayers; l++ {
		if b := p.Get(LayerPrefix(l) + "mlp.gate.e_score_correction_bias"); b != nil {
			for i := range b {
				b[i] = float32(rng.NormFloat64() * 0.01)
			}
		}
	}
	const B, T = 2, 24
	g, err := NewGraph[float32](cfg, p.Data, GraphOptions{B: B, T: T})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	in := StepInput{Tokens: make([]int32, B*T), Targets: make([]int32, B*T), Weights: make([]float32, B*T), Lengths: []int32{T, T - 5}, Scale: 1}
	for i := range in.Tokens {
		in.Tokens[i] = int32(rng.IntN(cfg.VocabSize))
		in.Targets[i] = int32(rng.IntN(cfg.VocabSize))
		in.Weights[i] = 1
	}
	if _, err := g.Run(in); err != nil {
		t.Fatal(err)
	}
	trainLogp := append([]float32(nil), g.LossSide.Logp...)
	K := cfg.NumExpertsPerTok
	trainIDs := make([][]int32, cfg.NumHiddenLayers)
	for l, r := range g.Routing {
		if r != nil {
			trainIDs[l] = append([]int32(nil), r.Chosen...)
		}
	}

	e := NewEngine(p)
	engineIDs := make([][]int32, cfg.NumHiddenLayers)
	for l := range engineIDs {
		if cfg.IsMoE(l) {
			engineIDs[l] = make([]int32, B*T*K)
		}
	}
	var maxDiff float64
	mismatches, ties := 0, 0
	for b := 0; b < B; b++ {
		s, err := e.NewSession(T)
		if err != nil {
			t.Fatal(err)
		}
		L := int(in.Lengths[b])
		for tt := 0; tt < L; tt++ {
			n := b*T + tt
			if err := s.Step(in.Tokens[n], nil); err != nil {
				t.Fatal(err)
			}
			lp := LogSoftmaxAt(s.Logits, in.Targets[n])
			maxDiff = math.Max(maxDiff, math.Abs(float64(lp-trainLogp[n])))
			for l, ids := range s.Experts {
				if ids == nil {
					continue
				}
				copy(engineIDs[l][n*K:], ids)
				if !sameSet(ids, trainIDs[l][n*K:(n+1)*K]) {
					if s.Margins[l] > 1e-5 {
						mismatches++
						t.Errorf("layer %d token %d: engine experts %v, training %v, margin %.3g", l, n, ids, trainIDs[l][n*K:(n+1)*K], s.Margins[l])
					} else {
						ties++
					}
				}
			}
		}
	}
	t.Logf("max |logp_train − logp_engine| = %.3g; expert-id mismatches at near-ties: %d", maxDiff, ties)
	if maxDiff > 1e-4 {
		t.Fatalf("logprob parity: max difference %.3g > 1e-4", maxDiff)
	}

	// With the engine's ids forced into the training forward, the logprobs match everywhere.
	for l, r := range g.Routing {
		if r != nil {
			r.Forced = engineIDs[l]
		}
	}
	if _, err := g.Run(in); err != nil {
		t.Fatal(err)
	}
	maxDiff = 0
	for b := 0; b < B; b++ {
		s, _ := e.NewSession(T)
		for tt := 0; tt < int(in.Lengths[b]); tt++ {
			n := b*T + tt
			if err := s.Step(in.Tokens[n], nil); err != nil {
				t.Fatal(err)
			}
			maxDiff = math.Max(maxDiff, math.Abs(float64(LogSoftmaxAt(s.Logits, in.Targets[n])-g.LossSide.Logp[n])))
		}
	}
	t.Logf("forced routes: max |logp_train − logp_engine| = %.3g", maxDiff)
	if maxDiff > 1e-4 {
		t.Fatalf("forced-route logprob parity: max difference %.3g > 1e-4", maxDiff)
	}
}

func sameSet(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		found := false
		for _, y := range b {
			found = found || x == y
		}
		if !found {
			return false
		}
	}
	return true
}

// DSA in the whole training graph: sparse attention with index_topk ≥ T equals dense attention; the LM loss
// gives the indexer no gradient and the indexer loss gives the backbone none; sparse training forward and
// sparse decoding agree on the selected keys and the log-probabilities.
package model

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/sparrow-rl/sparrow/configs"
)

func dsaTestModel() configs.Model {
	m := parityModel()
	m.IndexNHeads, m.IndexHeadDim, m.IndexTopk = 2, 12, 5
	return m
}

func to64(p *Params) [][]float64 {
	out := make([][]float64, len(p.Data))
	for i, d := range p.Data {
		out[i] = make([]float64, len(d))
		for j, v := range d {
			out[i][j] = float64(v)
		}
	}
	return out
}

func randomStep(cfg configs.Model, B, T int, lengths []int32, seed uint64) StepInput {
	rng := rand.New(rand.NewPCG(seed, 9))
	in := StepInput{Tokens: make([]int32, B*T), Targets: make([]int32, B*T), Weights: make([]float32, B*T), Lengths: lengths, Scale: 1.0 / float64(B*T)}
	for i := range in.Tokens {
		in.Tokens[i] = int32(rng.IntN(cfg.VocabSize))
		in.Targets[i] = int32(rng.IntN(cfg.VocabSize))
		in.Weights[i] = 1
	}
	return in
}

func isIndexer(s Spec) bool { return strings.Contains(s.Name, ".indexer.") }

func TestDSASparseTopKAllEqualsDense(t *testing.T) {
	cfg := dsaTestModel()
	p := NewParams(cfg)
	p.Init(3)
	const B, T = 2, 10
	in := randomStep(cfg, B, T, []int32{T, T - 3}, 1)
	dense, err := NewGraph[float64](cfg, to64(p), GraphOptions{B: B, T: T})
	if err != nil {
		t.Fatal(err)
	}
	defer dense.Close()
	sparse, err := NewGraph[float64](cfg, to64(p), GraphOptions{B: B, T: T, DSA: &DSAOptions{Sparse: true, TopK: T}})
	if err != nil {
		t.Fatal(err)
	}
	defer sparse.Close()
	sparse.DSA.LossScale = 0
	ld, err := dense.Run(in)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := sparse.Run(in)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(ld-ls) > 1e-10 {
		t.Fatalf("loss: dense %v, sparse with k=T %v", ld, ls)
	}
	for i, s := range dense.Specs {
		gd, gs := dense.Grad(i), sparse.Grad(i)
		if gd == nil {
			continue
		}
		for j := range gd {
			if math.Abs(gd[j]-gs[j]) > 1e-10*math.Max(1, math.Abs(gd[j])) {
				t.Fatalf("%s[%d]: dense grad %v, sparse %v", s.Name, j, gd[j], gs[j])
			}
		}
	}
}

func TestDSAGradientIsolation(t *testing.T) {
	cfg := dsaTestModel()
	p := NewParams(cfg)
	p.Init(4)
	const B, T = 2, 10
	all := func(s Spec) bool { return s.Role != Buffer }
	for _, mode := range []struct {
		name   string
		sparse bool
	}{{"dense", false}, {"sparse", true}} {
		g, err := NewGraph[float64](cfg, to64(p), GraphOptions{B: B, T: T, Trainable: all, DSA: &DSAOptions{Sparse: mode.sparse}})
		if err != nil {
			t.Fatal(err)
		}
		cases := []struct {
			name              string
			lmWeight, klScale float64
			zero              func(Spec) bool // tensors whose gradient must be exactly zero
		}{
			{"lm_only", 1, 0, isIndexer},
			{"indexer_only", 0, 1, func(s Spec) bool { return !isIndexer(s) }},
		}
		for _, c := range cases {
			in := randomStep(cfg, B, T, []int32{T, T - 2}, 2)
			for i := range in.Weights {
				in.Weights[i] = float32(c.lmWeight)
			}
			g.DSA.LossScale = c.klScale
			if _, err := g.Run(in); err != nil {
				t.Fatal(err)
			}
			var zeroNorm, otherNorm float64
			for i, s := range g.Specs {
				gr := g.Grad(i)
				for _, v := range gr {
					if c.zero(s) {
						zeroNorm += v * v
					} else {
						otherNorm += v * v
					}
				}
			}
			if zeroNorm != 0 || otherNorm == 0 {
				t.Errorf("%s/%s: squared gradient norm %v where it must be 0, %v elsewhere (must be > 0)", mode.name, c.name, zeroNorm, otherNorm)
			}
		}
		g.Close()
	}
}

func TestDSATrainingDecodeParity(t *testing.T) {
	cfg := dsaTestModel()
	p := NewParams(cfg)
	p.Init(5)
	const B, T = 2, 24
	in := randomStep(cfg, B, T, []int32{T, T - 5}, 3)
	g, err := NewGraph[float32](cfg, p.Data, GraphOptions{B: B, T: T, DSA: &DSAOptions{Sparse: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if _, err := g.Run(in); err != nil {
		t.Fatal(err)
	}
	trainLogp := append([]float32(nil), g.LossSide.Logp...)
	K := g.DSA.TopK
	e := NewEngine(p)
	var maxDiff float64
	selMismatch, rows := 0, 0
	for b := 0; b < B; b++ {
		s, err := e.NewDSASession(T, K)
		if err != nil {
			t.Fatal(err)
		}
		for tt := 0; tt < int(in.Lengths[b]); tt++ {
			n := b*T + tt
			forcedExp := make([][]int32, cfg.NumHiddenLayers)
			for l, r := range g.Routing {
				if r != nil {
					forcedExp[l] = r.Chosen[n*cfg.NumExpertsPerTok : (n+1)*cfg.NumExpertsPerTok]
				}
			}
			if err := s.Step(in.Tokens[n], forcedExp, nil); err != nil {
				t.Fatal(err)
			}
			for l, ly := range g.DSA.Layers {
				rows++
				want := ly.Sel[n*K : (n+1)*K]
				for i := range want {
					if want[i] != s.Selected[l][i] {
						selMismatch++
						t.Logf("layer %d query %d: training selected %v, decode %v", l, n, want, s.Selected[l])
						break
					}
				}
			}
			lp := LogSoftmaxAt(s.Logits, in.Targets[n])
			maxDiff = math.Max(maxDiff, math.Abs(float64(lp-trainLogp[n])))
		}
	}
	if selMismatch > 0 {
		t.Fatalf("%d of %d (layer, query) selections differ between training and decode", selMismatch, rows)
	}
	if maxDiff > 1e-4 {
		t.Fatalf("max |logp(train) − logp(decode)| = %g > 1e-4", maxDiff)
	}
	t.Logf("%d selections identical; max logprob difference %.2g", rows, maxDiff)
}

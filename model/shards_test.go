// shards_test.go checks the data-parallel shards of the training graph (shards.go) against one graph over all
// rows in float64: the same loss, gradients, log p(target), expert choices, loads and balance loss, with
// uneven shards, padded and empty rows, packed documents, and forced experts; and the options it refuses.
// The shards' gradients are also checked against finite differences by TestGradWholeNetwork.

package model

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/sparrow-rl/sparrow/internal/kernels"
)

func TestShardsEqualOneGraph(t *testing.T) {
	cfg := tinyModel()
	cfg.AuxLossAlpha = 0.01
	p := NewParams(cfg)
	p.Init(9)
	rng := rand.New(rand.NewPCG(21, 22))
	data := make([][]float64, len(p.Data))
	for i, d := range p.Data {
		data[i] = make([]float64, len(d))
		for j, v := range d {
			data[i][j] = float64(v)*10 + rng.NormFloat64()*0.05
		}
	}
	const B, T = 5, 6
	in := StepInput{Tokens: make([]int32, B*T), Targets: make([]int32, B*T), Weights: make([]float32, B*T),
		Lengths: []int32{6, 4, 0, 6, 2}, Scale: 1.0 / 18, DocStart: make([]int32, B*T)}
	for n := range in.Tokens {
		in.Tokens[n], in.Targets[n] = int32(rng.IntN(cfg.VocabSize)), int32(rng.IntN(cfg.VocabSize))
		if n%T < int(in.Lengths[n/T]) {
			in.Weights[n] = 1
		}
	}
	for t := 3; t < T; t++ { // row 3 packs two documents: positions 3.. start a new one
		in.DocStart[3*T+t] = 3
	}
	type result struct {
		loss, aux float64
		grads     map[int][]float64
		logp      []float32
		chosen    [][]int32
		load      [][]int
	}
	run := func(t *testing.T, g *Graph[float64], forced bool) result {
		for l, r := range g.Routing {
			if r != nil {
				r.AuxScale = 0.5
				r.Forced = nil
				if forced { // a fixed, non-selected assignment: each token's experts from its position
					r.Forced = make([]int32, len(r.Chosen))
					for i := range r.Forced {
						r.Forced[i] = int32((i*3 + l + i/cfg.NumExpertsPerTok) % cfg.NRoutedExperts)
					}
					for n := 0; n < B*T; n++ {
						if a := r.Forced[2*n:]; a[0] == a[1] {
							a[1] = (a[1] + 1) % int32(cfg.NRoutedExperts)
						}
					}
				}
			}
		}
		loss, err := g.Run(in)
		if err != nil {
			t.Fatal(err)
		}
		res := result{loss: loss, aux: g.AuxLoss(), grads: map[int][]float64{}, logp: append([]float32(nil), g.LossSide.Logp...)}
		for i := range g.Specs {
			if gr := g.Grad(i); gr != nil {
				res.grads[i] = append([]float64(nil), gr...)
			}
		}
		for _, r := range g.Routing {
			if r != nil {
				res.chosen = append(res.chosen, append([]int32(nil), r.Chosen...))
				res.load = append(res.load, append([]int(nil), r.Load...))
			}
		}
		return res
	}
	close := func(a, b float64) bool { return math.Abs(a-b) <= 1e-12*math.Max(1, math.Abs(b)) }
	for _, c := range []struct {
		name    string
		shards  int
		threads int
		forced  bool
	}{
		{"2 shards", 2, 2, false},
		{"3 uneven shards", 3, 2, false},
		{"2 shards forced experts", 2, 2, true},
		{"2 shards one worker", 2, 1, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			prev := kernels.Threads()
			kernels.SetThreads(c.threads)
			defer kernels.SetThreads(prev)
			one, err := NewGraph[float64](cfg, data, GraphOptions{B: B, T: T, Shards: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer one.Close()
			sh, err := NewGraph[float64](cfg, data, GraphOptions{B: B, T: T, Shards: c.shards})
			if err != nil {
				t.Fatal(err)
			}
			defer sh.Close()
			want := run(t, one, c.forced)
			for rep := 0; rep < 2; rep++ { // twice: the second run starts from the first one's buffers
				got := run(t, sh, c.forced)
				if !close(got.loss, want.loss) || !close(got.aux, want.aux) || want.aux == 0 {
					t.Fatalf("run %d: loss %.15g aux %.15g, one graph %.15g aux %.15g", rep, got.loss, got.aux, want.loss, want.aux)
				}
				if len(got.grads) != len(want.grads) {
					t.Fatalf("%d trained tensors, one graph %d", len(got.grads), len(want.grads))
				}
				for i, w := range want.grads {
					for j := range w {
						if !close(got.grads[i][j], w[j]) {
							t.Fatalf("run %d: %s[%d] = %.15g, one graph %.15g", rep, sh.Specs[i].Name, j, got.grads[i][j], w[j])
						}
					}
				}
				for n := range want.logp {
					if in.Weights[n] != 0 && math.Abs(float64(got.logp[n]-want.logp[n])) > 1e-6 {
						t.Fatalf("log p at %d: %g, one graph %g", n, got.logp[n], want.logp[n])
					}
				}
				for l := range want.chosen {
					for i := range want.chosen[l] {
						if got.chosen[l][i] != want.chosen[l][i] {
							t.Fatalf("MoE layer %d slot %d: expert %d, one graph %d", l, i, got.chosen[l][i], want.chosen[l][i])
						}
					}
					for e := range want.load[l] {
						if got.load[l][e] != want.load[l][e] {
							t.Fatalf("MoE layer %d: load %v, one graph %v", l, got.load[l], want.load[l])
						}
					}
				}
			}
		})
	}
}

// TestShardsRefuseBadSideInputs: forced experts and allowed-key sets of the wrong length are errors, as in
// one graph, not a panic while slicing them per shard.
func TestShardsRefuseBadSideInputs(t *testing.T) {
	cfg := tinyModel()
	p := NewParams(cfg)
	p.Init(1)
	const B, T = 2, 4
	in := StepInput{Tokens: make([]int32, B*T), Targets: make([]int32, B*T), Weights: make([]float32, B*T), Lengths: []int32{T, T}, Scale: 1}
	for _, c := range []struct {
		name string
		set  func(g *Graph[float32])
		want string
	}{
		{"forced experts", func(g *Graph[float32]) { g.Routing[1].Forced = make([]int32, 3) }, "3 forced expert ids"},
		{"allowed keys", func(g *Graph[float32]) { g.Masks[0].Allowed, g.Masks[0].K = make([]int32, 5), 2 }, "allowed-key set has 5 entries"},
	} {
		t.Run(c.name, func(t *testing.T) {
			g, err := NewGraph[float32](cfg, p.Data, GraphOptions{B: B, T: T, Shards: 2})
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			c.set(g)
			if _, err := g.Run(in); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}

func TestShardOptions(t *testing.T) {
	cfg := tinyModel()
	p := NewParams(cfg)
	for _, c := range []struct {
		name    string
		opt     GraphOptions
		err     string // "" = builds
		sharded bool
	}{
		{"default lm shards", GraphOptions{B: 2, T: 4}, "", true},
		{"one row stays whole", GraphOptions{B: 1, T: 4}, "", false},
		{"policy head stays whole", GraphOptions{B: 2, T: 4, Head: "policy"}, "", false},
		{"DSA stays whole", GraphOptions{B: 2, T: 4, DSA: &DSAOptions{TopK: 2}}, "", false},
		{"negative", GraphOptions{B: 2, T: 4, Shards: -1}, "graph shards -1", false},
		{"more shards than rows: one per row", GraphOptions{B: 2, T: 4, Shards: 3}, "", true},
		{"policy head refused", GraphOptions{B: 2, T: 4, Head: "policy", Shards: 2}, "only the lm head", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			g, err := NewGraph[float32](cfg, p.Data, c.opt)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one containing %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			if (g.shards != nil) != c.sharded {
				t.Fatalf("sharded %v, want %v", g.shards != nil, c.sharded)
			}
		})
	}
}

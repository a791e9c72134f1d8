// Float64 finite-difference checks of the DSA ops (indexer scores wrt inputs and weights, MQA-mode sparse
// attention wrt q, c^KV, kvA and kv_b_proj, both indexer losses wrt the scores) and a test that the stop-gradient op passes no gradient.
package model

import (
	"math"
	"math/rand/v2"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/sparrow-rl/sparrow/dsa"
	"github.com/sparrow-rl/sparrow/internal/kernels"
)

// constNode adds a fixed float64 tensor to the graph of n.
func constNode(n *G.Node, name string, shape []int, v []float64) *G.Node {
	return G.NewTensor(n.Graph(), tensor.Float64, len(shape), G.WithShape(shape...), G.WithName(name),
		G.WithValue(tensor.New(tensor.WithShape(shape...), tensor.WithBacking(v))))
}

// testSelection draws a causal selection of k slots per query (some rows short, some slots unused).
func testSelection(B, T, K int, lengths []int32, seed uint64) []int32 {
	rng := rand.New(rand.NewPCG(seed, 3))
	sel := make([]int32, B*T*K)
	for n := 0; n < B*T; n++ {
		b, t := n/T, n%T
		c := dsa.Candidates(t, int(lengths[b]))
		perm := rng.Perm(c)
		for i := 0; i < K; i++ {
			if i < len(perm) && !(i == K-1 && n%3 == 0) {
				sel[n*K+i] = int32(perm[i])
			} else {
				sel[n*K+i] = -1
			}
		}
	}
	return sel
}

func TestGradDSAOps(t *testing.T) {
	const B, T, K = 2, 6, 3
	const D, QR, IH, IDh, Dr = 6, 5, 2, 6, 4
	rope := kernels.NewRopeTable(Dr, 8, 10000)
	lengths := []int32{T, T - 2}
	N := B * T
	dims := mlaDims{H: 2, Dn: 3, Dr: Dr, Dv: 3, KVr: 4}
	sel := testSelection(B, T, K, lengths, 1)
	selF := make([]float64, len(sel))
	for i, s := range sel {
		selF[i] = float64(s)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	// a target distribution per query over its candidates (dense) or selected slots (sparse)
	dense := make([]float64, N*T)
	sparse := make([]float64, N*K)
	for n := 0; n < N; n++ {
		tt := n % T
		var s float64
		for j := 0; j <= tt; j++ {
			dense[n*T+j] = rng.Float64()
			s += dense[n*T+j]
		}
		for j := 0; j <= tt; j++ {
			dense[n*T+j] /= s
		}
		s = 0
		for i := 0; i < K; i++ {
			if sel[n*K+i] >= 0 {
				sparse[n*K+i] = rng.Float64()
				s += sparse[n*K+i]
			}
		}
		for i := 0; i < K; i++ {
			sparse[n*K+i] /= s
		}
	}
	side := &DSASide{LossScale: 0.7, Layers: []*DSALayer{{Sel: sel}}}
	cases := []gradCase{
		{name: "dsa_indexer", shapes: [][]int{{N, D}, {N, QR}, {IH * IDh, QR}, {IDh, D}, {IDh}, {IDh}, {IH, D}}, build: func(in []*G.Node) (*G.Node, error) {
			ix, err := dsa.NewIndexer[float64](dsa.IndexerDims{D: D, QR: QR, H: IH, Dh: IDh, Dr: Dr}, B, T, rope)
			if err != nil {
				return nil, err
			}
			return apply[float64](&indexerKernel[float64]{ix: ix}, in...)
		}},
		{name: "dsa_sparse_attention", shapes: [][]int{{N, dims.H * (dims.Dn + dims.Dr)}, {N, dims.KVr}, {N, dims.KVr + dims.Dr}, {dims.H * (dims.Dn + dims.Dv), dims.KVr}}, ints: [][]int32{lengths},
			build: func(in []*G.Node) (*G.Node, error) {
				sa, err := dsa.NewSparseMQA[float64](dsa.MLADims{H: dims.H, Dn: dims.Dn, Dr: dims.Dr, Dv: dims.Dv, KVr: dims.KVr}, B, T, K, rope)
				if err != nil {
					return nil, err
				}
				return apply[float64](&sparseAttnKernel[float64]{a: sa}, in[0], in[1], in[2], in[3], constNode(in[0], "sel", []int{N, K}, selF), in[4])
			}},
		{name: "dsa_kl_dense", shapes: [][]int{{N, T}}, ints: [][]int32{lengths}, build: func(in []*G.Node) (*G.Node, error) {
			k := &klKernel[float64]{B: B, T: T, K: K, side: side, layer: side.Layers[0], recall: true}
			return apply[float64](k, in[0], constNode(in[0], "p", []int{N, T}, dense), in[1])
		}},
		{name: "dsa_kl_sparse", shapes: [][]int{{N, T}}, ints: [][]int32{lengths}, build: func(in []*G.Node) (*G.Node, error) {
			k := &klKernel[float64]{B: B, T: T, K: K, sparse: true, side: side, layer: side.Layers[0]}
			return apply[float64](k, in[0], constNode(in[0], "p", []int{N, K}, sparse), constNode(in[0], "sel", []int{N, K}, selF), in[1])
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { runGradCase(t, c) })
	}
}

// TestStopGradient: y = Σ x⊙r + Σ stop(x)⊙r2 must give ∂y/∂x = r exactly (nothing through the stop).
func TestStopGradient(t *testing.T) {
	g := G.NewGraph()
	xv := []float64{1, -2, 3, 0.5, 4, -1}
	r := []float64{0.3, 0.1, -0.7, 2, 1, -0.2}
	r2 := []float64{5, 6, 7, 8, 9, 10}
	x := G.NewMatrix(g, tensor.Float64, G.WithShape(2, 3), G.WithName("x"), G.WithValue(tensor.New(tensor.WithShape(2, 3), tensor.WithBacking(xv))))
	s, err := apply[float64](&stopGradKernel[float64]{}, x)
	if err != nil {
		t.Fatal(err)
	}
	y := must1(G.Add(must1(G.Sum(must1(G.HadamardProd(x, constNode(x, "r", []int{2, 3}, r))))),
		must1(G.Sum(must1(G.HadamardProd(s, constNode(x, "r2", []int{2, 3}, r2)))))))
	grads, err := G.Grad(y, x)
	if err != nil {
		t.Fatal(err)
	}
	vm := G.NewTapeMachine(g)
	defer vm.Close()
	if err := vm.RunAll(); err != nil {
		t.Fatal(err)
	}
	got := grads[0].Value().Data().([]float64)
	for i := range r {
		if got[i] != r[i] {
			t.Fatalf("∂y/∂x[%d] = %v, want %v (the stop-gradient path leaked %v)", i, got[i], r[i], got[i]-r[i])
		}
	}
	out := make([]float64, len(xv))
	if err := (&stopGradKernel[float64]{}).Forward([][]float64{xv}, out); err != nil || out[2] != 3 || out[5] != -1 {
		t.Fatalf("stop_gradient forward: %v %v, want the input %v", out, err, xv)
	}
}

// TestKLGolden checks the KL and recall of a hand-computed case: one query over 2 candidates.
func TestKLGolden(t *testing.T) {
	// B=1, T=2; row 1: p = (0.25, 0.75), I = (0, ln 3) → softmax = (0.25, 0.75): KL = 0.
	// row 0: p = (1), one candidate: KL = 0. Then I = (0, 0): KL = 0.25·ln(0.5) + 0.75·ln(1.5) = 0.130812...
	p := []float64{1, 0, 0.25, 0.75}
	cases := []struct {
		name   string
		scores []float64
		want   float64
		grad   []float64
	}{
		{"equal", []float64{0, 0, 0, math.Log(3)}, 0, []float64{0, 0, 0, 0}},
		{"uniform", []float64{0, 0, 0, 0}, 0.25*math.Log(0.5) + 0.75*math.Log(1.5), []float64{0, 0, 0.25, -0.25}},
	}
	for _, c := range cases {
		d := make([]float64, 4)
		sum, rows := dsa.KLDense(c.scores, p, 1, 2, []int32{2}, 1, d, nil)
		if rows != 2 || math.Abs(sum-c.want) > 1e-12 {
			t.Fatalf("%s: KL %v over %d rows, want %v over 2", c.name, sum, rows, c.want)
		}
		for i := range d {
			if math.Abs(d[i]-c.grad[i]) > 1e-12 {
				t.Fatalf("%s: grad %v, want %v", c.name, d, c.grad)
			}
		}
	}
}

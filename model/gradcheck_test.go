// Float64 finite-difference gradient checks of every fused kernel and of composed layers: the gradient that
// gorgonia's backward pass (our backward kernels) produces must match central differences of the forward pass.
package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/internal/kernels"
)

// gradCase builds a graph over float64 inputs and returns the node to differentiate.
type gradCase struct {
	name   string
	shapes [][]int // float64 inputs (all differentiated unless listed in frozen)
	frozen map[int]bool
	ints   [][]int32 // Int32 inputs appended after the float inputs
	build  func(in []*G.Node) (*G.Node, error)
	tol    float64
}

func randSlice(rng *rand.Rand, n int, scale float64) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[i] = rng.NormFloat64() * scale
	}
	return s
}

func runGradCase(t *testing.T, c gradCase) {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, uint64(len(c.name))))
	g := G.NewGraph()
	var nodes []*G.Node
	var vals [][]float64
	for i, s := range c.shapes {
		n := 1
		for _, d := range s {
			n *= d
		}
		v := randSlice(rng, n, 0.5)
		vals = append(vals, v)
		tv := tensor.New(tensor.WithShape(s...), tensor.WithBacking(v))
		nodes = append(nodes, G.NewTensor(g, tensor.Float64, len(s), G.WithShape(s...), G.WithValue(tv), G.WithName(string(rune('a'+i)))))
	}
	for i, iv := range c.ints {
		tv := tensor.New(tensor.WithShape(len(iv)), tensor.WithBacking(iv))
		nodes = append(nodes, G.NewVector(g, tensor.Int32, G.WithShape(len(iv)), G.WithValue(tv), G.WithName(string(rune('A'+i)))))
	}
	out, err := c.build(nodes)
	if err != nil {
		t.Fatalf("%s: build: %v", c.name, err)
	}
	obj := out
	var rv []float64
	if !out.IsScalar() {
		n := out.Shape().TotalSize()
		rv = randSlice(rng, n, 1)
		r := G.NewTensor(g, tensor.Float64, out.Dims(), G.WithShape(out.Shape()...), G.WithValue(tensor.New(tensor.WithShape(out.Shape()...), tensor.WithBacking(rv))), G.WithName("R"))
		if obj, err = G.Sum(must1(G.HadamardProd(out, r))); err != nil {
			t.Fatal(err)
		}
	}
	var wrt G.Nodes
	var wrtIdx []int
	for i := range c.shapes {
		if !c.frozen[i] {
			wrt = append(wrt, nodes[i])
			wrtIdx = append(wrtIdx, i)
		}
	}
	grads, err := G.Grad(obj, wrt...)
	if err != nil {
		t.Fatalf("%s: grad: %v", c.name, err)
	}
	vm := G.NewTapeMachine(g)
	defer vm.Close()
	eval := func() float64 {
		if err := vm.RunAll(); err != nil {
			t.Fatalf("%s: run: %v", c.name, err)
		}
		v := obj.Value().Data().(float64)
		vm.Reset()
		return v
	}
	if err := vm.RunAll(); err != nil {
		t.Fatalf("%s: run: %v", c.name, err)
	}
	analytic := make([][]float64, len(grads))
	for k, gn := range grads {
		analytic[k] = append([]float64(nil), gn.Value().Data().([]float64)...)
	}
	vm.Reset()
	tol := c.tol
	if tol == 0 {
		tol = 1e-6
	}
	const h = 1e-6
	for k, i := range wrtIdx {
		v := vals[i]
		for j := range v {
			orig := v[j]
			v[j] = orig + h
			fp := eval()
			v[j] = orig - h
			fm := eval()
			v[j] = orig
			num := (fp - fm) / (2 * h)
			got := analytic[k][j]
			if math.Abs(num-got) > tol*math.Max(1, math.Abs(num)) {
				t.Fatalf("%s: input %d element %d: backward %.10g, finite difference %.10g", c.name, i, j, got, num)
			}
		}
	}
}

func must1(n *G.Node, err error) *G.Node {
	if err != nil {
		panic(err)
	}
	return n
}

func TestGradFusedKernels(t *testing.T) {
	const N, D = 6, 5
	rope := kernels.NewRopeTable(4, 8, 10000)
	cases := []gradCase{
		{name: "linear", shapes: [][]int{{N, D}, {3, D}}, build: func(in []*G.Node) (*G.Node, error) {
			return apply[float64](&linearKernel[float64]{name: "lin", diffX: true, diffW: true}, in[0], in[1])
		}},
		{name: "rmsnorm", shapes: [][]int{{N, D}, {D}}, build: func(in []*G.Node) (*G.Node, error) {
			return apply[float64](&rmsNormKernel[float64]{name: "norm", Eps: 1e-6, diffX: true}, in[0], in[1])
		}},
		{name: "rmsnorm_columns", shapes: [][]int{{N, D + 3}, {D}}, build: func(in []*G.Node) (*G.Node, error) {
			return apply[float64](&rmsNormKernel[float64]{name: "norm", Col0: 0, W: D, Eps: 1e-6, diffX: true}, in[0], in[1])
		}},
		{name: "residual", shapes: [][]int{{N, D}, {N, D}}, build: func(in []*G.Node) (*G.Node, error) {
			return apply[float64](addKernel[float64]{}, in[0], in[1])
		}},
		{name: "swiglu_mlp", shapes: [][]int{{N, D}, {7, D}, {7, D}, {D, 7}}, build: func(in []*G.Node) (*G.Node, error) {
			return apply[float64](&mlpKernel[float64]{name: "mlp"}, in...)
		}},
		{name: "embedding", shapes: [][]int{{9, D}}, ints: [][]int32{{3, 1, 3, 8, 0, 3}}, build: func(in []*G.Node) (*G.Node, error) {
			return apply[float64](&embedKernel[float64]{}, in...)
		}},
		{name: "cross_entropy", shapes: [][]int{{N, 9}, {N}}, frozen: map[int]bool{1: true}, ints: [][]int32{{3, 1, 3, 8, 0, 3}},
			build: func(in []*G.Node) (*G.Node, error) {
				side := &LossSide{Scale: 0.25}
				return apply[float64](&crossEntropyKernel[float64]{t: side}, in[0], in[2], in[1])
			}},
		{name: "mla_attention", shapes: [][]int{{2 * 4, 3 * 6}, {2 * 4, 3 * (2 + 3)}, {2 * 4, 5 + 4}}, ints: [][]int32{{4, 3}},
			build: func(in []*G.Node) (*G.Node, error) {
				k := newAttnKernel[float64](2, 4, mlaDims{H: 3, Dn: 2, Dr: 4, Dv: 3, KVr: 5}, rope, &AttnMask{})
				return apply[float64](k, in...)
			}},
		{name: "mla_attention_doc_masked", shapes: [][]int{{2 * 4, 2 * 6}, {2 * 4, 2 * 5}, {2 * 4, 3 + 4}}, ints: [][]int32{{4, 3}},
			build: func(in []*G.Node) (*G.Node, error) {
				// row 0: documents at 0 and 2; row 1: documents at 0 and 1 (its position 3 is padding)
				docStart := []int32{0, 0, 2, 2, 0, 1, 1, 0}
				k := newAttnKernel[float64](2, 4, mlaDims{H: 2, Dn: 2, Dr: 4, Dv: 3, KVr: 3}, rope, &AttnMask{DocStart: docStart})
				return apply[float64](k, in...)
			}},
		{name: "mla_attention_allowed_keys", shapes: [][]int{{2 * 4, 2 * 6}, {2 * 4, 2 * 5}, {2 * 4, 3 + 4}}, ints: [][]int32{{4, 4}},
			build: func(in []*G.Node) (*G.Node, error) {
				allowed := []int32{0, -1, 1, 0, 2, 1, 0, 3, 0, -1, 0, 1, 1, 2, 3, 2}
				k := newAttnKernel[float64](2, 4, mlaDims{H: 2, Dn: 2, Dr: 4, Dv: 3, KVr: 3}, rope, &AttnMask{Allowed: allowed, K: 2})
				return apply[float64](k, in...)
			}},
	}
	// The causal row blocks (AttnBlock = 64 in the model) at sizes that split T = 4 unevenly, with padded
	// rows (c1 < r1), document masks and allowed-key sets.
	for _, blk := range []int{1, 3} {
		cases = append(cases,
			gradCase{name: fmt.Sprintf("mla_attention_block%d", blk), shapes: [][]int{{2 * 4, 3 * 6}, {2 * 4, 3 * (2 + 3)}, {2 * 4, 5 + 4}}, ints: [][]int32{{4, 2}},
				build: func(in []*G.Node) (*G.Node, error) {
					k := newAttnKernel[float64](2, 4, mlaDims{H: 3, Dn: 2, Dr: 4, Dv: 3, KVr: 5}, rope, &AttnMask{})
					k.block = blk
					return apply[float64](k, in...)
				}},
			gradCase{name: fmt.Sprintf("mla_attention_doc_masked_block%d", blk), shapes: [][]int{{2 * 4, 2 * 6}, {2 * 4, 2 * 5}, {2 * 4, 3 + 4}}, ints: [][]int32{{4, 3}},
				build: func(in []*G.Node) (*G.Node, error) {
					docStart := []int32{0, 0, 2, 2, 0, 1, 1, 0}
					k := newAttnKernel[float64](2, 4, mlaDims{H: 2, Dn: 2, Dr: 4, Dv: 3, KVr: 3}, rope, &AttnMask{DocStart: docStart})
					k.block = blk
					return apply[float64](k, in...)
				}},
			gradCase{name: fmt.Sprintf("mla_attention_allowed_keys_block%d", blk), shapes: [][]int{{2 * 4, 2 * 6}, {2 * 4, 2 * 5}, {2 * 4, 3 + 4}}, ints: [][]int32{{4, 1}},
				build: func(in []*G.Node) (*G.Node, error) {
					allowed := []int32{0, -1, 1, 0, 2, 1, 0, 3, 0, -1, 0, 1, 1, 2, 3, 2}
					k := newAttnKernel[float64](2, 4, mlaDims{H: 2, Dn: 2, Dr: 4, Dv: 3, KVr: 3}, rope, &AttnMask{Allowed: allowed, K: 2})
					k.block = blk
					return apply[float64](k, in...)
				}})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { runGradCase(t, c) })
	}
}

func moeCase(name string, forced []int32, alpha float64, norm bool, shared int) gradCase {
	const N, D, E, I = 6, 4, 4, 3
	shapes := [][]int{{N, D}, {E, D}, {E}}
	for j := 0; j < E; j++ {
		shapes = append(shapes, []int{I, D}, []int{I, D}, []int{D, I})
	}
	if shared > 0 {
		shapes = append(shapes, []int{shared, D}, []int{shared, D}, []int{D, shared})
	}
	return gradCase{name: name, shapes: shapes, frozen: map[int]bool{2: true}, ints: [][]int32{{3, 2}}, tol: 1e-5,
		build: func(in []*G.Node) (*G.Node, error) {
			c := moeConfig{E: E, K: 2, Groups: 2, KeepGroups: 1, Scale: 2.5, NormTopk: norm, D: D, I: I, SharedI: shared, AuxAlpha: alpha}
			r := &Routing{Forced: forced, AuxScale: 0.5}
			k := &moeKernel[float64]{c: c, Tn: 3, route: r}
			out, err := apply[float64](k, in...)
			if err != nil || alpha == 0 {
				return out, err
			}
			// objective includes the balance loss: add it as a scalar through a tiny op reading the side value.
			return apply[float64](&auxReadKernel[float64]{r: r}, out)
		}}
}

// auxReadKernel passes x through and adds Routing.AuxLoss·1 to its first element, so that a gradient check's
// objective includes the balance loss (whose gradient the MoE backward injects).
type auxReadKernel[T Float] struct{ r *Routing }

func (k *auxReadKernel[T]) Name() string    { return "aux_read" }
func (k *auxReadKernel[T]) DiffWRT() []bool { return []bool{true} }
func (k *auxReadKernel[T]) OutShape(in []tensor.Shape) (tensor.Shape, error) {
	return nil, nil
}
func (k *auxReadKernel[T]) Forward(in [][]T, out []T) error {
	var s T
	for i, v := range in[0] {
		s += v * T(math.Sin(float64(i)+1))
	}
	out[0] = s + T(k.r.AuxLoss)
	return nil
}
func (k *auxReadKernel[T]) Backward(in [][]T, out, dout []T, din [][]T) error {
	for i := range din[0] {
		din[0][i] = dout[0] * T(math.Sin(float64(i)+1))
	}
	return nil
}

func TestGradMoE(t *testing.T) {
	forced := []int32{0, 1, 2, 3, 1, 2, 3, 0, 0, 2, 1, 3}
	for _, c := range []gradCase{
		moeCase("moe_forced_routes", forced, 0, true, 3),
		moeCase("moe_forced_no_norm", forced, 0, false, 0),
		moeCase("moe_forced_balance_loss", forced, 0.1, true, 3),
		moeCase("moe_selected_routes", nil, 0, true, 3),
	} {
		t.Run(c.name, func(t *testing.T) { runGradCase(t, c) })
	}
}

func tinyModel() configs.Model {
	m := configs.DefaultModel()
	m.VocabSize, m.HiddenSize, m.NumHiddenLayers, m.NumAttentionHeads = 270, 8, 2, 2
	m.QLoraRank, m.KVLoraRank, m.QKNopeHeadDim, m.QKRopeHeadDim, m.VHeadDim = 6, 4, 2, 4, 3
	m.IntermediateSize, m.MoEIntermediateSize = 10, 3
	m.NRoutedExperts, m.NSharedExperts, m.NumExpertsPerTok, m.NGroup, m.TopkGroup = 4, 1, 2, 2, 1
	m.FirstKDenseReplace = 1
	m.IndexNHeads, m.IndexHeadDim, m.IndexTopk = 2, 4, 4
	return m
}

// TestGradWholeNetwork checks the full decoder (embedding to loss, dense and MoE layers) in float64 on sampled
// elements of every trained tensor, with routes forced so the finite differences do not flip a selection, as
// one graph and as data-parallel shards of one row each (shards.go).
func TestGradWholeNetwork(t *testing.T) {
	for _, shards := range []int{1, 2} {
		t.Run(fmt.Sprintf("shards=%d", shards), func(t *testing.T) { gradWholeNetwork(t, shards) })
	}
}

func gradWholeNetwork(t *testing.T, shards int) {
	cfg := tinyModel()
	cfg.AuxLossAlpha = 0.01
	p := NewParams(cfg)
	p.Init(3)
	rng := rand.New(rand.NewPCG(11, 12))
	data := make([][]float64, len(p.Data))
	for i, d := range p.Data {
		data[i] = make([]float64, len(d))
		for j, v := range d {
			// larger weights than the init, so every path carries signal
			data[i][j] = float64(v)*10 + rng.NormFloat64()*0.05
		}
	}
	const B, T = 2, 5
	g, err := NewGraph[float64](cfg, data, GraphOptions{B: B, T: T, Shards: shards})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	in := StepInput{Tokens: []int32{256, 72, 105, 33, 10, 256, 65, 66, 258, 258}, Targets: []int32{72, 105, 33, 10, 257, 65, 66, 257, 0, 0},
		Weights: []float32{1, 1, 1, 1, 1, 1, 1, 1, 0, 0}, Lengths: []int32{5, 3}, Scale: 1.0 / 8}
	if _, err := g.Run(in); err != nil {
		t.Fatal(err)
	}
	for l, r := range g.Routing {
		if r != nil {
			r.Forced = append([]int32(nil), r.Chosen...)
			_ = l
		}
	}
	loss := func() float64 {
		v, err := g.Run(in)
		if err != nil {
			t.Fatal(err)
		}
		return v + g.AuxLoss()
	}
	loss()
	checkParamGradients(t, g, data, loss, [4]int{256, 72, 65, 257}, cfg.HiddenSize, rng)
}

// checkParamGradients compares g's parameter gradients from the last loss() call with central differences of
// loss at 4 elements of every tensor that has a gradient (in the embedding and the LM head, elements of the given
// token rows, which the tiny batch reads), to 1e-5 relative; params are the float64 weights g was built over.
func checkParamGradients(t *testing.T, g *Graph[float64], params [][]float64, loss func() float64, rows [4]int, hidden int, rng *rand.Rand) {
	t.Helper()
	analytic := map[int][]float64{}
	for i := range g.Specs {
		if gr := g.Grad(i); gr != nil {
			analytic[i] = append([]float64(nil), gr...)
		}
	}
	const h = 1e-6
	checked := 0
	for i, s := range g.Specs {
		an, ok := analytic[i]
		if !ok {
			continue
		}
		for trial := range 4 {
			j := rng.IntN(s.Size())
			if s.Name == "model.embed_tokens.weight" || s.Name == "lm_head.weight" {
				j = rows[trial]*hidden + rng.IntN(hidden)
			}
			orig := params[i][j]
			params[i][j] = orig + h
			fp := loss()
			params[i][j] = orig - h
			fm := loss()
			params[i][j] = orig
			num := (fp - fm) / (2 * h)
			if math.Abs(num-an[j]) > 1e-5*math.Max(1, math.Abs(num)) {
				t.Errorf("%s[%d]: backward %.10g, finite difference %.10g", s.Name, j, an[j], num)
			}
			checked++
		}
	}
	if checked < 4*20 {
		t.Fatalf("only %d elements checked", checked)
	}
}

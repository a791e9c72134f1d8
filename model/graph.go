// graph.go: the training graph of the whole decoder on gorgonia, built once per (batch, padded length) from
// the fused kernels and fed each step with G.Let:
//
//	x = embed(tokens)                                            [N, D]   N = B·T
//	per layer: h = RMSNorm(x)
//	           q  = q_b_proj(RMSNorm(q_a_proj(h)))               [N, H·(dn+dr)]
//	           kA = kv_a_proj_with_mqa(h)                         [N, kvr+dr]
//	           kv = kv_b_proj(RMSNorm(kA[:, :kvr]))               [N, H·(dn+dv)]
//	           x  = x + o_proj(MLA(q, kv, kA, lengths))           [N, D]
//	           x  = x + FFN(RMSNorm(x))   (SwiGLU MLP, or MoE from layer first_k_dense_replace on)
//	loss = CE(lm_head(RMSNorm(x)), targets, weights)·scale     scalar
//
// An lm graph of B ≥ 2 rows is, by default, two such graphs over halves of the rows run at once, one per core,
// their gradients summed (shards.go).

package model

import (
	"fmt"
	"strings"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/internal/kernels"
)

// GraphOptions choose the batch shape and what is trained.
type GraphOptions struct {
	B, T int
	// Trainable says which tensors get gradients; nil = every tensor except buffers and the DSA indexer.
	Trainable func(Spec) bool
	// Head is "lm" (default: next-token cross-entropy) or "policy" (the RL policy-gradient head; set
	// Graph.Policy's loss function and kept sets before each Run).
	Head string
	// DSA, when non-nil, adds the lightning indexers and DeepSeek Sparse Attention (dsa_ops.go).
	DSA *DSAOptions
	// Shards splits the batch rows into that many data-parallel shards (at most B), each its own compiled
	// graph, run one per core (shards.go). 0 = DefaultShards; 1 = one graph over all rows. Only the lm head
	// without DSA shards.
	Shards int
}

// DefaultTrainable trains every tensor except buffers (e_score_correction_bias) and the DSA indexer.
func DefaultTrainable(s Spec) bool {
	return s.Role != Buffer && !strings.Contains(s.Name, ".indexer.")
}

// Graph is the compiled training graph. A sharded graph (GraphOptions.Shards, shards.go) runs its rows as
// several compiled graphs: its G, Nodes, Grads and Loss are shard 0's (the parameter nodes and the gradient
// buffers, which hold the sum over the shards after Run), and Routing, Masks and LossSide cover all rows.
type Graph[T Float] struct {
	Config configs.Model
	B, T   int
	Specs  []Spec

	G      *G.ExprGraph
	Values []*tensor.Dense // parameter values, sharing the caller's memory
	Nodes  []*G.Node       // parameter nodes (nil for tensors the graph does not use)
	Grads  []*G.Node       // gradient nodes (nil where not trained)
	Loss   *G.Node

	tokens, targets, weights, lengths *G.Node
	tokBuf, tgtBuf, lenBuf, wBuf      *tensor.Dense

	LossSide LossSide
	Policy   *PolicySide // the policy head's side state (Head "policy")
	Routing  []*Routing  // per layer; nil for dense layers
	Masks    []*AttnMask // per layer: optional allowed-key sets
	DSA      *DSASide    // DSA side state (GraphOptions.DSA); nil without DSA
	vm       G.VM
	shards   *shardSet[T] // the data-parallel shards (GraphOptions.Shards > 1); nil for one graph
}

// StepInput is one micro-batch: token ids [B·T], next-token targets [B·T], loss weights [B·T], valid lengths
// [B], and the loss scale (1/number of trained tokens in the whole accumulated batch).
type StepInput struct {
	Tokens, Targets []int32
	Weights         []float32
	Lengths         []int32
	Scale           float64
	// DocStart, optional [B·T] (empty = none): the row position where each input position's document
	// begins; attention masks every key before it (document masking of packed rows).
	DocStart []int32
}

// NewGraph builds and compiles the training graph over the parameter memory data (in Specs(cfg) order).
func NewGraph[T Float](cfg configs.Model, data [][]T, opt GraphOptions) (*Graph[T], error) {
	specs := Specs(cfg)
	if len(data) != len(specs) {
		return nil, fmt.Errorf("model: %d parameter tensors, want %d", len(data), len(specs))
	}
	if opt.B <= 0 || opt.T <= 0 {
		return nil, fmt.Errorf("model: batch shape B=%d T=%d", opt.B, opt.T)
	}
	if opt.T > cfg.MaxPositionEmbeddings {
		return nil, fmt.Errorf("model: sequence length %d exceeds max_position_embeddings %d", opt.T, cfg.MaxPositionEmbeddings)
	}
	shards, err := ShardCount(opt)
	if err != nil {
		return nil, err
	}
	if shards > 1 {
		return newShardedGraph(cfg, data, opt, shards)
	}
	trainable := opt.Trainable
	if trainable == nil {
		trainable = DefaultTrainable
	}
	dt := dtypeOf[T]()
	g := &Graph[T]{Config: cfg, B: opt.B, T: opt.T, Specs: specs, G: G.NewGraph()}
	B, T_, N := opt.B, opt.T, opt.B*opt.T
	g.Values = make([]*tensor.Dense, len(specs))
	g.Nodes = make([]*G.Node, len(specs))
	g.Grads = make([]*G.Node, len(specs))
	for i, s := range specs {
		if len(data[i]) != s.Size() {
			return nil, fmt.Errorf("model: tensor %s has %d elements, want %d (shape %v)", s.Name, len(data[i]), s.Size(), s.Shape)
		}
		g.Values[i] = tensor.New(tensor.WithShape(s.Shape...), tensor.WithBacking(data[i]))
	}
	idx := map[string]int{}
	for i, s := range specs {
		idx[s.Name] = i
	}
	param := func(name string) *G.Node {
		i, ok := idx[name]
		if !ok {
			panic("model: no tensor " + name)
		}
		if g.Nodes[i] == nil {
			s := specs[i]
			if len(s.Shape) == 1 {
				g.Nodes[i] = G.NewVector(g.G, dt, G.WithShape(s.Shape...), G.WithName(s.Name), G.WithValue(g.Values[i]))
			} else {
				g.Nodes[i] = G.NewMatrix(g.G, dt, G.WithShape(s.Shape...), G.WithName(s.Name), G.WithValue(g.Values[i]))
			}
		}
		return g.Nodes[i]
	}
	g.tokBuf = tensor.New(tensor.WithShape(N), tensor.Of(tensor.Int32))
	g.tgtBuf = tensor.New(tensor.WithShape(N), tensor.Of(tensor.Int32))
	g.lenBuf = tensor.New(tensor.WithShape(B), tensor.Of(tensor.Int32))
	g.wBuf = tensor.New(tensor.WithShape(N), tensor.Of(dt))
	g.tokens = G.NewVector(g.G, tensor.Int32, G.WithShape(N), G.WithName("tokens"), G.WithValue(g.tokBuf))
	g.targets = G.NewVector(g.G, tensor.Int32, G.WithShape(N), G.WithName("targets"), G.WithValue(g.tgtBuf))
	g.lengths = G.NewVector(g.G, tensor.Int32, G.WithShape(B), G.WithName("lengths"), G.WithValue(g.lenBuf))
	g.weights = G.NewVector(g.G, dt, G.WithShape(N), G.WithName("loss_weights"), G.WithValue(g.wBuf))

	rope := kernels.NewRopeTable(cfg.QKRopeHeadDim, max(T_, 1), cfg.RopeTheta)
	dims := mlaDims{H: cfg.NumAttentionHeads, Dn: cfg.QKNopeHeadDim, Dr: cfg.QKRopeHeadDim, Dv: cfg.VHeadDim, KVr: cfg.KVLoraRank}
	must := func(n *G.Node, e error) *G.Node {
		if e != nil && err == nil {
			err = e
		}
		return n
	}
	lin := func(name string, x *G.Node, w string) *G.Node {
		if err != nil {
			return nil
		}
		return must(apply[T](&linearKernel[T]{name: name, diffX: true, diffW: true}, x, param(w)))
	}
	norm := func(name string, x *G.Node, w string, col0, width int) *G.Node {
		if err != nil {
			return nil
		}
		return must(apply[T](&rmsNormKernel[T]{name: name, Col0: col0, W: width, Eps: cfg.RMSNormEps, diffX: true}, x, param(w)))
	}
	add := func(a, b *G.Node) *G.Node {
		if err != nil {
			return nil
		}
		return must(apply[T](addKernel[T]{}, a, b))
	}
	x := must(apply[T](&embedKernel[T]{}, param("model.embed_tokens.weight"), g.tokens))
	g.Routing = make([]*Routing, cfg.NumHiddenLayers)
	g.Masks = make([]*AttnMask, cfg.NumHiddenLayers)
	var dsaLosses []*G.Node // per-layer indexer losses (GraphOptions.DSA)
	for l := 0; l < cfg.NumHiddenLayers; l++ {
		p := LayerPrefix(l)
		h := norm("input_layernorm", x, p+"input_layernorm.weight", 0, 0)
		qa := lin("q_a_proj", h, p+"self_attn.q_a_proj.weight")
		qn := norm("q_a_layernorm", qa, p+"self_attn.q_a_layernorm.weight", 0, 0)
		q := lin("q_b_proj", qn, p+"self_attn.q_b_proj.weight")
		kva := lin("kv_a_proj_with_mqa", h, p+"self_attn.kv_a_proj_with_mqa.weight")
		ckv := norm("kv_a_layernorm", kva, p+"self_attn.kv_a_layernorm.weight", 0, cfg.KVLoraRank)
		g.Masks[l] = &AttnMask{}
		if err == nil && opt.DSA != nil { // kv_b_proj is applied inside (dense) or absorbed (sparse, MQA mode)
			o, il, e := dsaAttention(g, l, opt.DSA, dims, rope, param, h, qn, q, ckv, kva)
			if e != nil {
				err = fmt.Errorf("layer %d: DSA: %w", l, e)
				break
			}
			dsaLosses = append(dsaLosses, il)
			x = add(x, lin("o_proj", o, p+"self_attn.o_proj.weight"))
		} else if err == nil {
			kv := lin("kv_b_proj", ckv, p+"self_attn.kv_b_proj.weight")
			o := must(apply[T](newAttnKernel[T](B, T_, dims, rope, g.Masks[l]), q, kv, kva, g.lengths))
			x = add(x, lin("o_proj", o, p+"self_attn.o_proj.weight"))
		}
		h2 := norm("post_attention_layernorm", x, p+"post_attention_layernorm.weight", 0, 0)
		if err != nil {
			break
		}
		if cfg.IsMoE(l) {
			g.Routing[l] = &Routing{AuxScale: 1}
			mk := &moeKernel[T]{c: moeConfigOf(cfg), Tn: T_, route: g.Routing[l]}
			ins := []*G.Node{h2, param(p + "mlp.gate.weight"), param(p + "mlp.gate.e_score_correction_bias")}
			for j := 0; j < cfg.NRoutedExperts; j++ {
				e := ExpertPrefix(l, j)
				ins = append(ins, param(e+"gate_proj.weight"), param(e+"up_proj.weight"), param(e+"down_proj.weight"))
			}
			if cfg.NSharedExperts > 0 {
				ins = append(ins, param(p+"mlp.shared_experts.gate_proj.weight"), param(p+"mlp.shared_experts.up_proj.weight"), param(p+"mlp.shared_experts.down_proj.weight"))
			}
			ins = append(ins, g.lengths)
			x = add(x, must(apply[T](mk, ins...)))
		} else {
			x = add(x, must(apply[T](&mlpKernel[T]{name: "mlp"}, h2, param(p+"mlp.gate_proj.weight"), param(p+"mlp.up_proj.weight"), param(p+"mlp.down_proj.weight"))))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("model: building the training graph: %w", err)
	}
	logits := lin("lm_head", norm("norm", x, "model.norm.weight", 0, 0), "lm_head.weight")
	if err != nil {
		return nil, fmt.Errorf("model: building the training graph: %w", err)
	}
	switch opt.Head {
	case "", "lm":
		g.Loss, err = apply[T](&crossEntropyKernel[T]{t: &g.LossSide}, logits, g.targets, g.weights)
	case "policy":
		g.Policy = &PolicySide{}
		g.Loss, err = apply[T](&policyKernel[T]{side: g.Policy}, logits, g.targets)
	default:
		err = fmt.Errorf("unknown head %q (want lm or policy)", opt.Head)
	}
	if err != nil {
		return nil, fmt.Errorf("model: building the loss: %w", err)
	}
	if g.Loss, err = addDSALoss(g, g.Loss, dsaLosses); err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	var wrt G.Nodes
	var wrtIdx []int
	for i, s := range specs {
		if g.Nodes[i] != nil && trainable(s) && s.Role != Buffer {
			wrt = append(wrt, g.Nodes[i])
			wrtIdx = append(wrtIdx, i)
		}
	}
	if len(wrt) == 0 {
		return nil, fmt.Errorf("model: nothing to train")
	}
	grads, err := G.Grad(g.Loss, wrt...)
	if err != nil {
		return nil, fmt.Errorf("model: differentiating the loss: %w", err)
	}
	for k, i := range wrtIdx {
		g.Grads[i] = grads[k]
	}
	g.vm = G.NewTapeMachine(g.G)
	return g, nil
}

func moeConfigOf(c configs.Model) moeConfig {
	return moeConfig{E: c.NRoutedExperts, K: c.NumExpertsPerTok, Groups: c.NGroup, KeepGroups: c.TopkGroup,
		Scale: c.RoutedScalingFactor, NormTopk: c.NormTopkProb, D: c.HiddenSize, I: c.MoEIntermediateSize,
		SharedI: c.MoEIntermediateSize * c.NSharedExperts, AuxAlpha: c.AuxLossAlpha}
}

// Run feeds one micro-batch, runs forward and backward, and returns the (scaled) loss. Gradients are then
// readable with Grad until the next Run.
func (g *Graph[T]) Run(in StepInput) (float64, error) {
	if err := g.checkInput(in); err != nil {
		return 0, err
	}
	if g.shards != nil {
		return g.shards.run(g, in)
	}
	for _, m := range g.Masks {
		m.DocStart = in.DocStart
	}
	copy(g.tokBuf.Data().([]int32), in.Tokens)
	copy(g.tgtBuf.Data().([]int32), in.Targets)
	copy(g.lenBuf.Data().([]int32), in.Lengths)
	w := g.wBuf.Data().([]T)
	for i, v := range in.Weights {
		w[i] = T(v)
	}
	g.LossSide.Scale = in.Scale
	for _, l := range []struct {
		n *G.Node
		v *tensor.Dense
	}{{g.tokens, g.tokBuf}, {g.targets, g.tgtBuf}, {g.lengths, g.lenBuf}, {g.weights, g.wBuf}} {
		if err := G.Let(l.n, l.v); err != nil {
			return 0, fmt.Errorf("model: feeding %s: %w", l.n.Name(), err)
		}
	}
	defer g.vm.Reset()
	if err := g.vm.RunAll(); err != nil {
		return 0, fmt.Errorf("model: training step: %w", err)
	}
	lv, err := valueData[T](g.Loss.Value())
	if err != nil {
		return 0, fmt.Errorf("model: reading the loss: %w", err)
	}
	return float64(lv[0]), nil
}

// checkInput refuses a step input that does not fit the graph's batch shape.
func (g *Graph[T]) checkInput(in StepInput) error {
	N := g.B * g.T
	if len(in.Tokens) != N || len(in.Targets) != N || len(in.Weights) != N || len(in.Lengths) != g.B {
		return fmt.Errorf("model: step input has %d tokens, %d targets, %d weights, %d lengths; graph wants %d, %d, %d, %d",
			len(in.Tokens), len(in.Targets), len(in.Weights), len(in.Lengths), N, N, N, g.B)
	}
	for b, l := range in.Lengths {
		if l < 0 || int(l) > g.T {
			return fmt.Errorf("model: row %d has length %d outside [0, %d]", b, l, g.T)
		}
	}
	if len(in.DocStart) > 0 {
		if len(in.DocStart) != N {
			return fmt.Errorf("model: step input has %d document starts, graph wants %d", len(in.DocStart), N)
		}
		if g.DSA != nil {
			return fmt.Errorf("model: document masking (packed documents) is not supported by DSA graphs")
		}
		for n, s := range in.DocStart {
			if s < 0 || int(s) > n%g.T {
				return fmt.Errorf("model: position %d of row %d has document start %d outside [0, %d]", n%g.T, n/g.T, s, n%g.T)
			}
		}
	}
	return nil
}

// Grad returns the gradient of tensor i after Run (nil when it is not trained).
func (g *Graph[T]) Grad(i int) []T {
	if g.Grads[i] == nil || g.Grads[i].Value() == nil {
		return nil
	}
	d, _ := valueData[T](g.Grads[i].Value())
	return d
}

// AuxLoss sums the balance losses of the MoE layers of the last Run.
func (g *Graph[T]) AuxLoss() float64 {
	var s float64
	for _, r := range g.Routing {
		if r != nil {
			s += r.AuxLoss
		}
	}
	return s
}

// Close releases the tape machine (of every shard).
func (g *Graph[T]) Close() error {
	if g.shards != nil {
		return g.shards.close()
	}
	if g.vm != nil {
		return g.vm.Close()
	}
	return nil
}

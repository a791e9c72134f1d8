// dsa_ops.go: DeepSeek Sparse Attention in the training graph (dsv32-spec.md §1, §2), as fused ops over the
// kernels of package dsa, and the per-layer wiring NewGraph calls when GraphOptions.DSA is set:
//
//	dense mode (stage dsa_warmup, recall evaluation):
//	  o  = MLA(q, kv, kA)                                 dense attention, as without DSA
//	  I  = indexer(stop(h), stop(c^Q))                    [N, T] lightning-indexer scores
//	  Lᴵ = Σ_t KL(mean_heads P_t ‖ softmax(I_t))           Eq. 3; P read from the attention op (after it ran)
//	sparse mode (stage dsa_sparse, RL):
//	  S  = topk(I)                                        [N, k] selected positions (as floats; also Sel); the
//	                                                      indexer's backward then reads ∂Lᴵ/∂I on S only
//	  o  = sparseMQA(q, c^KV, kA, W^UKV, S)               attends only to S, in the absorbed MQA mode
//	                                                      (dsv32-spec.md §1.3): one shared latent row per key
//	  Lᴵ = Σ_t KL(mean_heads P_{t,S} ‖ softmax(I_{t,S}))   Eq. 4
//
// stop is an identity op that passes no gradient, so the indexer loss gives the backbone no gradient; top-k
// is not differentiable and the selection input of the sparse attention has DiffWRT false, so the LM loss
// gives the indexer none. The per-layer indexer losses are added to the graph's loss (one Grad call).

package model

import (
	"fmt"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/sparrow-rl/sparrow/dsa"
	"github.com/sparrow-rl/sparrow/internal/kernels"
)

// DSAOptions switch DeepSeek Sparse Attention on in a training graph (the model needs index_n_heads > 0).
type DSAOptions struct {
	// Sparse selects the top-k sparse attention (Eq. 4 for the indexer); false keeps dense attention and
	// trains the indexer on Eq. 3.
	Sparse bool
	// TopK is the number of keys per query; 0 = the model's index_topk.
	TopK int
	// Recall, in dense mode, computes the top-k recall of the indexer against the dense attention on every Run.
	Recall bool
}

// DSASide is the per-step side state of DSA in a graph.
type DSASide struct {
	Sparse bool
	TopK   int
	// LossScale multiplies the indexer loss (mean KL per valid query, summed over layers) in the graph's loss;
	// 1 after NewGraph. Set it to 0 for evaluations that must return the LM loss alone.
	LossScale float64
	Layers    []*DSALayer
}

// DSALayer is one layer's DSA side state, valid after Run.
type DSALayer struct {
	// Sel [B·T·k] holds the selected key positions of every query (ascending, −1 = unused slot) in sparse mode.
	Sel []int32
	// Forced, when non-nil ([B·T·k]), replaces the indexer's selection (replay of recorded selections).
	Forced []int32
	// KL is the mean indexer KL per valid query of the last Run; Rows the number of valid queries.
	KL   float64
	Rows int
	// Recall is the top-k recall of the last Run (dense mode with DSAOptions.Recall).
	Recall dsa.Recall
}

// IndexLoss returns the sum over layers of the mean KL per query of the last Run, and the per-layer values.
func (s *DSASide) IndexLoss() (float64, []float64) {
	per := make([]float64, len(s.Layers))
	var sum float64
	for l, ly := range s.Layers {
		per[l] = ly.KL
		sum += ly.KL
	}
	return sum, per
}

// stopGradKernel is the identity with no gradient (gorgonia has no stop-gradient op).
type stopGradKernel[T Float] struct{ shape tensor.Shape }

func (k *stopGradKernel[T]) Name() string    { return "stop_gradient" }
func (k *stopGradKernel[T]) DiffWRT() []bool { return []bool{false} }
func (k *stopGradKernel[T]) OutShape(in []tensor.Shape) (tensor.Shape, error) {
	if err := wantShapes(in, 1, "stop_gradient"); err != nil {
		return nil, err
	}
	k.shape = in[0].Clone()
	return k.shape, nil
}
func (k *stopGradKernel[T]) Forward(in [][]T, out []T) error                   { copy(out, in[0]); return nil }
func (k *stopGradKernel[T]) Backward(in [][]T, out, dout []T, din [][]T) error { return nil }

// indexerKernel: scores [N, T] from h [N, D], qn [N, QR], wq_b, wk, k_norm.weight, k_norm.bias, weights_proj.
type indexerKernel[T Float] struct {
	ix    *dsa.Indexer[T]
	side  *DSASide
	layer *DSALayer
}

// idle: the selection is forced and the indexer loss weighs nothing, so no output of the indexer is read.
func idle(side *DSASide, layer *DSALayer) bool {
	return side != nil && layer != nil && layer.Forced != nil && side.LossScale == 0
}

func (k *indexerKernel[T]) Name() string { return "dsa_indexer" }
func (k *indexerKernel[T]) DiffWRT() []bool {
	return []bool{true, true, true, true, true, true, true}
}
func (k *indexerKernel[T]) OutShape(in []tensor.Shape) (tensor.Shape, error) {
	if err := wantShapes(in, 7, "dsa_indexer"); err != nil {
		return nil, err
	}
	d := k.ix.IndexerDims
	N := k.ix.B * k.ix.T
	want := []tensor.Shape{{N, d.D}, {N, d.QR}, {d.H * d.Dh, d.QR}, {d.Dh, d.D}, {d.Dh}, {d.Dh}, {d.H, d.D}}
	for i, w := range want {
		if !in[i].Eq(w) {
			return nil, fmt.Errorf("dsa_indexer: input %d has shape %v, want %v", i, in[i], w)
		}
	}
	return tensor.Shape{N, k.ix.T}, nil
}
func weightsOf[T Float](in [][]T) dsa.IndexerWeights[T] {
	return dsa.IndexerWeights[T]{WQ: in[2], WK: in[3], KNorm: in[4], KBias: in[5], WW: in[6]}
}
func (k *indexerKernel[T]) Forward(in [][]T, out []T) error {
	if idle(k.side, k.layer) {
		return nil
	}
	k.ix.Forward(in[0], in[1], weightsOf(in), out)
	return nil
}
func (k *indexerKernel[T]) Backward(in [][]T, out, dout []T, din [][]T) error {
	if idle(k.side, k.layer) {
		return nil
	}
	k.ix.Backward(in[0], in[1], weightsOf(in), dout, din[0], din[1], weightsOf(din))
	return nil
}

// topkKernel: the selection [N, k] (positions as floats, −1 = unused) from scores [N, T] and lengths [B].
type topkKernel[T Float] struct {
	B, T, K int
	layer   *DSALayer
	lengths []int32
}

func (k *topkKernel[T]) Name() string           { return "dsa_topk" }
func (k *topkKernel[T]) DiffWRT() []bool        { return []bool{false, false} }
func (k *topkKernel[T]) SetInts(ints [][]int32) { k.lengths = ints[1] }
func (k *topkKernel[T]) OutShape(in []tensor.Shape) (tensor.Shape, error) {
	if err := wantShapes(in, 2, "dsa_topk"); err != nil {
		return nil, err
	}
	return tensor.Shape{k.B * k.T, k.K}, nil
}
func (k *topkKernel[T]) Forward(in [][]T, out []T) error {
	sel := k.layer.Sel
	if f := k.layer.Forced; f != nil {
		if len(f) != len(sel) {
			return fmt.Errorf("dsa_topk: forced selection has %d entries, want %d", len(f), len(sel))
		}
		copy(sel, f)
	} else {
		dsa.SelectTopK(sel, in[0], k.B, k.T, k.K, k.lengths)
	}
	for i, s := range sel {
		out[i] = T(s)
	}
	return nil
}
func (k *topkKernel[T]) Backward(in [][]T, out, dout []T, din [][]T) error { return nil }

// sparseAttnKernel: MLA attention over the selected keys in the absorbed MQA mode (dsa.SparseMQA); inputs q,
// c^KV (kv_a_layernorm output), kva (its last dr columns: the rope key), kv_b_proj.weight, selection [N, k],
// lengths [B].
type sparseAttnKernel[T Float] struct {
	a       *dsa.SparseMQA[T]
	sel     []int32
	lengths []int32
}

func (k *sparseAttnKernel[T]) Name() string { return "dsa_sparse_attention" }
func (k *sparseAttnKernel[T]) DiffWRT() []bool {
	return []bool{true, true, true, true, false, false}
}
func (k *sparseAttnKernel[T]) SetInts(ints [][]int32) { k.lengths = ints[5] }
func (k *sparseAttnKernel[T]) OutShape(in []tensor.Shape) (tensor.Shape, error) {
	if err := wantShapes(in, 6, "dsa_sparse_attention"); err != nil {
		return nil, err
	}
	a := k.a
	N, dq := a.B*a.T, a.Dn+a.Dr
	want := []tensor.Shape{{N, a.H * dq}, {N, a.KVr}, {N, a.KVr + a.Dr}, {a.H * (a.Dn + a.Dv), a.KVr}, {N, a.K}, {a.B}}
	for i, w := range want {
		if !in[i].Eq(w) {
			return nil, fmt.Errorf("dsa_sparse_attention: input %d has shape %v, want %v (B=%d T=%d heads=%d k=%d)", i, in[i], w, a.B, a.T, a.H, a.K)
		}
	}
	k.sel = make([]int32, N*a.K)
	return tensor.Shape{N, a.H * a.Dv}, nil
}
func (k *sparseAttnKernel[T]) Forward(in [][]T, out []T) error {
	for i, v := range in[4] {
		k.sel[i] = int32(v)
	}
	return k.a.Forward(in[0], in[1], in[2], in[3], k.sel, k.lengths, out)
}
func (k *sparseAttnKernel[T]) Backward(in [][]T, out, dout []T, din [][]T) error {
	k.a.Backward(in[0], in[3], dout, din[0], din[1], din[2], din[3])
	return nil
}

// headMeanKernel reads the attention probabilities of the attention op whose output is its input (the edge
// orders it after that op) and returns their mean over heads: [N, T] (dense) or [N, k] (sparse, slot order).
type headMeanKernel[T Float] struct {
	dense  *attnKernel[T]
	sparse *dsa.SparseMQA[T]
	N, W   int
	side   *DSASide
	layer  *DSALayer
}

func (k *headMeanKernel[T]) Name() string    { return "dsa_head_mean_probs" }
func (k *headMeanKernel[T]) DiffWRT() []bool { return []bool{false} }
func (k *headMeanKernel[T]) OutShape(in []tensor.Shape) (tensor.Shape, error) {
	if err := wantShapes(in, 1, "dsa_head_mean_probs"); err != nil {
		return nil, err
	}
	return tensor.Shape{k.N, k.W}, nil
}
func (k *headMeanKernel[T]) Forward(in [][]T, out []T) error {
	if idle(k.side, k.layer) {
		return nil
	}
	if k.sparse != nil {
		k.sparse.HeadMeanProbs(out)
		return nil
	}
	a := k.dense
	T_, H := a.T, a.H
	inv := 1 / T(H)
	kernels.For(a.B*T_, H*T_, func(n int) {
		b, t := n/T_, n%T_
		d := out[n*T_ : (n+1)*T_]
		clear(d)
		for h := 0; h < H; h++ {
			kernels.Axpy(inv, a.p[((b*H+h)*T_+t)*T_:((b*H+h)*T_+t+1)*T_], d)
		}
	})
	return nil
}
func (k *headMeanKernel[T]) Backward(in [][]T, out, dout []T, din [][]T) error { return nil }

// klKernel: the indexer loss of one layer, LossScale · Σ_t KL / (valid queries); inputs scores [N, T], target
// ([N, T] dense or [N, k] sparse), lengths [B] and, in sparse mode, the selection [N, k] before lengths.
type klKernel[T Float] struct {
	B, T, K   int
	sparse    bool
	side      *DSASide
	layer     *DSALayer
	lengths   []int32
	perRow    []float64
	recall    bool
	rowsScale T
}

func (k *klKernel[T]) Name() string { return "dsa_indexer_kl" }
func (k *klKernel[T]) DiffWRT() []bool {
	if k.sparse {
		return []bool{true, false, false, false}
	}
	return []bool{true, false, false}
}
func (k *klKernel[T]) SetInts(ints [][]int32) { k.lengths = ints[len(ints)-1] }
func (k *klKernel[T]) OutShape(in []tensor.Shape) (tensor.Shape, error) {
	n := 3
	if k.sparse {
		n = 4
	}
	if err := wantShapes(in, n, "dsa_indexer_kl"); err != nil {
		return nil, err
	}
	k.perRow = make([]float64, k.B*k.T)
	return nil, nil
}
func (k *klKernel[T]) Forward(in [][]T, out []T) error {
	if idle(k.side, k.layer) {
		k.layer.KL, k.layer.Rows, k.rowsScale, out[0] = 0, 0, 0, 0
		return nil
	}
	var sum float64
	var rows int
	if k.sparse {
		sum, rows = dsa.KLSparse(in[0], k.layer.Sel, in[1], k.B, k.T, k.K, k.lengths, 0, nil, k.perRow)
	} else {
		sum, rows = dsa.KLDense(in[0], in[1], k.B, k.T, k.lengths, 0, nil, k.perRow)
		if k.recall {
			k.layer.Recall = dsa.TopKRecall(in[0], in[1], k.B, k.T, k.K, k.lengths)
		}
	}
	k.layer.Rows = rows
	k.layer.KL = 0
	k.rowsScale = 0
	if rows > 0 {
		k.layer.KL = sum / float64(rows)
		k.rowsScale = T(k.side.LossScale / float64(rows))
	}
	out[0] = T(sum) * k.rowsScale
	return nil
}
func (k *klKernel[T]) Backward(in [][]T, out, dout []T, din [][]T) error {
	if idle(k.side, k.layer) {
		return nil
	}
	sc := k.rowsScale * dout[0]
	if k.sparse {
		dsa.KLSparse(in[0], k.layer.Sel, in[1], k.B, k.T, k.K, k.lengths, sc, din[0], k.perRow)
	} else {
		dsa.KLDense(in[0], in[1], k.B, k.T, k.lengths, sc, din[0], k.perRow)
	}
	return nil
}

// dsaAttention builds one layer's attention with DSA from the normalized KV latent ckv: it returns the
// attention output [N, H·dv] and the layer's indexer loss (a scalar node). Dense mode up-projects ckv with
// kv_b_proj (MHA mode); sparse mode absorbs kv_b_proj into the sparse op (MQA mode).
func dsaAttention[T Float](g *Graph[T], l int, opt *DSAOptions, dims mlaDims, rope *kernels.RopeTable,
	param func(string) *G.Node, h, qn, q, ckv, kva *G.Node) (o, loss *G.Node, err error) {
	cfg := g.Config
	if cfg.IndexNHeads <= 0 {
		return nil, nil, fmt.Errorf("DSA needs an indexer: model.index_n_heads is 0")
	}
	B, T_ := g.B, g.T
	K := opt.TopK
	if K <= 0 {
		K = cfg.IndexTopk
	}
	if g.DSA == nil {
		g.DSA = &DSASide{Sparse: opt.Sparse, TopK: K, LossScale: 1, Layers: make([]*DSALayer, cfg.NumHiddenLayers)}
	}
	ly := &DSALayer{Sel: make([]int32, B*T_*K)}
	g.DSA.Layers[l] = ly
	p := LayerPrefix(l) + "self_attn.indexer."
	id := dsa.IndexerDims{D: cfg.HiddenSize, QR: cfg.QLoraRank, H: cfg.IndexNHeads, Dh: cfg.IndexHeadDim, Dr: cfg.QKRopeHeadDim}
	ix, err := dsa.NewIndexer[T](id, B, T_, rope)
	if err != nil {
		return nil, nil, err
	}
	hs, err := apply[T](&stopGradKernel[T]{}, h)
	if err != nil {
		return nil, nil, err
	}
	qs, err := apply[T](&stopGradKernel[T]{}, qn)
	if err != nil {
		return nil, nil, err
	}
	scores, err := apply[T](&indexerKernel[T]{ix: ix, side: g.DSA, layer: ly}, hs, qs, param(p+"wq_b.weight"), param(p+"wk.weight"),
		param(p+"k_norm.weight"), param(p+"k_norm.bias"), param(p+"weights_proj.weight"))
	if err != nil {
		return nil, nil, err
	}
	N := B * T_
	kl := &klKernel[T]{B: B, T: T_, K: K, sparse: opt.Sparse, side: g.DSA, layer: ly, recall: opt.Recall}
	wkvb := param(LayerPrefix(l) + "self_attn.kv_b_proj.weight")
	if !opt.Sparse {
		kv, err := apply[T](&linearKernel[T]{name: "kv_b_proj", diffX: true, diffW: true}, ckv, wkvb)
		if err != nil {
			return nil, nil, err
		}
		ak := newAttnKernel[T](B, T_, dims, rope, g.Masks[l])
		if o, err = apply[T](ak, q, kv, kva, g.lengths); err != nil {
			return nil, nil, err
		}
		target, err := apply[T](&headMeanKernel[T]{dense: ak, N: N, W: T_}, o)
		if err != nil {
			return nil, nil, err
		}
		loss, err = apply[T](kl, scores, target, g.lengths)
		return o, loss, err
	}
	// The indexer's only gradient is the Eq. 4 loss over the selected keys: its backward reads just those.
	ix.Sel, ix.SelK = ly.Sel, K
	sel, err := apply[T](&topkKernel[T]{B: B, T: T_, K: K, layer: ly}, scores, g.lengths)
	if err != nil {
		return nil, nil, err
	}
	sa, err := dsa.NewSparseMQA[T](dsa.MLADims{H: dims.H, Dn: dims.Dn, Dr: dims.Dr, Dv: dims.Dv, KVr: dims.KVr}, B, T_, K, rope)
	if err != nil {
		return nil, nil, err
	}
	if o, err = apply[T](&sparseAttnKernel[T]{a: sa}, q, ckv, kva, wkvb, sel, g.lengths); err != nil {
		return nil, nil, err
	}
	target, err := apply[T](&headMeanKernel[T]{sparse: sa, N: N, W: K, side: g.DSA, layer: ly}, o)
	if err != nil {
		return nil, nil, err
	}
	loss, err = apply[T](kl, scores, target, sel, g.lengths)
	return o, loss, err
}

// addDSALoss adds the summed per-layer indexer losses to the graph's loss.
func addDSALoss[T Float](g *Graph[T], loss *G.Node, layerLosses []*G.Node) (*G.Node, error) {
	for _, l := range layerLosses {
		var err error
		if loss, err = G.Add(loss, l); err != nil {
			return nil, fmt.Errorf("adding the indexer loss: %w", err)
		}
	}
	return loss, nil
}

// shards.go: data parallelism over the batch rows inside one training graph. The B rows are split into S
// contiguous shards; each shard is the same training graph compiled for its rows (graph.go, over the same
// parameter memory), and the shards run at once, one per core, each a serial stream of kernels
// (kernels.HoldSerial): no fork and join per kernel, and every GEMM of a shard runs unsplit on its core.
// The step's loss and gradients are sums over tokens (the loss scale is the whole batch's), so
//
//	L = Σ_s L_s,   ∂L/∂θ = Σ_s ∂L_s/∂θ   (summed in shard order after the shards finish)
//
// The MoE balance loss averages over the batch's sequences (moe.go: α/nseq·Σ_b …), so shard s runs with
// AuxScale·nseq_s/nseq and the shards' balance losses and gradients add up to the whole batch's. Routing
// records (Chosen) and log p(target) (LossSide.Logp) are the shards' rows side by side in the parent's
// slices; expert loads add up.
//
// Results differ from one graph over all rows by float rounding only (the GEMMs sum the weight gradients
// over fewer rows, then the shards' sums are added); they do not depend on the core count: the shard count
// is fixed by the options, and with one worker the shards run one after another.

package model

import (
	"errors"
	"fmt"
	"sync"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/internal/kernels"
)

// DefaultShards is the shard count of lm-head graphs without DSA when GraphOptions.Shards is 0 (and the batch
// has that many rows): one per core of the 2-core machine the recipes are measured on.
const DefaultShards = 2

// ShardCount is the number of shards NewGraph builds for opt (GraphOptions.Shards resolved; 1 = one graph).
func ShardCount(opt GraphOptions) (int, error) {
	lm := (opt.Head == "" || opt.Head == "lm") && opt.DSA == nil
	switch {
	case opt.Shards < 0:
		return 0, fmt.Errorf("model: graph shards %d, want ≥ 0", opt.Shards)
	case opt.Shards == 0:
		if lm && opt.B >= DefaultShards {
			return DefaultShards, nil
		}
		return 1, nil
	case opt.Shards > 1 && !lm:
		return 0, fmt.Errorf("model: graph shards %d: only the lm head without DSA runs in shards", opt.Shards)
	}
	return min(opt.Shards, max(opt.B, 1)), nil
}

// shardSet holds the shards of a graph and the per-shard views of its side state.
type shardSet[T Float] struct {
	graphs []*Graph[T]
	rows   []int            // shard s has rows [rows[s], rows[s+1])
	ins    []StepInput      // per-shard views of the step input
	errs   []error          // per-shard errors of the last run
	losses []float64        // per-shard losses of the last run
	chunks []gradChunk      // the gradient sum's work items
	grads  [][]gradSlice[T] // per shard, the gradient buffers of the trained tensors (Specs order)
}

// gradSlice is one trained tensor's gradient buffer in one shard.
type gradSlice[T Float] struct {
	spec int
	data []T
}

// gradChunk is a range of one trained tensor's gradient that one worker sums over the shards.
type gradChunk struct{ k, lo, hi int } // k indexes the trained tensors

// gradChunkLen is the most elements one work item of the gradient sum adds.
const gradChunkLen = 1 << 15

// ShardRows returns the row bounds of S shards of B rows: shard s has rows [r[s], r[s+1]), r[s] = s·B/S.
func ShardRows(B, S int) []int {
	r := make([]int, S+1)
	for s := range r {
		r[s] = s * B / S
	}
	return r
}

// newShardedGraph builds the S shard graphs over the rows of opt.B and the parent that joins them.
func newShardedGraph[T Float](cfg configs.Model, data [][]T, opt GraphOptions, S int) (*Graph[T], error) {
	B, T_ := opt.B, opt.T
	N := B * T_
	set := &shardSet[T]{rows: ShardRows(B, S), ins: make([]StepInput, S), errs: make([]error, S), losses: make([]float64, S)}
	g := &Graph[T]{Config: cfg, B: B, T: T_, shards: set}
	g.Routing = make([]*Routing, cfg.NumHiddenLayers)
	g.Masks = make([]*AttnMask, cfg.NumHiddenLayers)
	K := cfg.NumExpertsPerTok
	for l := range g.Routing {
		g.Masks[l] = &AttnMask{}
		if cfg.IsMoE(l) {
			g.Routing[l] = &Routing{AuxScale: 1, Chosen: make([]int32, N*K), Load: make([]int, cfg.NRoutedExperts)}
		}
	}
	g.LossSide.Logp = make([]float32, N)
	for s := 0; s < S; s++ {
		sub := opt
		sub.B, sub.Shards = set.rows[s+1]-set.rows[s], 1
		sg, err := NewGraph[T](cfg, data, sub)
		if err != nil {
			set.close()
			return nil, fmt.Errorf("model: shard %d of %d: %w", s, S, err)
		}
		set.graphs = append(set.graphs, sg)
	}
	// The parent shows shard 0's compiled graph and parameter nodes; Grad reads shard 0's gradient buffers,
	// which hold the sum over the shards after Run.
	g0 := set.graphs[0]
	g.Specs, g.G, g.Values, g.Nodes, g.Grads, g.Loss = g0.Specs, g0.G, g0.Values, g0.Nodes, g0.Grads, g0.Loss
	set.grads = make([][]gradSlice[T], S)
	for i, gr := range g.Grads {
		if gr == nil {
			continue
		}
		k := len(set.grads[0])
		for s, sg := range set.graphs {
			if sg.Grads[i] == nil {
				set.close()
				return nil, fmt.Errorf("model: shard %d does not train %s", s, g.Specs[i].Name)
			}
			set.grads[s] = append(set.grads[s], gradSlice[T]{spec: i})
		}
		n := g.Specs[i].Size()
		for lo := 0; lo < n; lo += gradChunkLen {
			set.chunks = append(set.chunks, gradChunk{k: k, lo: lo, hi: min(lo+gradChunkLen, n)})
		}
	}
	return g, nil
}

// run is Graph.Run of a sharded graph (the input is checked).
func (set *shardSet[T]) run(g *Graph[T], in StepInput) (float64, error) {
	if err := set.split(g, in); err != nil {
		return 0, err
	}
	if kernels.Threads() > 1 {
		release := kernels.HoldSerial()
		var wg sync.WaitGroup
		for s := range set.graphs {
			wg.Add(1)
			go func(s int) {
				defer wg.Done()
				set.losses[s], set.errs[s] = set.graphs[s].Run(set.ins[s])
			}(s)
		}
		wg.Wait()
		release()
	} else {
		for s, sg := range set.graphs {
			set.losses[s], set.errs[s] = sg.Run(set.ins[s])
		}
	}
	if err := errors.Join(set.errs...); err != nil {
		return 0, err
	}
	if err := set.join(g); err != nil {
		return 0, err
	}
	var loss float64
	for _, l := range set.losses {
		loss += l
	}
	return loss, nil
}

// split points each shard's input and side state at its rows: tokens, targets, weights, lengths and document
// starts; forced experts, routing records and allowed-key sets; log p(target); and the balance loss's scale.
func (set *shardSet[T]) split(g *Graph[T], in StepInput) error {
	T_ := g.T
	N := g.B * T_
	for l, r := range g.Routing {
		if r != nil && r.Forced != nil && len(r.Forced) != len(r.Chosen) {
			return fmt.Errorf("model: layer %d: %d forced expert ids for %d tokens × %d", l, len(r.Forced), N, len(r.Chosen)/N)
		}
	}
	for l, m := range g.Masks {
		if m.Allowed != nil && len(m.Allowed) != N*m.K {
			return fmt.Errorf("model: layer %d: allowed-key set has %d entries, want %d×%d", l, len(m.Allowed), N, m.K)
		}
	}
	if len(g.LossSide.Logp) != N {
		g.LossSide.Logp = make([]float32, N)
	}
	nseq := countSequences(in.Lengths) // the balance loss's mean is over these
	for s, sg := range set.graphs {
		r0, r1 := set.rows[s], set.rows[s+1]
		n0, n1 := r0*T_, r1*T_
		sub := StepInput{Tokens: in.Tokens[n0:n1], Targets: in.Targets[n0:n1], Weights: in.Weights[n0:n1],
			Lengths: in.Lengths[r0:r1], Scale: in.Scale}
		if len(in.DocStart) > 0 {
			sub.DocStart = in.DocStart[n0:n1]
		}
		set.ins[s] = sub
		sg.LossSide.Logp = g.LossSide.Logp[n0:n1]
		seqs := countSequences(sub.Lengths)
		for l, r := range g.Routing {
			if r == nil {
				continue
			}
			sr := sg.Routing[l]
			K := len(r.Chosen) / N
			sr.Chosen = r.Chosen[n0*K : n1*K]
			sr.Forced = nil
			if r.Forced != nil {
				sr.Forced = r.Forced[n0*K : n1*K]
			}
			sr.AuxScale = 0
			if nseq > 0 {
				sr.AuxScale = r.AuxScale * float64(seqs) / float64(nseq)
			}
		}
		for l, m := range g.Masks {
			sm := sg.Masks[l]
			sm.Allowed, sm.K = nil, m.K
			if m.Allowed != nil {
				sm.Allowed = m.Allowed[n0*m.K : n1*m.K]
			}
		}
	}
	return nil
}

// countSequences is the number of rows with at least one valid token.
func countSequences(lengths []int32) int {
	n := 0
	for _, l := range lengths {
		if l > 0 {
			n++
		}
	}
	return n
}

// join adds the shards' gradients into shard 0's buffers (in shard order, on the kernel workers) and their
// expert loads and balance losses into the parent's routing records.
func (set *shardSet[T]) join(g *Graph[T]) error {
	for s, sg := range set.graphs {
		for k := range set.grads[s] {
			i := set.grads[s][k].spec
			d := sg.Grad(i)
			if len(d) != g.Specs[i].Size() {
				return fmt.Errorf("model: shard %d: gradient of %s has %d elements, want %d", s, g.Specs[i].Name, len(d), g.Specs[i].Size())
			}
			set.grads[s][k].data = d
		}
	}
	kernels.For(len(set.chunks), 2*gradChunkLen, func(c int) {
		ch := set.chunks[c]
		dst := set.grads[0][ch.k].data[ch.lo:ch.hi]
		for s := 1; s < len(set.graphs); s++ {
			kernels.Axpy(1, set.grads[s][ch.k].data[ch.lo:ch.hi], dst)
		}
	})
	for l, r := range g.Routing {
		if r == nil {
			continue
		}
		clear(r.Load)
		r.AuxLoss = 0
		for _, sg := range set.graphs {
			sr := sg.Routing[l]
			for e, c := range sr.Load {
				r.Load[e] += c
			}
			r.AuxLoss += sr.AuxLoss
		}
	}
	return nil
}

// Shards returns the number of data-parallel shards the graph runs its rows as (1 = one graph).
func (g *Graph[T]) Shards() int {
	if g.shards == nil {
		return 1
	}
	return len(g.shards.graphs)
}

// close releases every shard's tape machine.
func (set *shardSet[T]) close() error {
	var errs []error
	for _, sg := range set.graphs {
		errs = append(errs, sg.Close())
	}
	return errors.Join(errs...)
}

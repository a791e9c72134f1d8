// moe.go: the fused DeepSeek-V3 MoE layer (dsv32-spec.md §5.1–5.2): sigmoid router affinities
// s = σ(x·Eᵀ), selection by s + e_score_correction_bias with group-limited top-k (group score = sum of the
// group's top-2 selection scores, keep topk_group groups, then top num_experts_per_tok experts), gate weights
// from the affinities only, g = routed_scaling_factor·s_i/Σ_K s_j (norm_topk_prob), routed SwiGLU experts
// dispatched as contiguous per-expert batches, and the shared experts added to every token:
//
//	y_t = Σ_{i∈K_t} g_{i,t}·E_i(x_t) + E_shared(x_t)
//
// Keep Routing: when forced expert ids are given (the ids the inference engine chose at sampling), they replace
// the top-k selection while the gate weights are still computed from the current affinities over the forced set,
// so the router keeps receiving gradient. The optional sequence-wise balance loss
// L_Bal = α Σ_i f_i P_i (per sequence, averaged over sequences) adds its gradient to the router in the backward
// pass; its value is reported in AuxLoss. e_score_correction_bias is an input without gradient: only the
// balancing rule (UpdateBias) changes it.

package model

import (
	"fmt"
	"math"
	"slices"
	"sort"

	"gorgonia.org/tensor"

	"github.com/sparrow-rl/sparrow/internal/kernels"
)

// moeConfig are the routing hyper-parameters of a MoE layer.
type moeConfig struct {
	E, K, Groups, KeepGroups int
	Scale                    float64
	NormTopk                 bool
	D, I, SharedI            int
	AuxAlpha                 float64
}

// Routing is the side state of one MoE layer for one step.
type Routing struct {
	// Forced, when non-nil, holds K expert ids per token [N·K] to use instead of the top-k selection.
	Forced []int32
	// Chosen receives the K expert ids per token [N·K] used in the last forward pass (in descending selection
	// score order when selected, in the forced order when forced).
	Chosen []int32
	// Load[i] counts the valid tokens routed to expert i in the last forward pass.
	Load []int
	// AuxLoss is the value of the sequence-wise balance loss of the last forward pass (times AuxScale).
	AuxLoss float64
	// AuxScale multiplies the balance loss (1/micro-batches under gradient accumulation).
	AuxScale float64
}

type expertWork[T Float] struct {
	f      swiglu[T]
	rows   []int // token index of each dispatched row
	slots  []int // n·K + k of each row
	off    int   // first row of this expert in the layer's dispatch buffers
	x, o   []T   // gathered inputs and outputs [ne, D]
	dx, do []T
}

type moeKernel[T Float] struct {
	c       moeConfig
	N, Tn   int // tokens, tokens per row (for sequences)
	lengths []int32
	route   *Routing
	logits  []T // [N, E] router logits, then affinities s
	w       []T // [N, K] gate weights
	dw      []T
	ds      []T // [N, E]
	sel     []float64
	ex      []expertWork[T]
	shared  swiglu[T]
	// Dispatch buffers, allocated once: the experts' rows lie side by side in token-slot order of expert,
	// N·K rows in all whatever the routing, so a step allocates nothing (expert e owns rows [off_e, off_e+ne)).
	xs, os, dxs, dos []T // [N·K, D]
	act              []T // [swigluBuffers·N·K·I] the experts' SwiGLU activations and work space
}

func (k *moeKernel[T]) Name() string           { return "moe" }
func (k *moeKernel[T]) SetInts(ints [][]int32) { k.lengths = ints[len(ints)-1] }
func (k *moeKernel[T]) arity() int {
	a := 4 + 3*k.c.E // x, gate, bias, experts…, [shared…], lengths
	if k.c.SharedI > 0 {
		a += 3
	}
	return a
}
func (k *moeKernel[T]) DiffWRT() []bool {
	d := make([]bool, k.arity())
	for i := range d {
		d[i] = i != 2 && i != len(d)-1
	}
	return d
}
func (k *moeKernel[T]) OutShape(in []tensor.Shape) (tensor.Shape, error) {
	if err := wantShapes(in, k.arity(), "moe"); err != nil {
		return nil, err
	}
	c := k.c
	k.N = in[0][0]
	if k.Tn == 0 || k.N%k.Tn != 0 || !in[len(in)-1].Eq(tensor.Shape{k.N / max(k.Tn, 1)}) {
		return nil, fmt.Errorf("moe: %d tokens, row length %d and lengths %v do not fit", k.N, k.Tn, in[len(in)-1])
	}
	if in[0][1] != c.D || !in[1].Eq(tensor.Shape{c.E, c.D}) || !in[2].Eq(tensor.Shape{c.E}) {
		return nil, fmt.Errorf("moe: x %v, gate %v, bias %v do not fit %d experts of width %d", in[0], in[1], in[2], c.E, c.D)
	}
	for j := 0; j < c.E; j++ {
		if !in[3+3*j].Eq(tensor.Shape{c.I, c.D}) || !in[4+3*j].Eq(tensor.Shape{c.I, c.D}) || !in[5+3*j].Eq(tensor.Shape{c.D, c.I}) {
			return nil, fmt.Errorf("moe: expert %d weights %v %v %v, want [%d %d] [%d %d] [%d %d]", j, in[3+3*j], in[4+3*j], in[5+3*j], c.I, c.D, c.I, c.D, c.D, c.I)
		}
	}
	k.logits, k.ds = make([]T, k.N*c.E), make([]T, k.N*c.E)
	k.w, k.dw = make([]T, k.N*c.K), make([]T, k.N*c.K)
	k.sel = make([]float64, c.E)
	k.ex = make([]expertWork[T], c.E)
	for j := range k.ex {
		// an expert receives each token at most once: at most N rows
		k.ex[j] = expertWork[T]{f: swiglu[T]{D: c.D, I: c.I}, rows: make([]int, 0, k.N), slots: make([]int, 0, k.N)}
	}
	NK := k.N * c.K
	k.xs, k.os, k.dxs, k.dos = make([]T, NK*c.D), make([]T, NK*c.D), make([]T, NK*c.D), make([]T, NK*c.D)
	k.act = make([]T, swigluBuffers*NK*c.I)
	k.shared = swiglu[T]{D: c.D, I: c.SharedI}
	if len(k.route.Chosen) != k.N*c.K {
		k.route.Chosen = make([]int32, k.N*c.K)
	}
	k.route.Load = make([]int, c.E)
	return tensor.Shape{k.N, c.D}, nil
}

func (k *moeKernel[T]) valid(n int) bool {
	return n%k.Tn < int(k.lengths[n/k.Tn])
}

// selectExperts writes the K experts of one token into ids, given affinities s and the correction bias.
// It is shared with the inference engine so both choose identically. It returns the selection margin: the
// smallest gap between a kept and a dropped score, over the group ranking and the expert ranking (a tiny margin
// means two computations that differ by rounding may choose differently).
func selectExperts[T Float](ids []int32, s []T, bias []T, c moeConfig, sel []float64) float64 {
	margin := math.Inf(1)
	E, G := c.E, c.Groups
	for i := 0; i < E; i++ {
		sel[i] = float64(s[i]) + float64(bias[i])
	}
	if G > 1 && c.KeepGroups < G {
		gs := E / G
		type gscore struct {
			g int
			v float64
		}
		var groups [64]gscore
		gl := groups[:0]
		for g := 0; g < G; g++ {
			a, b := math.Inf(-1), math.Inf(-1) // top-2 of the group
			for _, v := range sel[g*gs : (g+1)*gs] {
				if v > a {
					a, b = v, a
				} else if v > b {
					b = v
				}
			}
			if gs == 1 {
				b = 0
			}
			gl = append(gl, gscore{g, a + b})
		}
		// stable insertion sort by descending group score (G is small; no allocation)
		for i := 1; i < len(gl); i++ {
			for j := i; j > 0 && gl[j].v > gl[j-1].v; j-- {
				gl[j], gl[j-1] = gl[j-1], gl[j]
			}
		}
		margin = gl[c.KeepGroups-1].v - gl[c.KeepGroups].v
		for _, x := range gl[c.KeepGroups:] {
			for i := x.g * gs; i < (x.g+1)*gs; i++ {
				sel[i] = math.Inf(-1)
			}
		}
	}
	// top-K by selection score, ties to the lower index.
	for k := 0; k < c.K; k++ {
		best := -1
		for i := 0; i < E; i++ {
			if math.IsInf(sel[i], -1) && sel[i] < 0 {
				continue
			}
			if best < 0 || sel[i] > sel[best] {
				best = i
			}
		}
		ids[k] = int32(best)
		if k == c.K-1 {
			last := sel[best]
			sel[best] = math.Inf(-1)
			next := math.Inf(-1)
			for _, v := range sel {
				next = math.Max(next, v)
			}
			margin = math.Min(margin, last-next)
		}
		sel[best] = math.Inf(-1)
	}
	return margin
}

// gateWeights computes g_k = scale·s_{id_k}/(Σ s + 1e-20) (or scale·s_{id_k} without norm_topk_prob).
func gateWeights[T Float](w []T, ids []int32, s []T, c moeConfig) {
	var sum float64
	for _, id := range ids {
		sum += float64(s[id])
	}
	for kk, id := range ids {
		if c.NormTopk {
			w[kk] = T(c.Scale * float64(s[id]) / (sum + 1e-20))
		} else {
			w[kk] = T(c.Scale * float64(s[id]))
		}
	}
}

func (k *moeKernel[T]) Forward(in [][]T, out []T) error {
	c := k.c
	x, gw, bias := in[0], in[1], in[2]
	N, E, K, D := k.N, c.E, c.K, c.D
	kernels.Linear(k.logits, x, gw, N, D, E, false)
	for i, v := range k.logits {
		k.logits[i] = kernels.Sigmoid(v)
	}
	s := k.logits
	r := k.route
	if r.Forced != nil && len(r.Forced) != N*K {
		return fmt.Errorf("moe: %d forced expert ids for %d tokens × %d", len(r.Forced), N, K)
	}
	for n := 0; n < N; n++ {
		ids := r.Chosen[n*K : (n+1)*K]
		if r.Forced != nil {
			copy(ids, r.Forced[n*K:(n+1)*K])
			for _, id := range ids {
				if id < 0 || int(id) >= E {
					return fmt.Errorf("moe: forced expert id %d at token %d outside [0, %d)", id, n, E)
				}
			}
		} else {
			selectExperts(ids, s[n*E:(n+1)*E], bias, c, k.sel)
		}
		gateWeights(k.w[n*K:(n+1)*K], ids, s[n*E:(n+1)*E], c)
	}
	// dispatch: per expert, the (token, slot) pairs in token order.
	clear(r.Load)
	for j := range k.ex {
		k.ex[j].rows, k.ex[j].slots = k.ex[j].rows[:0], k.ex[j].slots[:0]
	}
	for n := 0; n < N; n++ {
		for kk := 0; kk < K; kk++ {
			e := r.Chosen[n*K+kk]
			k.ex[e].rows = append(k.ex[e].rows, n)
			k.ex[e].slots = append(k.ex[e].slots, n*K+kk)
			if k.valid(n) {
				r.Load[e]++
			}
		}
	}
	off := 0
	for j := range k.ex {
		w := &k.ex[j]
		ne := len(w.rows)
		w.off = off
		w.x, w.o = k.xs[off*D:(off+ne)*D], k.os[off*D:(off+ne)*D]
		w.dx, w.do = k.dxs[off*D:(off+ne)*D], k.dos[off*D:(off+ne)*D]
		w.f.bind(k.act[swigluBuffers*off*c.I:swigluBuffers*(off+ne)*c.I], ne)
		off += ne
	}
	// One expert after another, each product split over the kernel workers by rows (experts on separate
	// workers would leave one idle when loads differ, and a split inside would start more GEMMs than cores).
	for e := range k.ex {
		w := &k.ex[e]
		ne := len(w.rows)
		if ne == 0 {
			continue
		}
		kernels.For(ne, 2*D, func(i int) { // gather the expert's rows
			n := w.rows[i]
			copy(w.x[i*D:(i+1)*D], x[n*D:(n+1)*D])
		})
		w.f.forward(w.o, w.x, in[3+3*e], in[4+3*e], in[5+3*e], ne, false)
	}
	if c.SharedI > 0 {
		b := 3 + 3*E
		k.shared.forward(out, x, in[b], in[b+1], in[b+2], N, false)
	} else {
		clear(out)
	}
	// combine: each token adds its experts' outputs in its own slot order (tokens are independent)
	kernels.For(N, 4*K*D, func(n int) {
		y := out[n*D : (n+1)*D]
		for kk := 0; kk < K; kk++ {
			e := r.Chosen[n*K+kk]
			w := &k.ex[e]
			row := k.rowOf(w, n)
			kernels.Axpy(k.w[n*K+kk], w.o[row*D:(row+1)*D], y)
		}
	})
	r.AuxLoss = 0
	if c.AuxAlpha > 0 {
		r.AuxLoss = k.auxLoss(s, nil)
	}
	return nil
}

// rowOf finds the row of token n in expert w's batch (rows are sorted by token).
func (k *moeKernel[T]) rowOf(w *expertWork[T], n int) int {
	return sort.SearchInts(w.rows, n)
}

// auxLoss returns the sequence-wise balance loss α·mean_b Σ_i f_i P_i (times AuxScale) and, when ds is not nil,
// adds its gradient with respect to the affinities s into ds.
// f_i = E/(K·T_b)·Σ_t 1[i ∈ K_t], P_i = 1/T_b·Σ_t s_{i,t}/Σ_j s_{j,t} over the valid tokens of sequence b.
func (k *moeKernel[T]) auxLoss(s []T, ds []T) float64 {
	c := k.c
	E, K := c.E, c.K
	Tn := k.Tn
	B := k.N / Tn
	nseq := 0
	for b := 0; b < B; b++ {
		if k.valid(b * Tn) {
			nseq++
		}
	}
	if nseq == 0 {
		return 0
	}
	f := make([]float64, E)
	var total float64
	for b := 0; b < B; b++ {
		clear(f)
		tb := 0
		for t := 0; t < Tn; t++ {
			n := b*Tn + t
			if !k.valid(n) {
				continue
			}
			tb++
			for _, id := range k.route.Chosen[n*K : (n+1)*K] {
				f[id]++
			}
		}
		if tb == 0 {
			continue
		}
		for i := range f {
			f[i] *= float64(E) / float64(K*tb)
		}
		// L = α·scale/nseq·Σ_b Σ_i f_i·Σ_t s'_{i,t}/T_b with s' = s/Σ_j s_j; ∂s'_i/∂s_j = (δ_ij − s'_i)/Σ.
		coef := k.c.AuxAlpha * k.route.AuxScale / float64(nseq) / float64(tb)
		for t := 0; t < Tn; t++ {
			n := b*Tn + t
			if !k.valid(n) {
				continue
			}
			row := s[n*E : (n+1)*E]
			var sum float64
			for _, v := range row {
				sum += float64(v)
			}
			var dot float64
			for i, v := range row {
				dot += f[i] * float64(v) / sum
			}
			total += dot / float64(tb)
			if ds != nil {
				for j := range row {
					ds[n*E+j] += T(coef * (f[j] - dot) / sum)
				}
			}
		}
	}
	return c.AuxAlpha * k.route.AuxScale * total / float64(nseq)
}

func (k *moeKernel[T]) Backward(in [][]T, out, dout []T, din [][]T) error {
	c := k.c
	x, gw := in[0], in[1]
	N, E, K, D := k.N, c.E, c.K, c.D
	dx := din[0]
	r := k.route
	if c.SharedI > 0 {
		b := 3 + 3*E
		k.shared.backward(dx, din[b], din[b+1], din[b+2], dout, x, in[b], in[b+1], in[b+2], N)
	}
	for e := range k.ex { // one expert after another, as in the forward pass
		w := &k.ex[e]
		ne := len(w.rows)
		if ne == 0 {
			continue
		}
		clear(w.dx)
		kernels.For(ne, 4*D, func(i int) { // the expert's output gradients and its gate weights' gradients
			n, slot := w.rows[i], w.slots[i]
			dy := dout[n*D : (n+1)*D]
			g := w.do[i*D : (i+1)*D]
			gw := k.w[slot]
			for j := range g {
				g[j] = gw * dy[j]
			}
			k.dw[slot] = kernels.Dot(dy, w.o[i*D:(i+1)*D])
		})
		w.f.backward(w.dx, din[3+3*e], din[4+3*e], din[5+3*e], w.do, w.x, in[3+3*e], in[4+3*e], in[5+3*e], ne)
	}
	// scatter: each token adds its experts' input gradients in ascending expert order (tokens are independent)
	kernels.For(N, 4*K*D, func(n int) {
		var buf [16]int32
		ids := append(buf[:0], r.Chosen[n*K:(n+1)*K]...)
		slices.Sort(ids)
		for _, e := range ids {
			w := &k.ex[e]
			i := k.rowOf(w, n)
			kernels.Axpy(1, w.dx[i*D:(i+1)*D], dx[n*D:(n+1)*D])
		}
	})
	// router: gate weights → affinities → logits.
	s := k.logits
	clear(k.ds)
	for n := 0; n < N; n++ {
		ids := r.Chosen[n*K : (n+1)*K]
		dw := k.dw[n*K : (n+1)*K]
		row := s[n*E : (n+1)*E]
		if c.NormTopk {
			var sum, dot float64
			for kk, id := range ids {
				sum += float64(row[id])
				dot += float64(dw[kk]) * float64(row[id])
			}
			sum += 1e-20
			for kk, id := range ids {
				k.ds[n*E+int(id)] += T(c.Scale / sum * (float64(dw[kk]) - dot/sum))
			}
		} else {
			for kk, id := range ids {
				k.ds[n*E+int(id)] += T(c.Scale) * dw[kk]
			}
		}
	}
	if c.AuxAlpha > 0 {
		k.auxLoss(s, k.ds)
	}
	for i, v := range s {
		k.ds[i] *= v * (1 - v)
	}
	kernels.LinearBackward(dx, din[1], k.ds, x, gw, N, D, E)
	return nil
}

// UpdateBias applies the aux-loss-free balancing rule b_i ← b_i + γ·sign(mean_load − load_i) (§5.2).
func UpdateBias(bias []float32, load []int, gamma float64) {
	if gamma == 0 || len(load) == 0 {
		return
	}
	var mean float64
	for _, l := range load {
		mean += float64(l)
	}
	mean /= float64(len(load))
	for i, l := range load {
		switch {
		case float64(l) < mean:
			bias[i] += float32(gamma)
		case float64(l) > mean:
			bias[i] -= float32(gamma)
		}
	}
}

// LoadCV is the coefficient of variation std/mean of expert loads (0 = perfectly balanced).
func LoadCV(load []int) float64 {
	if len(load) == 0 {
		return 0
	}
	var mean float64
	for _, l := range load {
		mean += float64(l)
	}
	mean /= float64(len(load))
	if mean == 0 {
		return 0
	}
	var v float64
	for _, l := range load {
		d := float64(l) - mean
		v += d * d
	}
	return math.Sqrt(v/float64(len(load))) / mean
}

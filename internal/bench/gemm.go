// gemm.go lists the GEMMs of a training step from the model config (StepGemms) and measures the BLAS on
// those shapes (BenchGemm), the same-run sgemm rate the train-step benchmark is compared with.

package bench

import (
	"fmt"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/internal/kernels"
	"github.com/sparrow-rl/sparrow/model"
)

// StepGemm is one GEMM a training step issues, derived from the model config (see StepGemms).
type StepGemm struct {
	Name   string            `json:"name"`
	Shape  kernels.GemmShape `json:"shape"`
	Count  int               `json:"count"`  // calls per step
	Routed bool              `json:"routed"` // a routed expert's GEMM: its row count M is the mean load N·K/E
}

// StepGemms lists the GEMMs of one training step of model c on B×T tokens as the fused kernels issue them
// (y = x·Wᵀ forward, dx = dy·W and dW = dyᵀ·x backward for every projection; per batch row, head and causal
// query block of model.AttnBlock rows S = Q·Kᵀ and O = P·V forward and dV = Pᵀ·dO, dP = dO·Vᵀ, dQ = dS·K,
// dK = dSᵀ·Q backward, over the keys the block sees). The rows of
// a routed expert depend on the routing; they are given at the mean load N·K/E (rounded down), so the FLOP
// total is exact whenever E divides N·K. The training graph runs its rows as data-parallel shards
// (model.ShardCount of shards, as run.graph_shards; model.ShardRows): each shard issues these GEMMs for its
// own rows.
func StepGemms(c configs.Model, B, T, shards int) []StepGemm {
	S, err := model.ShardCount(model.GraphOptions{B: B, T: T, Shards: shards})
	if err != nil || S < 1 {
		S = 1
	}
	rows := model.ShardRows(B, S)
	shardsOf := map[int]int{} // shards of each row count, in first-seen order
	var order []int
	for s := 0; s < S; s++ {
		b := rows[s+1] - rows[s]
		if shardsOf[b] == 0 {
			order = append(order, b)
		}
		shardsOf[b]++
	}
	var out []StepGemm
	for _, b := range order {
		for _, g := range shardGemms(c, b, T) {
			g.Count *= shardsOf[b]
			out = append(out, g)
		}
	}
	return out
}

// shardGemms lists the GEMMs of one graph (shard) over B×T tokens.
func shardGemms(c configs.Model, B, T int) []StepGemm {
	N := B * T
	D, H, dn, dr, dv := c.HiddenSize, c.NumAttentionHeads, c.QKNopeHeadDim, c.QKRopeHeadDim, c.VHeadDim
	dq := dn + dr
	var out []StepGemm
	add := func(name string, tA, tB bool, m, n, k, count int, routed bool) {
		out = append(out, StepGemm{Name: name, Shape: kernels.GemmShape{TransA: tA, TransB: tB, M: m, N: n, K: k}, Count: count, Routed: routed})
	}
	// linear adds y = x·Wᵀ for x [rows, in], W [out, in], and its two backward products.
	linear := func(name string, rows, in, outw, count int, routed bool) {
		add(name, false, true, rows, outw, in, count, routed)
		add(name+".dx", false, false, rows, in, outw, count, routed)
		add(name+".dw", true, false, outw, in, rows, count, routed)
	}
	for l := 0; l < c.NumHiddenLayers; l++ {
		layer := func(n string) string { return fmt.Sprintf("L%d.%s", l, n) }
		linear(layer("q_a_proj"), N, D, c.QLoraRank, 1, false)
		linear(layer("q_b_proj"), N, c.QLoraRank, H*dq, 1, false)
		linear(layer("kv_a_proj_with_mqa"), N, D, c.KVLoraRank+dr, 1, false)
		linear(layer("kv_b_proj"), N, c.KVLoraRank, H*(dn+dv), 1, false)
		// causal attention per query block [r0, r0+m) over the keys [0, c1) it sees (full-length rows)
		for r0 := 0; r0 < T; r0 += model.AttnBlock {
			m := min(model.AttnBlock, T-r0)
			c1 := r0 + m
			add(layer("attn.qk"), false, true, m, c1, dq, B*H, false)
			add(layer("attn.pv"), false, false, m, dv, c1, B*H, false)
			add(layer("attn.dv"), true, false, c1, dv, m, B*H, false)
			add(layer("attn.dp"), false, true, m, c1, dv, B*H, false)
			add(layer("attn.dq"), false, false, m, dq, c1, B*H, false)
			add(layer("attn.dk"), true, false, c1, dq, m, B*H, false)
		}
		linear(layer("o_proj"), N, H*dv, D, 1, false)
		if !c.IsMoE(l) {
			linear(layer("mlp.gate_proj"), N, D, c.IntermediateSize, 1, false)
			linear(layer("mlp.up_proj"), N, D, c.IntermediateSize, 1, false)
			linear(layer("mlp.down_proj"), N, c.IntermediateSize, D, 1, false)
			continue
		}
		E, I := c.NRoutedExperts, c.MoEIntermediateSize
		linear(layer("mlp.gate"), N, D, E, 1, false)
		if rows := N * c.NumExpertsPerTok / E; rows > 0 {
			linear(layer("mlp.experts.gate_proj"), rows, D, I, E, true)
			linear(layer("mlp.experts.up_proj"), rows, D, I, E, true)
			linear(layer("mlp.experts.down_proj"), rows, I, D, E, true)
		}
		if sh := I * c.NSharedExperts; sh > 0 {
			linear(layer("mlp.shared_experts.gate_proj"), N, D, sh, 1, false)
			linear(layer("mlp.shared_experts.up_proj"), N, D, sh, 1, false)
			linear(layer("mlp.shared_experts.down_proj"), N, sh, D, 1, false)
		}
	}
	linear("lm_head", N, D, c.VocabSize, 1, false)
	return out
}

// GemmRate is the measured sgemm rate of one shape.
type GemmRate struct {
	Name      string  `json:"name"`
	TransA    bool    `json:"trans_a"`
	TransB    bool    `json:"trans_b"`
	M         int     `json:"m"`
	N         int     `json:"n"`
	K         int     `json:"k"`
	Count     int     `json:"count,omitempty"` // model shapes: calls per training step
	GFLOPS    float64 `json:"gflops"`          // median over the repetitions
	USPerCall float64 `json:"us_per_call"`
}

// GemmResult is the outcome of BenchGemm.
type GemmResult struct {
	Env
	Batch  int        `json:"batch"`
	SeqLen int        `json:"seq_len"`
	Reps   int        `json:"reps"`
	Square []GemmRate `json:"square"` // C = A·B at the square sizes
	Model  []GemmRate `json:"model"`  // the distinct shapes of a training step, largest total FLOPs first
	// ModelGFLOPS is the FLOP-weighted rate over the model shapes, Σ count·flops / Σ count·time per call: the
	// speed pure sgemm would run a training step's matmuls at.
	ModelGFLOPS float64 `json:"model_gflops"`
}

// BenchGemm measures sgemm (float32 kernels.Gemm) at the square sizes and at the distinct shapes of a
// training step of the recipe's model (StepGemms, routed experts at their mean load).
func BenchGemm(opts BenchOptions) (GemmResult, error) {
	s, err := newBenchSetup(opts)
	if err != nil {
		return GemmResult{}, err
	}
	defer s.restore()
	o, log := s.opts, s.opts.Log
	for _, n := range o.Sizes {
		if n <= 0 {
			return GemmResult{}, fmt.Errorf("bench: gemm size %d is not positive", n)
		}
	}
	// Merge the step's GEMMs by shape (gate_proj and up_proj share theirs, for instance).
	byShape := map[kernels.GemmShape]int{}
	var stats []GemmStat
	names := map[kernels.GemmShape][]string{}
	for _, g := range StepGemms(s.cfg.Model, s.B, s.T, s.cfg.Run.GraphShards) {
		i, ok := byShape[g.Shape]
		if !ok {
			i = len(stats)
			byShape[g.Shape] = i
			stats = append(stats, GemmStat{TransA: g.Shape.TransA, TransB: g.Shape.TransB, M: g.Shape.M, N: g.Shape.N, K: g.Shape.K, Flops: gemmFlops(g.Shape)})
		}
		stats[i].Count += g.Count
		names[g.Shape] = append(names[g.Shape], g.Name)
	}
	sortStats(stats)
	var all []GemmStat
	for _, n := range o.Sizes {
		all = append(all, GemmStat{M: n, N: n, K: n, Count: 1, Flops: 2 * int64(n) * int64(n) * int64(n)})
	}
	all = append(all, stats...)
	rp := newReplay(all, s.seed)
	log.Info("bench gemm: calibrating", "square_sizes", len(o.Sizes), "model_shapes", len(stats), "min_time", o.MinTime)
	rp.calibrate(o.MinTime)
	for r := 0; r < o.Reps; r++ {
		rp.pass()
		log.Info("bench gemm", "rep", r+1, "of", o.Reps)
	}
	rate := func(i int, name string) GemmRate {
		st := all[i]
		gf := rp.shapeRate(i)
		return GemmRate{Name: name, TransA: st.TransA, TransB: st.TransB, M: st.M, N: st.N, K: st.K,
			GFLOPS: gf / 1e9, USPerCall: float64(st.Flops) / gf * 1e6}
	}
	res := GemmResult{Env: s.env(), Batch: s.B, SeqLen: s.T, Reps: o.Reps}
	for i, n := range o.Sizes {
		res.Square = append(res.Square, rate(i, fmt.Sprintf("%d³", n)))
	}
	var fl, sec float64
	for j, st := range stats {
		i := len(o.Sizes) + j
		nm := names[st.Shape()]
		name := nm[0]
		if len(nm) > 1 {
			name = fmt.Sprintf("%s (+%d)", nm[0], len(nm)-1)
		}
		gr := rate(i, name)
		gr.Count = st.Count
		res.Model = append(res.Model, gr)
		fl += float64(st.TotalFlops())
		sec += float64(st.Count) * gr.USPerCall / 1e6
	}
	if sec > 0 {
		res.ModelGFLOPS = fl / sec / 1e9
	}
	return res, nil
}

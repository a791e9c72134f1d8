// Tests of the benchmarks (bench.go) on the tiny recipe with one or two repetitions: the fields are positive
// and consistent with each other, and the GEMM FLOPs the recorder sees in a training step (and in a decode
// step) equal a closed-form count written here from the model config, which proves that step_gflops counts the
// model's forward+backward matmul FLOPs and nothing else. No assertion depends on timing.
// BenchmarkTrainStep times full training steps of the pretrain recipe and reports tokens/s.

package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/internal/kernels"
	"github.com/sparrow-rl/sparrow/model"
)

// wantStepFlops is the GEMM FLOP count of one training step of model c on B×T tokens, written out from the
// architecture: every projection y = x·Wᵀ costs 2·rows·in·out forward and twice that backward (dx and dW), so
// ×3; attention per batch row and head costs 2·T²·(dq + dv) forward (Q·Kᵀ and P·V over the full T×T block)
// and twice that backward (dV, dP, dQ, dK); the routed experts process N·K rows in all, whatever the routing.
func wantStepFlops(c configs.Model, B, T int) int64 {
	N := int64(B * T)
	D, H := int64(c.HiddenSize), int64(c.NumAttentionHeads)
	dn, dr, dv := int64(c.QKNopeHeadDim), int64(c.QKRopeHeadDim), int64(c.VHeadDim)
	qr, kvr := int64(c.QLoraRank), int64(c.KVLoraRank)
	dq := dn + dr
	var total int64
	for l := 0; l < c.NumHiddenLayers; l++ {
		proj := D*qr + qr*H*dq + D*(kvr+dr) + kvr*H*(dn+dv) + H*dv*D
		total += 3 * 2 * N * proj
		// causal query blocks: Σ over blocks of rows·keys seen (T² without blocking)
		var seen int64
		for r0 := 0; r0 < T; r0 += model.AttnBlock {
			m := min(model.AttnBlock, T-r0)
			seen += int64(m) * int64(r0+m)
		}
		total += 3 * int64(B) * H * 2 * seen * (dq + dv)
		if c.IsMoE(l) {
			E, K, I := int64(c.NRoutedExperts), int64(c.NumExpertsPerTok), int64(c.MoEIntermediateSize)
			shared := I * int64(c.NSharedExperts)
			total += 3 * 2 * N * (D*E + K*3*D*I + 3*D*shared)
		} else {
			total += 3 * 2 * N * 3 * D * int64(c.IntermediateSize)
		}
	}
	total += 3 * 2 * N * D * int64(c.VocabSize)
	return total
}

// wantDecodeFlops is the GEMM FLOP count of one engine step at position pos (pos+1 cached keys): the
// projections, and per head the absorbed MLA products q̃ = W^UKᵀq (dn·kvr), the latent and rope scores
// ((kvr + dr)·n), the context (n·kvr) and the value up-projection (kvr·dv); M = 1 everywhere.
func wantDecodeFlops(c configs.Model, pos int) int64 {
	n := int64(pos + 1)
	D, H := int64(c.HiddenSize), int64(c.NumAttentionHeads)
	dn, dr, dv := int64(c.QKNopeHeadDim), int64(c.QKRopeHeadDim), int64(c.VHeadDim)
	qr, kvr := int64(c.QLoraRank), int64(c.KVLoraRank)
	var total int64
	for l := 0; l < c.NumHiddenLayers; l++ {
		total += D*qr + qr*H*(dn+dr) + D*(kvr+dr) + H*(dn*kvr+(kvr+dr)*n+n*kvr+kvr*dv) + H*dv*D
		if c.IsMoE(l) {
			total += D*int64(c.NRoutedExperts) + int64(c.NumExpertsPerTok+c.NSharedExperts)*3*D*int64(c.MoEIntermediateSize)
		} else {
			total += 3 * D * int64(c.IntermediateSize)
		}
	}
	total += D * int64(c.VocabSize)
	return 2 * total
}

func loadModel(t *testing.T, name string, sets ...string) configs.Model {
	t.Helper()
	cfg, err := configs.Load(name, sets)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Model
}

// TestWantStepFlopsGolden pins the closed form on the tiny recipe with a hand count (B=4, T=32, N=128):
//
//	attention projections per layer: D·qr + qr·H·dq + D·(kvr+dr) + kvr·H·(dn+dv) + H·dv·D
//	                                 = 512 + 512 + 768 + 512 + 512 = 2816 → ×2N×3 = 2 162 688
//	attention core per layer:        B·H·2·T²·(dq+dv) = 8·2·1024·24 = 393 216 → ×3 = 1 179 648
//	dense FFN (layer 0):             3·D·I = 6144 → ×2N×3 = 4 718 592
//	MoE (layer 1):                   D·E + K·3·D·I + 3·D·I_shared = 128 + 3072 + 1536 = 4736 → ×2N×3 = 3 637 248
//	lm_head:                         D·V = 32·272 = 8704 → ×2N×3 = 6 684 672
//	total = 2·(2 162 688 + 1 179 648) + 4 718 592 + 3 637 248 + 6 684 672 = 21 725 184
func TestWantStepFlopsGolden(t *testing.T) {
	c := loadModel(t, "tiny")
	if got := wantStepFlops(c, 4, 32); got != 21725184 {
		t.Fatalf("closed form on tiny B=4 T=32 = %d, hand count 21725184", got)
	}
	// One decode step of tiny at position 0 (n = 1), by hand:
	//   per layer projections 512 + 512 + 768 + 2·(128 + 24 + 16 + 128) + 512 = 2896
	//   dense FFN 6144, MoE 128 + 3·3·32·16 = 4736, lm_head 8704 → 2·(2·2896 + 6144 + 4736 + 8704) = 50 752
	if got := wantDecodeFlops(c, 0); got != 50752 {
		t.Fatalf("decode closed form on tiny at position 0 = %d, hand count 50752", got)
	}
}

// expertForm reports whether s is one of the six GEMM forms of a routed expert of model c (gate/up/down,
// forward, dx, dW) for some row count.
func expertForm(c configs.Model, s kernels.GemmShape) bool {
	D, I := c.HiddenSize, c.MoEIntermediateSize
	switch {
	case !s.TransA && s.TransB: // forward y = x·Wᵀ: [M, out] with inner in
		return (s.N == I && s.K == D) || (s.N == D && s.K == I)
	case !s.TransA && !s.TransB: // dx = dy·W
		return (s.N == D && s.K == I) || (s.N == I && s.K == D)
	case s.TransA && !s.TransB: // dW = dyᵀ·x
		return (s.M == I && s.N == D) || (s.M == D && s.N == I)
	}
	return false
}

func TestStepGemmsMatchRecorder(t *testing.T) {
	tests := []struct {
		name   string
		config string
		sets   []string
		B, T   int
	}{
		{"tiny", "tiny", nil, 0, 0},
		{"tiny odd batch", "tiny", nil, 3, 20},
		{"tiny without shared experts", "tiny", []string{"model.n_shared_experts=0"}, 2, 16},
		{"tiny all dense", "tiny", []string{"model.first_k_dense_replace=2"}, 2, 16},
		{"pretrain model, small batch", "pretrain", nil, 2, 16},
		{"pretrain model, two uneven attention blocks", "pretrain", nil, 1, 100},
		{"tiny one graph", "tiny", []string{"run.graph_shards=1"}, 4, 16},
		{"tiny three uneven shards", "tiny", []string{"run.graph_shards=3"}, 5, 16},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb, err := NewTrainStepBench(BenchOptions{Config: tc.config, Sets: tc.sets, Batch: tc.B, SeqLen: tc.T, Seed: 3})
			if err != nil {
				t.Fatal(err)
			}
			defer tb.Close()
			c := tb.Config.Model
			B, T := tb.B, tb.T
			if tc.B > 0 && (B != tc.B || T != tc.T) {
				t.Fatalf("bench shape %d×%d, asked %d×%d", B, T, tc.B, tc.T)
			}
			rec, err := RecordGemms(tb.Step)
			if err != nil {
				t.Fatal(err)
			}
			want := wantStepFlops(c, B, T)
			if got := rec.TotalFlops(); got != want {
				t.Fatalf("recorded GEMM FLOPs of a step = %d, closed form = %d (diff %d)", got, want, got-want)
			}
			// The config-derived list agrees with the closed form (E divides N·K in every case here) ...
			var listed, routed int64
			expect := map[kernels.GemmShape]int{}
			for _, g := range StepGemms(c, B, T, tb.Config.Run.GraphShards) {
				f := gemmFlops(g.Shape) * int64(g.Count)
				listed += f
				if g.Routed {
					routed += f
					continue
				}
				expect[g.Shape] += g.Count
			}
			if listed != want {
				t.Fatalf("StepGemms total %d FLOPs, closed form %d", listed, want)
			}
			// ... and shape by shape with the recording: every non-expert GEMM is issued as listed, and what is
			// left are expert GEMMs (rows set by the routing) with the FLOPs of N·K rows.
			got := map[kernels.GemmShape]int{}
			for _, s := range rec.Stats() {
				got[s.Shape()] = s.Count
			}
			for s, n := range expect {
				if got[s] < n {
					t.Errorf("shape %+v: recorded %d calls, want at least %d", s, got[s], n)
				}
				got[s] -= n
			}
			var rest int64
			for s, n := range got {
				if n == 0 {
					continue
				}
				if !expertForm(c, s) {
					t.Errorf("shape %+v called %d times more than listed and is no routed-expert form", s, n)
				}
				rest += gemmFlops(s) * int64(n)
			}
			if rest != routed {
				t.Errorf("routed-expert GEMMs: recorded %d FLOPs, want %d", rest, routed)
			}
			if tb.Opt.Step != 1 || tb.Steps != 1 || tb.Skipped != 0 {
				t.Errorf("after one step: optimizer step %d, bench steps %d, skipped %d", tb.Opt.Step, tb.Steps, tb.Skipped)
			}
		})
	}
}

// TestTrainStepUpdatesWeights checks that a step is a whole training step: the graph's gradients reach the
// optimizer and the trained weights move, while untrained tensors (the DSA indexer, the correction bias) stay.
func TestTrainStepUpdatesWeights(t *testing.T) {
	tb, err := NewTrainStepBench(BenchOptions{Config: "tiny", Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close()
	before := tb.Params.Clone()
	if err := tb.Step(); err != nil {
		t.Fatal(err)
	}
	trained := map[int]bool{}
	for _, i := range tb.gradOf {
		trained[i] = true
	}
	for i, s := range tb.Params.Specs {
		changed := false
		for k, v := range tb.Params.Data[i] {
			if v != before.Data[i][k] {
				changed = true
				break
			}
		}
		if changed != trained[i] {
			t.Errorf("%s: changed=%v after one step, trained=%v", s.Name, changed, trained[i])
		}
	}
	if !(tb.GradNorm > 0) || math.IsInf(tb.GradNorm, 0) {
		t.Errorf("gradient norm %v", tb.GradNorm)
	}
	if ln := math.Log(float64(tb.Config.Model.VocabSize)); math.Abs(tb.Loss-ln) > 0.5 {
		t.Errorf("first loss %v on random tokens, want about ln(vocab) = %v", tb.Loss, ln)
	}
}

func TestBenchTrainStepTiny(t *testing.T) {
	res, err := BenchTrainStep(BenchOptions{Config: "tiny", Reps: 2, Warmup: 1, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	c := loadModel(t, "tiny")
	if res.Batch != 4 || res.SeqLen != 32 || res.Reps != 2 || res.Threads != 1 || res.Config != "tiny" || res.GraphShards != model.DefaultShards {
		t.Errorf("shape/setup: batch %d seq %d reps %d threads %d config %q graph shards %d", res.Batch, res.SeqLen, res.Reps, res.Threads, res.Config, res.GraphShards)
	}
	if kernels.Threads() == 1 && res.GOMAXPROCS > 1 {
		t.Errorf("the kernel thread count was not restored after the benchmark")
	}
	if res.StepFlops != wantStepFlops(c, 4, 32) {
		t.Errorf("step_flops %d, want %d", res.StepFlops, wantStepFlops(c, 4, 32))
	}
	positive := map[string]float64{
		"tokens_per_s": res.TokensPerS, "step_ms": res.StepMS, "fwd_bwd_ms": res.FwdBwdMS, "optimizer_ms": res.OptimizerMS,
		"step_gflops": res.StepGFLOPS, "sgemm_gflops": res.SgemmGFLOPS, "gemm_ms": res.GemmMS, "ratio": res.Ratio,
		"alloc_bytes_per_step": res.AllocBytesPerStep, "grad_norm": res.GradNorm,
	}
	for k, v := range positive {
		if !(v > 0) || math.IsInf(v, 0) {
			t.Errorf("%s = %v, want positive and finite", k, v)
		}
	}
	near := func(name string, got, want float64) {
		if math.Abs(got-want) > 1e-9*math.Abs(want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	near("tokens_per_s", res.TokensPerS, float64(res.Batch*res.SeqLen)/(res.StepMS/1e3))
	near("step_gflops", res.StepGFLOPS, float64(res.StepFlops)/(res.StepMS/1e3)/1e9)
	near("ratio", res.Ratio, res.StepGFLOPS/res.SgemmGFLOPS)
	near("gemm_ms", res.GemmMS, float64(res.StepFlops)/(res.SgemmGFLOPS*1e9)*1e3)
	if !(res.StepMSMin <= res.StepMS && res.StepMS <= res.StepMSMax) {
		t.Errorf("median step %v ms outside [%v, %v]", res.StepMS, res.StepMSMin, res.StepMSMax)
	}
	if res.FwdBwdMS+res.OptimizerMS > res.StepMSMax*1.0001+1e-3 {
		t.Errorf("fwd_bwd %v + optimizer %v ms exceed the slowest step %v ms", res.FwdBwdMS, res.OptimizerMS, res.StepMSMax)
	}
	var flops int64
	calls := 0
	for _, g := range res.Gemms {
		flops += g.TotalFlops()
		calls += g.Count
		if !(g.GFLOPS > 0) || g.Flops != 2*int64(g.M)*int64(g.N)*int64(g.K) {
			t.Errorf("gemm %+v: rate or flops wrong", g)
		}
	}
	if flops != res.StepFlops || calls != res.GemmCalls || len(res.Gemms) != res.DistinctGemms {
		t.Errorf("gemm list: %d FLOPs, %d calls, %d shapes; result says %d, %d, %d", flops, calls, len(res.Gemms), res.StepFlops, res.GemmCalls, res.DistinctGemms)
	}
	for i := 1; i < len(res.Gemms); i++ {
		if res.Gemms[i].TotalFlops() > res.Gemms[i-1].TotalFlops() {
			t.Errorf("gemm list not sorted by total FLOPs at %d", i)
		}
	}
	p := model.NewParams(c)
	total, active := p.Count()
	trained := 0
	for _, s := range p.Specs {
		if model.DefaultTrainable(s) {
			trained += s.Size()
		}
	}
	if res.Params != total || res.ActiveParams != active || res.TrainedParams != trained || trained >= total {
		t.Errorf("params %d/%d active %d/%d trained %d/%d", res.Params, total, res.ActiveParams, active, res.TrainedParams, trained)
	}
	if res.SkippedSteps != 0 || res.Backend != kernels.Backend() {
		t.Errorf("skipped %d, backend %q", res.SkippedSteps, res.Backend)
	}
	// The JSON object carries the fields the issue names.
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"tokens_per_s", "step_gflops", "sgemm_gflops", "ratio", "backend", "threads", "alloc_bytes_per_step", "load_avg", "gemms"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, b)
		}
	}
}

// TestBenchDecodeTiny: the decode benchmark's counts and rates on the tiny recipe, one sequence and three
// decoded together (the GEMM FLOPs per generated token are the closed form's either way).
func TestBenchDecodeTiny(t *testing.T) {
	for _, batch := range []int{1, 3} {
		t.Run(fmt.Sprintf("batch=%d", batch), func(t *testing.T) { testBenchDecodeTiny(t, batch) })
	}
}

func testBenchDecodeTiny(t *testing.T, batch int) {
	const tokens = 12
	res, err := BenchDecode(BenchOptions{Config: "tiny", Reps: 2, Tokens: tokens, Prompt: "1+1=", DecodeBatch: batch})
	if err != nil {
		t.Fatal(err)
	}
	if res.Batch != batch || math.Abs(res.MSPerStep-float64(batch)*res.MSPerToken) > 1e-9*res.MSPerStep {
		t.Errorf("batch %d, ms per step %v, per token %v", res.Batch, res.MSPerStep, res.MSPerToken)
	}
	c := loadModel(t, "tiny")
	if res.PromptTokens != 4 || res.Tokens != tokens || res.Reps != 2 {
		t.Errorf("prompt %d tokens %d reps %d", res.PromptTokens, res.Tokens, res.Reps)
	}
	for k, v := range map[string]float64{"tokens_per_s": res.TokensPerS, "ms_per_token": res.MSPerToken,
		"prefill_tokens_per_s": res.PrefillTokensPerS, "gflops": res.GFLOPS} {
		if !(v > 0) || math.IsInf(v, 0) {
			t.Errorf("%s = %v, want positive and finite", k, v)
		}
	}
	if math.Abs(res.MSPerToken*res.TokensPerS-1000) > 1e-6 {
		t.Errorf("ms_per_token %v × tokens_per_s %v ≠ 1000", res.MSPerToken, res.TokensPerS)
	}
	// Decode steps run at positions 4 … 4+tokens−2 (the prompt fills 0 … 3).
	var want int64
	for pos := 4; pos < 4+tokens-1; pos++ {
		want += wantDecodeFlops(c, pos)
	}
	if got := res.GemmFlopsPerToken * float64(tokens-1); math.Abs(got-float64(want)) > 1e-6*float64(want) {
		t.Errorf("decode GEMM FLOPs %v, closed form %d", got, want)
	}
	if n := len(res.Sample); n < tokens { // tokens < sampleTokens: all of them are shown
		t.Errorf("sample %q shorter than %d tokens", res.Sample, tokens)
	}
}

func TestBenchGemmTiny(t *testing.T) {
	res, err := BenchGemm(BenchOptions{Config: "tiny", Reps: 1, Sizes: []int{16, 48}, MinTime: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Square) != 2 || res.Square[1].M != 48 || res.Square[1].Name != "48³" {
		t.Fatalf("square results %+v", res.Square)
	}
	c := loadModel(t, "tiny")
	calls := 0
	for _, g := range StepGemms(c, 4, 32, 0) {
		calls += g.Count
	}
	got := 0
	for _, r := range append(append([]GemmRate{}, res.Square...), res.Model...) {
		got += r.Count
		flops := 2 * float64(r.M) * float64(r.N) * float64(r.K)
		if !(r.GFLOPS > 0) || math.Abs(r.GFLOPS*1e9*r.USPerCall/1e6-flops) > 1e-6*flops {
			t.Errorf("%s: %v GFLOP/s at %v µs per call for %v FLOPs", r.Name, r.GFLOPS, r.USPerCall, flops)
		}
	}
	if got != calls {
		t.Errorf("model shapes count %d calls per step, StepGemms %d", got, calls)
	}
	if !(res.ModelGFLOPS > 0) {
		t.Errorf("model_gflops %v", res.ModelGFLOPS)
	}
}

func TestBenchErrors(t *testing.T) {
	tests := []struct {
		name string
		run  func() error
		want string
	}{
		{"unknown recipe", func() error { _, err := BenchTrainStep(BenchOptions{Config: "no-such-recipe"}); return err }, "no-such-recipe"},
		{"bad override", func() error {
			_, err := BenchTrainStep(BenchOptions{Config: "tiny", Sets: []string{"model.hidden_sizes=3"}})
			return err
		}, "hidden_sizes"},
		{"sequence too long", func() error { _, err := BenchTrainStep(BenchOptions{Config: "tiny", SeqLen: 1 << 20}); return err }, "max_position_embeddings"},
		{"decode one token", func() error { _, err := BenchDecode(BenchOptions{Config: "tiny", Tokens: 1}); return err }, "at least 2 tokens"},
		{"decode too long", func() error { _, err := BenchDecode(BenchOptions{Config: "tiny", Tokens: 1 << 20}); return err }, "max_position_embeddings"},
		{"gemm size", func() error { _, err := BenchGemm(BenchOptions{Config: "tiny", Sizes: []int{64, 0}}); return err }, "size 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{9, 9, 1, 9, 1}, 9},
	}
	for _, tc := range tests {
		in := append([]float64(nil), tc.in...)
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
		for i := range in {
			if in[i] != tc.in[i] {
				t.Errorf("median reordered its input %v", tc.in)
			}
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Errorf("median of nothing is not NaN")
	}
}

// BenchmarkTrainStep times full training steps (forward, backward, clipping, AdamW) of the pretrain recipe's
// model and batch and reports tokens/s and the step's effective GEMM rate.
func BenchmarkTrainStep(b *testing.B) {
	tb, err := NewTrainStepBench(BenchOptions{Config: "pretrain"})
	if err != nil {
		b.Fatal(err)
	}
	defer tb.Close()
	rec, err := RecordGemms(tb.Step) // also the warm-up step
	if err != nil {
		b.Fatal(err)
	}
	flops := rec.TotalFlops()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := tb.Step(); err != nil {
			b.Fatal(err)
		}
	}
	sec := b.Elapsed().Seconds()
	b.ReportMetric(float64(tb.B*tb.T*b.N)/sec, "tokens/s")
	b.ReportMetric(float64(flops)*float64(b.N)/sec/1e9, "GFLOP/s")
}

// trainstep.go measures one training step (BenchTrainStep): tokens/s, CPU and allocation per step, the
// effective GFLOP/s next to the same-run sgemm rate on the step's own shapes, and optional pprof profiles.

package bench

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"time"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/internal/cputime"
	"github.com/sparrow-rl/sparrow/internal/kernels"
	"github.com/sparrow-rl/sparrow/model"
	"github.com/sparrow-rl/sparrow/trainer"
)

// TrainStepBench is one training setup driven step by step: a randomly initialised model of the recipe, its
// compiled training graph for B×T, AdamW over every trained tensor, and synthetic token batches.
type TrainStepBench struct {
	Config *configs.Config
	Params *model.Params
	Graph  *model.Graph[float32]
	Opt    *trainer.AdamW
	B, T   int
	LR     float64 // the recipe's peak learning rate, held constant
	Clip   float64 // the recipe's grad_clip (0 = no clipping; the norm is computed anyway)

	// After each Step: the loss, the gradient norm before clipping, and the durations of the graph run
	// (forward+backward) and of the optimizer part (norm, clipping, AdamW).
	Loss, GradNorm float64
	RunTime        time.Duration
	OptTime        time.Duration
	Steps, Skipped int // steps run; steps whose loss or gradient norm was not finite (not applied)

	gradOf  []int // spec index of each optimizer group
	batches []model.StepInput
}

// NewTrainStepBench builds the model, graph, optimizer and two synthetic batches for the options.
func NewTrainStepBench(opts BenchOptions) (*TrainStepBench, error) {
	s, err := newBenchSetup(opts)
	if err != nil {
		return nil, err
	}
	// The thread count stays set for the life of the bench (a Go benchmark drives it step by step).
	return newTrainStepBench(s)
}

func newTrainStepBench(s *benchSetup) (*TrainStepBench, error) {
	cfg := s.cfg
	p := model.NewParams(cfg.Model)
	p.Init(s.seed)
	g, err := model.NewGraph[float32](cfg.Model, p.Data, model.GraphOptions{B: s.B, T: s.T, Shards: cfg.Run.GraphShards})
	if err != nil {
		return nil, fmt.Errorf("bench: recipe %s: %w", s.opts.Config, err)
	}
	st := cfg.Stages[0]
	tb := &TrainStepBench{Config: cfg, Params: p, Graph: g, B: s.B, T: s.T, LR: st.Optimizer.LR, Clip: st.Optimizer.GradClip}
	// The Grad slices are replaced by the graph's own gradient buffers after each Run.
	groups, gradOf := trainedGroups(p, g)
	tb.gradOf = gradOf
	o := st.Optimizer
	tb.Opt = trainer.NewAdamW(groups, o.Beta1, o.Beta2, o.Eps, o.WeightDecay)
	rng := rand.New(rand.NewPCG(s.seed, 0xbe9c4))
	for range 2 {
		tb.batches = append(tb.batches, syntheticBatch(rng, s.B, s.T, min(256, cfg.Model.VocabSize)))
	}
	return tb, nil
}

// trainedGroups returns the optimizer groups of every tensor the graph differentiates (weight decay on
// matrices only, not on norms and biases), and the spec index of each (to copy the graph's gradients in).
func trainedGroups(p *model.Params, g *model.Graph[float32]) (groups []trainer.ParamGroup, specIndex []int) {
	for i, sp := range p.Specs {
		if g.Grads[i] != nil {
			groups = append(groups, trainer.ParamGroup{Name: sp.Name, Value: p.Data[i], Grad: make([]float32, sp.Size()), Decay: sp.Role == model.Weight})
			specIndex = append(specIndex, i)
		}
	}
	return groups, specIndex
}

// syntheticBatch fills B rows of T random byte tokens; the targets are the next tokens of the same row (a
// fresh random token after the last), every position is trained, and the loss is the mean over B·T tokens.
func syntheticBatch(rng *rand.Rand, B, T, vocab int) model.StepInput {
	N := B * T
	in := model.StepInput{Tokens: make([]int32, N), Targets: make([]int32, N), Weights: make([]float32, N),
		Lengths: make([]int32, B), Scale: 1 / float64(N)}
	for b := 0; b < B; b++ {
		row := in.Tokens[b*T : (b+1)*T]
		for t := range row {
			row[t] = int32(rng.IntN(vocab))
		}
		copy(in.Targets[b*T:(b+1)*T-1], row[1:])
		in.Targets[(b+1)*T-1] = int32(rng.IntN(vocab))
		in.Lengths[b] = int32(T)
	}
	for i := range in.Weights {
		in.Weights[i] = 1
	}
	return in
}

// Step runs one full training step: forward and backward through the graph, the global gradient norm and
// clipping, and the AdamW update. A step with a non-finite loss or norm is counted in Skipped, not applied.
func (tb *TrainStepBench) Step() error {
	in := tb.batches[tb.Steps%len(tb.batches)]
	t0 := time.Now()
	loss, err := tb.Graph.Run(in)
	if err != nil {
		return fmt.Errorf("bench: step %d: %w", tb.Steps, err)
	}
	t1 := time.Now()
	groups := tb.Opt.Groups()
	for k, i := range tb.gradOf {
		gr := tb.Graph.Grad(i)
		if len(gr) != len(groups[k].Value) {
			return fmt.Errorf("bench: step %d: gradient of %s has %d elements, want %d", tb.Steps, groups[k].Name, len(gr), len(groups[k].Value))
		}
		groups[k].Grad = gr
	}
	norm, _ := trainer.ClipGrads(groups, tb.Clip)
	if math.IsNaN(loss) || math.IsInf(loss, 0) || math.IsNaN(norm) || math.IsInf(norm, 0) {
		tb.Skipped++
	} else {
		tb.Opt.Update(tb.LR)
	}
	t2 := time.Now()
	tb.Loss, tb.GradNorm, tb.RunTime, tb.OptTime = loss, norm, t1.Sub(t0), t2.Sub(t1)
	tb.Steps++
	return nil
}

// Close releases the graph's tape machine.
func (tb *TrainStepBench) Close() error { return tb.Graph.Close() }

// GemmStat is one distinct GEMM shape of a step: how often the step calls it, its FLOPs per call, and, in
// the train-step benchmark, the median sgemm rate of replaying it alone.
type GemmStat struct {
	TransA bool    `json:"trans_a"`
	TransB bool    `json:"trans_b"`
	M      int     `json:"m"`
	N      int     `json:"n"`
	K      int     `json:"k"`
	Count  int     `json:"count"`
	Flops  int64   `json:"flops"` // 2·M·N·K per call
	GFLOPS float64 `json:"gflops,omitempty"`
}

// Shape returns the kernels form of the shape.
func (g GemmStat) Shape() kernels.GemmShape {
	return kernels.GemmShape{TransA: g.TransA, TransB: g.TransB, M: g.M, N: g.N, K: g.K}
}

// TotalFlops is Count·Flops.
func (g GemmStat) TotalFlops() int64 { return int64(g.Count) * g.Flops }

func gemmFlops(s kernels.GemmShape) int64 { return 2 * int64(s.M) * int64(s.N) * int64(s.K) }

// GemmRecording collects the shapes passed to kernels.GemmRecorder (safe for concurrent use: the kernels
// issue GEMMs from several goroutines).
type GemmRecording struct {
	mu     sync.Mutex
	counts map[kernels.GemmShape]int
}

// RecordGemms runs f with kernels.GemmRecorder collecting every GEMM shape, and restores the previous
// recorder afterwards. Nothing else may run kernels meanwhile, or its GEMMs are counted too.
func RecordGemms(f func() error) (*GemmRecording, error) {
	r := &GemmRecording{counts: map[kernels.GemmShape]int{}}
	prev := kernels.GemmRecorder
	kernels.GemmRecorder = func(s kernels.GemmShape) {
		r.mu.Lock()
		r.counts[s]++
		r.mu.Unlock()
	}
	defer func() { kernels.GemmRecorder = prev }()
	err := f()
	return r, err
}

// Stats returns the distinct shapes with their counts, the largest total FLOPs first (ties in shape order).
func (r *GemmRecording) Stats() []GemmStat {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]GemmStat, 0, len(r.counts))
	for s, c := range r.counts {
		out = append(out, GemmStat{TransA: s.TransA, TransB: s.TransB, M: s.M, N: s.N, K: s.K, Count: c, Flops: gemmFlops(s)})
	}
	sortStats(out)
	return out
}

func sortStats(st []GemmStat) {
	slices.SortFunc(st, func(a, b GemmStat) int {
		if c := cmp.Compare(b.TotalFlops(), a.TotalFlops()); c != 0 {
			return c
		}
		return cmpShape(a.Shape(), b.Shape())
	})
}

func cmpShape(a, b kernels.GemmShape) int {
	bi := func(v bool) int {
		if v {
			return 1
		}
		return 0
	}
	return cmp.Or(cmp.Compare(bi(a.TransA), bi(b.TransA)), cmp.Compare(bi(a.TransB), bi(b.TransB)),
		cmp.Compare(a.M, b.M), cmp.Compare(a.N, b.N), cmp.Compare(a.K, b.K))
}

// TotalFlops sums Count·Flops over the recorded shapes.
func (r *GemmRecording) TotalFlops() int64 {
	var t int64
	for _, s := range r.Stats() {
		t += s.TotalFlops()
	}
	return t
}

// Calls is the number of recorded GEMM calls.
func (r *GemmRecording) Calls() int {
	n := 0
	for _, s := range r.Stats() {
		n += s.Count
	}
	return n
}

// TrainStepResult is the outcome of BenchTrainStep; the times are medians over the repetitions.
type TrainStepResult struct {
	Env
	Batch         int `json:"batch"`
	SeqLen        int `json:"seq_len"`
	GraphShards   int `json:"graph_shards"`   // data-parallel shards of the training graph (run.graph_shards; 1 = one graph)
	Params        int `json:"params"`         // all parameters (buffers excluded)
	ActiveParams  int `json:"active_params"`  // per token: routed experts counted num_experts_per_tok times
	TrainedParams int `json:"trained_params"` // what the optimizer updates
	Reps          int `json:"reps"`
	Warmup        int `json:"warmup"`

	TokensPerS  float64 `json:"tokens_per_s"` // B·T / median step time
	StepMS      float64 `json:"step_ms"`      // median full step (forward, backward, clipping, AdamW)
	StepMSMin   float64 `json:"step_ms_min"`
	StepMSMax   float64 `json:"step_ms_max"`
	FwdBwdMS    float64 `json:"fwd_bwd_ms"`   // median graph run (forward+backward)
	OptimizerMS float64 `json:"optimizer_ms"` // median norm + clipping + AdamW
	// CPUMSPerStep is the median process CPU time (user + system, every thread, OpenBLAS's included) of a step:
	// unlike step_ms it does not count time spent waiting for a core, so it compares runs on a loaded machine.
	CPUMSPerStep float64 `json:"cpu_ms_per_step"`
	StepFlops    int64   `json:"step_flops"`   // GEMM FLOPs of one step (forward+backward, attention included)
	StepGFLOPS   float64 `json:"step_gflops"`  // step_flops / median step time
	SgemmGFLOPS  float64 `json:"sgemm_gflops"` // median over replay passes of Σ count·flops / Σ count·time per call
	GemmMS       float64 `json:"gemm_ms"`      // step_flops / sgemm rate: the step's matmuls as pure sgemm
	Ratio        float64 `json:"ratio"`        // step_gflops / sgemm_gflops

	AllocBytesPerStep float64 `json:"alloc_bytes_per_step"` // runtime.MemStats.TotalAlloc delta per timed step
	AllocsPerStep     float64 `json:"allocs_per_step"`      // runtime.MemStats.Mallocs delta per timed step
	GCPerStep         float64 `json:"gc_per_step"`          // garbage collections per timed step

	Loss          float64    `json:"loss"`      // of the last step (random data: about ln 256 ≈ 5.55 at first)
	GradNorm      float64    `json:"grad_norm"` // of the last step, before clipping
	SkippedSteps  int        `json:"skipped_steps"`
	GemmCalls     int        `json:"gemm_calls"` // per step
	DistinctGemms int        `json:"distinct_gemms"`
	Gemms         []GemmStat `json:"gemms"` // the step's distinct shapes, largest total FLOPs first
	Weights       string     `json:"weights"`
}

// BenchTrainStep measures a full training step (see the file comment).
func BenchTrainStep(opts BenchOptions) (TrainStepResult, error) {
	s, err := newBenchSetup(opts)
	if err != nil {
		return TrainStepResult{}, err
	}
	defer s.restore()
	o, log := s.opts, s.opts.Log
	log.Info("bench train-step: building the model and its training graph", "config", o.Config, "batch", s.B, "seq_len", s.T)
	tb, err := newTrainStepBench(s)
	if err != nil {
		return TrainStepResult{}, err
	}
	defer tb.Close()
	rec, err := RecordGemms(tb.Step)
	if err != nil {
		return TrainStepResult{}, fmt.Errorf("bench: recording step: %w", err)
	}
	stats := rec.Stats()
	var flops int64
	calls := 0
	for _, st := range stats {
		flops += st.TotalFlops()
		calls += st.Count
	}
	if flops == 0 {
		return TrainStepResult{}, errors.New("bench: the training step issued no GEMM (is kernels.GemmRecorder wired?)")
	}
	log.Info("bench train-step: recorded the step's GEMMs", "calls", calls, "distinct", len(stats), "gflop", float64(flops)/1e9)
	for i := 0; i < o.Warmup; i++ {
		if err := tb.Step(); err != nil {
			return TrainStepResult{}, err
		}
	}
	rp := newReplay(stats, s.seed)
	rp.calibrate(replayMinTime)
	stepT := make([]float64, 0, o.Reps)
	cpuT := make([]float64, 0, o.Reps)
	runT := make([]float64, 0, o.Reps)
	optT := make([]float64, 0, o.Reps)
	rates := make([]float64, 0, o.Reps)
	var allocB, allocN, gcs uint64
	var m0, m1 runtime.MemStats
	for r := 0; r < o.Reps; r++ {
		runtime.ReadMemStats(&m0)
		c0, t0 := cputime.Process(), time.Now()
		if err := tb.Step(); err != nil {
			return TrainStepResult{}, err
		}
		el, cpu := time.Since(t0).Seconds(), (cputime.Process() - c0).Seconds()
		runtime.ReadMemStats(&m1)
		cpuT = append(cpuT, cpu)
		allocB += m1.TotalAlloc - m0.TotalAlloc
		allocN += m1.Mallocs - m0.Mallocs
		gcs += uint64(m1.NumGC - m0.NumGC)
		stepT = append(stepT, el)
		runT = append(runT, tb.RunTime.Seconds())
		optT = append(optT, tb.OptTime.Seconds())
		rates = append(rates, rp.pass())
		log.Info("bench train-step", "rep", r+1, "of", o.Reps, "step_ms", round3(el*1e3), "loss", round3(tb.Loss),
			"sgemm_gflops", round3(rates[len(rates)-1]/1e9))
	}
	med := median(stepT)
	sg := median(rates)
	total, active := tb.Params.Count()
	trained := 0
	for _, g := range tb.Opt.Groups() {
		trained += len(g.Value)
	}
	for i := range stats {
		stats[i].GFLOPS = round3(rp.shapeRate(i) / 1e9)
	}
	n := float64(o.Reps)
	res := TrainStepResult{
		Env: s.env(), Batch: s.B, SeqLen: s.T, GraphShards: tb.Graph.Shards(), Params: total, ActiveParams: active, TrainedParams: trained,
		Reps: o.Reps, Warmup: o.Warmup,
		TokensPerS: float64(s.B*s.T) / med, StepMS: med * 1e3, StepMSMin: slices.Min(stepT) * 1e3, StepMSMax: slices.Max(stepT) * 1e3,
		FwdBwdMS: median(runT) * 1e3, OptimizerMS: median(optT) * 1e3, CPUMSPerStep: median(cpuT) * 1e3,
		StepFlops: flops, StepGFLOPS: float64(flops) / med / 1e9, SgemmGFLOPS: sg / 1e9, GemmMS: float64(flops) / sg * 1e3,
		AllocBytesPerStep: float64(allocB) / n, AllocsPerStep: float64(allocN) / n, GCPerStep: float64(gcs) / n,
		Loss: tb.Loss, GradNorm: tb.GradNorm, SkippedSteps: tb.Skipped, GemmCalls: calls, DistinctGemms: len(stats),
		Gemms: stats, Weights: fmt.Sprintf("random init (seed %d), synthetic byte tokens", s.seed),
	}
	res.Ratio = res.StepGFLOPS / res.SgemmGFLOPS
	if err := profileRuns(o, tb.Step); err != nil {
		return TrainStepResult{}, err
	}
	return res, nil
}

// profileRuns runs run (a training step, a decode repetition) BenchOptions.ProfileSteps times under the
// profiles of BenchOptions.CPUProfile and MemProfile (not at all when both are empty).
func profileRuns(o BenchOptions, run func() error) error {
	if o.CPUProfile == "" && o.MemProfile == "" {
		return nil
	}
	n := o.ProfileSteps
	if n <= 0 {
		n = o.Reps
	}
	writeHeap := func(path string) error {
		runtime.GC() // the allocation profile is as of the last collection
		f, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("bench: memory profile: %w", err)
		}
		if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
			f.Close()
			return fmt.Errorf("bench: memory profile %s: %w", path, err)
		}
		return f.Close()
	}
	if o.MemProfile != "" {
		if err := writeHeap(o.MemProfile + ".base"); err != nil {
			return err
		}
	}
	if o.CPUProfile != "" {
		f, err := os.Create(o.CPUProfile)
		if err != nil {
			return fmt.Errorf("bench: CPU profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("bench: CPU profile %s: %w", o.CPUProfile, err)
		}
		defer pprof.StopCPUProfile()
	}
	for range n {
		if err := run(); err != nil {
			return err
		}
	}
	if o.MemProfile != "" {
		return writeHeap(o.MemProfile)
	}
	return nil
}

// replay times GEMM shapes alone through kernels.Gemm on float32 buffers, with the recorder off.
type replay struct {
	stats   []GemmStat
	iters   []int
	perCall [][]float64 // seconds per call, per shape, one per pass
	a, b, c []float32
}

func newReplay(stats []GemmStat, seed uint64) *replay {
	var na, nb, nc int
	for _, s := range stats {
		na, nb, nc = max(na, s.M*s.K), max(nb, s.K*s.N), max(nc, s.M*s.N)
	}
	rng := rand.New(rand.NewPCG(seed, 0x5e11))
	fill := func(n int) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(rng.Float64()*2 - 1)
		}
		return x
	}
	r := &replay{stats: stats, iters: make([]int, len(stats)), perCall: make([][]float64, len(stats)), a: fill(na), b: fill(nb), c: fill(nc)}
	for i, s := range stats {
		r.iters[i] = max(s.Count, 1)
	}
	return r
}

// run calls shape i n times and returns the elapsed seconds.
func (r *replay) run(i, n int) float64 {
	s := r.stats[i]
	lda, ldb := s.K, s.N
	if s.TransA {
		lda = s.M
	}
	if s.TransB {
		ldb = s.K
	}
	prev := kernels.GemmRecorder
	kernels.GemmRecorder = nil
	defer func() { kernels.GemmRecorder = prev }()
	t0 := time.Now()
	for range n {
		kernels.Gemm[float32](s.TransA, s.TransB, s.M, s.N, s.K, 1, r.a, lda, r.b, ldb, 0, r.c, s.N)
	}
	return time.Since(t0).Seconds()
}

// calibrate runs every shape once as often as the step calls it and raises the repeat count of the shapes
// that took less than minTime, so that each is timed over at least minTime.
func (r *replay) calibrate(minTime time.Duration) {
	for i := range r.stats {
		el := r.run(i, r.iters[i])
		if el < minTime.Seconds() {
			r.iters[i] = int(math.Ceil(float64(r.iters[i]) * minTime.Seconds() / max(el, 1e-7)))
		}
	}
}

// pass times every shape once and returns the FLOP-weighted rate Σ count·flops / Σ count·time per call.
func (r *replay) pass() float64 {
	var fl, sec float64
	for i, s := range r.stats {
		pc := r.run(i, r.iters[i]) / float64(r.iters[i])
		r.perCall[i] = append(r.perCall[i], pc)
		fl += float64(s.TotalFlops())
		sec += float64(s.Count) * pc
	}
	return fl / sec
}

// shapeRate is the median rate of shape i over the passes (FLOP/s).
func (r *replay) shapeRate(i int) float64 {
	if len(r.perCall[i]) == 0 {
		return 0
	}
	return float64(r.stats[i].Flops) / median(r.perCall[i])
}

// median returns the median of x (the mean of the middle two for an even count); x is not modified.
func median(x []float64) float64 {
	if len(x) == 0 {
		return math.NaN()
	}
	y := slices.Clone(x)
	slices.Sort(y)
	n := len(y)
	if n%2 == 1 {
		return y[n/2]
	}
	return (y[n/2-1] + y[n/2]) / 2
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

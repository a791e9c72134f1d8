// bench.go: the benchmarks behind `trainer bench gemm|train-step|decode`.
//
//   - BenchTrainStep times a full training step — the graph's forward and backward pass, the global gradient
//     norm with clipping, and the AdamW update — on synthetic token batches, with the model and batch shape of a
//     recipe (configs/pretrain.yaml by default). One untimed step runs with kernels.GemmRecorder set, which
//     yields every matrix product of the step (the model's forward+backward matmul FLOPs, attention included):
//     step_gflops = those FLOPs / median step time. In the same run, interleaved with the timed steps, each
//     distinct GEMM shape of the step is replayed on its own through kernels.Gemm (float32, same transposes,
//     recorder off); sgemm_gflops = Σ count·flops / Σ count·time-per-call over the shapes, i.e. the rate at
//     which pure sgemm would run the step's own matmuls. Both are medians over the repetitions.
//   - BenchDecode times the inference engine decoding N sequences at once (model.Batch; N = 1 is one sequence
//     token by token) from a short prompt prefilled once and copied to every sequence.
//   - BenchGemm measures sgemm at square sizes and at the shapes a training step of the recipe's model issues.
//
// Every result carries the BLAS backend, the kernel thread count and the load average, because the numbers
// mean little without them on a shared machine. The weights are randomly initialised: the work per token of
// every benchmark does not depend on their values.

package bench

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/internal/kernels"
	"github.com/sparrow-rl/sparrow/model"
	"github.com/sparrow-rl/sparrow/rollout"
	"github.com/sparrow-rl/sparrow/trainer"
)

// BenchOptions configure the benchmarks. Zero values take the defaults given.
type BenchOptions struct {
	Config  string   // recipe file or embedded recipe name; "" = "pretrain"
	Sets    []string // --set overrides applied to the recipe
	Batch   int      // train-step, gemm: sequences per step; 0 = the first stage's train.batch_size
	SeqLen  int      // train-step, gemm: tokens per sequence; 0 = the first stage's train.seq_len
	Reps    int      // timed repetitions; 0 = 5 (the issue asks for medians of at least 5)
	Warmup  int      // untimed steps or passes before timing (after the recording one); negative = 0
	Threads int      // kernel threads; 0 = the recipe's run.threads (0 there = GOMAXPROCS)
	Tokens  int      // decode: tokens generated per repetition and sequence; 0 = 256
	// DecodeBatch is decode's number of sequences decoded together (model.Batch); 0 = 1.
	DecodeBatch int
	Prompt      string        // decode: prompt text (byte tokens); "" = "12+34="
	Sizes       []int         // gemm: square sizes; nil = 128, 256, 512, 1024
	MinTime     time.Duration // gemm: least time per shape and repetition; 0 = 20 ms
	Seed        uint64        // weights and synthetic data; 0 = the recipe's seed
	Log         *slog.Logger  // progress lines; nil = none
	// train-step: after the timed steps, ProfileSteps (0 = Reps) more steps run with a CPU profile written to
	// CPUProfile and/or heap profiles written to MemProfile.base (before them) and MemProfile (after them);
	// `go tool pprof -sample_index=alloc_space -base FILE.base BIN FILE` shows what those steps allocated.
	CPUProfile, MemProfile string
	ProfileSteps           int
}

const (
	defaultBenchReps   = 5
	defaultDecodeToks  = 256
	defaultPrompt      = "12+34="
	defaultGemmMinTime = 20 * time.Millisecond
	// replayMinTime is the least time spent on one distinct shape in one sgemm replay pass: shapes called once
	// per step in a few microseconds are repeated until timing them is accurate.
	replayMinTime = 500 * time.Microsecond
	// sampleTokens is how many generated tokens the decode result shows.
	sampleTokens = 32
)

// DefaultGemmSizes are the square sizes of `trainer bench gemm`.
var DefaultGemmSizes = []int{128, 256, 512, 1024}

func (o BenchOptions) withDefaults() BenchOptions {
	if o.Config == "" {
		o.Config = "pretrain"
	}
	if o.Reps <= 0 {
		o.Reps = defaultBenchReps
	}
	o.Warmup = max(o.Warmup, 0)
	if o.Tokens <= 0 {
		o.Tokens = defaultDecodeToks
	}
	if o.Prompt == "" {
		o.Prompt = defaultPrompt
	}
	if o.Sizes == nil {
		o.Sizes = DefaultGemmSizes
	}
	if o.MinTime <= 0 {
		o.MinTime = defaultGemmMinTime
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return o
}

// benchSetup is what every benchmark derives from the options: the recipe, its model, the batch shape, and
// the kernel threads (set for the duration of the benchmark; restore puts the previous count back).
type benchSetup struct {
	opts    BenchOptions
	cfg     *configs.Config
	B, T    int
	seed    uint64
	restore func()
}

func newBenchSetup(opts BenchOptions) (*benchSetup, error) {
	o := opts.withDefaults()
	cfg, err := loadRecipe(o.Config, o.Sets)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if len(cfg.Stages) == 0 {
		return nil, fmt.Errorf("bench: recipe %s has no stages to take the batch shape from", o.Config)
	}
	tr := cfg.Stages[0].Train
	s := &benchSetup{opts: o, cfg: cfg, B: tr.BatchSize, T: tr.SeqLen, seed: o.Seed}
	if o.Batch > 0 {
		s.B = o.Batch
	}
	if o.SeqLen > 0 {
		s.T = o.SeqLen
	}
	if s.T > cfg.Model.MaxPositionEmbeddings {
		return nil, fmt.Errorf("bench: seq_len %d exceeds model.max_position_embeddings %d of recipe %s", s.T, cfg.Model.MaxPositionEmbeddings, o.Config)
	}
	if s.seed == 0 {
		s.seed = uint64(cfg.Seed)
	}
	threads := o.Threads
	if threads <= 0 {
		threads = cfg.Run.Threads
	}
	prev := kernels.Threads()
	kernels.SetThreads(threads)
	s.restore = func() { kernels.SetThreads(prev) }
	return s, nil
}

// Env is the context every result reports.
type Env struct {
	Config     string     `json:"config"`
	Backend    string     `json:"backend"` // "gonum" or "openblas"
	Threads    int        `json:"threads"` // kernel threads (kernels.For workers)
	GOMAXPROCS int        `json:"gomaxprocs"`
	LoadAvg    [3]float64 `json:"load_avg"` // /proc/loadavg at the end of the run (1, 5, 15 min); zeros when unreadable
	GoVersion  string     `json:"go_version"`
	// OpenBLASThreads is $OPENBLAS_NUM_THREADS ("" = unset: OpenBLAS uses every core). With the openblas
	// backend it decides whether the replayed sgemm runs on one core or all, and how the step's concurrent
	// GEMMs (kernels.For workers each calling OpenBLAS) share the cores.
	OpenBLASThreads string `json:"openblas_num_threads,omitempty"`
}

func (s *benchSetup) env() Env {
	return Env{Config: s.cfg.Name, Backend: kernels.Backend(), Threads: kernels.Threads(),
		GOMAXPROCS: runtime.GOMAXPROCS(0), LoadAvg: loadAvg(), GoVersion: runtime.Version(),
		OpenBLASThreads: os.Getenv("OPENBLAS_NUM_THREADS")}
}

// loadAvg reads the 1, 5 and 15 minute load averages (zeros where /proc/loadavg is missing or unreadable).
func loadAvg() [3]float64 {
	var l [3]float64
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return l
	}
	f := strings.Fields(string(b))
	for i := 0; i < 3 && i < len(f); i++ {
		l[i], _ = strconv.ParseFloat(f[i], 64)
	}
	return l
}

// ---------------------------------------------------------------------------------------------------------
// Training step

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
	g, err := model.NewGraph[float32](cfg.Model, p.Data, model.GraphOptions{B: s.B, T: s.T})
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
		c0, t0 := cpuNow(), time.Now()
		if err := tb.Step(); err != nil {
			return TrainStepResult{}, err
		}
		el, cpu := time.Since(t0).Seconds(), (cpuNow() - c0).Seconds()
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
		Env: s.env(), Batch: s.B, SeqLen: s.T, Params: total, ActiveParams: active, TrainedParams: trained,
		Reps: o.Reps, Warmup: o.Warmup,
		TokensPerS: float64(s.B*s.T) / med, StepMS: med * 1e3, StepMSMin: slices.Min(stepT) * 1e3, StepMSMax: slices.Max(stepT) * 1e3,
		FwdBwdMS: median(runT) * 1e3, OptimizerMS: median(optT) * 1e3, CPUMSPerStep: median(cpuT) * 1e3,
		StepFlops: flops, StepGFLOPS: float64(flops) / med / 1e9, SgemmGFLOPS: sg / 1e9, GemmMS: float64(flops) / sg * 1e3,
		AllocBytesPerStep: float64(allocB) / n, AllocsPerStep: float64(allocN) / n, GCPerStep: float64(gcs) / n,
		Loss: tb.Loss, GradNorm: tb.GradNorm, SkippedSteps: tb.Skipped, GemmCalls: calls, DistinctGemms: len(stats),
		Gemms: stats, Weights: fmt.Sprintf("random init (seed %d), synthetic byte tokens", s.seed),
	}
	res.Ratio = res.StepGFLOPS / res.SgemmGFLOPS
	if err := profileSteps(tb, o); err != nil {
		return TrainStepResult{}, err
	}
	return res, nil
}

// profileSteps runs the profiled steps of BenchOptions.CPUProfile and MemProfile (none when both are empty).
func profileSteps(tb *TrainStepBench, o BenchOptions) error {
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
		if err := tb.Step(); err != nil {
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

// ---------------------------------------------------------------------------------------------------------
// Decode

// DecodeResult is the outcome of BenchDecode; rates are medians over the repetitions.
type DecodeResult struct {
	Env
	Params       int `json:"params"`
	ActiveParams int `json:"active_params"`
	PromptTokens int `json:"prompt_tokens"`
	Batch        int `json:"batch"`  // sequences decoded together
	Tokens       int `json:"tokens"` // generated per repetition and sequence
	Reps         int `json:"reps"`

	TokensPerS float64 `json:"tokens_per_s"` // generated tokens of all sequences / decode time (prefill excluded)
	// TokensPerCPUS is generated tokens / process CPU seconds (user + system, all threads) of the decode: on a
	// shared machine it does not count the time the process waits for a core (0 without getrusage).
	TokensPerCPUS     float64 `json:"tokens_per_cpu_s"`
	MSPerStep         float64 `json:"ms_per_step"` // one batched step: one token for each of the batch's sequences
	MSPerToken        float64 `json:"ms_per_token"`
	PrefillTokensPerS float64 `json:"prefill_tokens_per_s"`
	GemmFlopsPerToken float64 `json:"gemm_flops_per_token"` // mean over the generated tokens (attention grows with position)
	GFLOPS            float64 `json:"gflops"`               // gemm_flops_per_token · tokens_per_s
	AllocBytesPerTok  float64 `json:"alloc_bytes_per_token"`
	Weights           string  `json:"weights"`
	Sample            string  `json:"sample"` // the first repetition's first sequence's first generated tokens as text (random weights: gibberish)
}

// BenchDecode measures the inference engine: per repetition, the prompt prefilled token by token into one
// session and copied into DecodeBatch sessions, then Tokens decode steps of all of them together
// (model.Batch.Step). The first sequence decodes greedily (argmax), the others sample at temperature 1 from
// their own seeded generators, so that the rows of a batch differ and route to different experts as the
// completions of a group do.
func BenchDecode(opts BenchOptions) (DecodeResult, error) {
	s, err := newBenchSetup(opts)
	if err != nil {
		return DecodeResult{}, err
	}
	defer s.restore()
	o, log, mc := s.opts, s.opts.Log, s.cfg.Model
	B := max(o.DecodeBatch, 1)
	prompt := make([]int32, 0, len(o.Prompt))
	for _, b := range []byte(o.Prompt) {
		prompt = append(prompt, int32(b))
	}
	if o.Tokens < 2 {
		return DecodeResult{}, fmt.Errorf("bench: decode needs at least 2 tokens, got %d", o.Tokens)
	}
	maxLen := len(prompt) + o.Tokens
	if maxLen > mc.MaxPositionEmbeddings {
		return DecodeResult{}, fmt.Errorf("bench: prompt %d + %d tokens exceed model.max_position_embeddings %d", len(prompt), o.Tokens, mc.MaxPositionEmbeddings)
	}
	p := model.NewParams(mc)
	p.Init(s.seed)
	d, err := newDecodeBench(model.NewEngine(p), prompt, B, maxLen, s.seed)
	if err != nil {
		return DecodeResult{}, fmt.Errorf("bench: %w", err)
	}
	log.Info("bench decode", "config", o.Config, "prompt_tokens", len(prompt), "batch", B, "tokens", o.Tokens)
	// One untimed pass records the GEMM FLOPs of the decode steps.
	if err := d.prefill(); err != nil {
		return DecodeResult{}, err
	}
	rec, err := RecordGemms(func() error { return d.decode(o.Tokens) })
	if err != nil {
		return DecodeResult{}, err
	}
	decodeFlops := rec.TotalFlops()
	for i := 0; i < o.Warmup; i++ {
		if _, _, _, err := d.rep(o.Tokens); err != nil {
			return DecodeResult{}, err
		}
	}
	var pre, dec, cpu []float64
	var sample string
	var m0, m1 runtime.MemStats
	var allocB uint64
	for r := 0; r < o.Reps; r++ {
		runtime.ReadMemStats(&m0)
		pt, dt, ct, err := d.rep(o.Tokens)
		if err != nil {
			return DecodeResult{}, err
		}
		runtime.ReadMemStats(&m1)
		allocB += m1.TotalAlloc - m0.TotalAlloc
		if r == 0 {
			sample = tokenText(d.generated[:min(len(d.generated), sampleTokens)])
		}
		pre, dec = append(pre, float64(len(prompt))/pt), append(dec, float64(B*(o.Tokens-1))/dt)
		if ct > 0 {
			cpu = append(cpu, float64(B*(o.Tokens-1))/ct)
		}
		log.Info("bench decode", "rep", r+1, "of", o.Reps, "tokens_per_s", math.Round(dec[len(dec)-1]))
	}
	total, active := p.Count()
	// Tokens-1 engine steps produce the Tokens generated tokens of each sequence after the prompt's last step
	// (whose logits choose the first); the rate counts engine steps × sequences, the unit of the cost.
	tps := median(dec)
	perTok := float64(decodeFlops) / float64(max(B*(o.Tokens-1), 1))
	return DecodeResult{Env: s.env(), Params: total, ActiveParams: active, PromptTokens: len(prompt), Batch: B, Tokens: o.Tokens,
		Reps: o.Reps, TokensPerS: tps, TokensPerCPUS: medianOr0(cpu), MSPerStep: 1e3 * float64(B) / tps, MSPerToken: 1e3 / tps, PrefillTokensPerS: median(pre),
		GemmFlopsPerToken: perTok, GFLOPS: perTok * tps / 1e9,
		AllocBytesPerTok: float64(allocB) / float64(o.Reps*(len(prompt)+B*(o.Tokens-1))),
		Weights:          fmt.Sprintf("random init (seed %d); the cost per token does not depend on the weights", s.seed),
		Sample:           sample}, nil
}

// decodeBench is the state of BenchDecode: a prefix session, the batch's sessions and their generators.
type decodeBench struct {
	prompt    []int32
	prefix    *model.Session
	sess      []*model.Session
	batch     *model.Batch
	rngs      []*rand.Rand
	seed      uint64
	in        []model.DecodeInput
	sampler   rollout.Sampler
	generated []int32 // the first sequence's tokens
}

func newDecodeBench(e *model.Engine, prompt []int32, B, maxLen int, seed uint64) (*decodeBench, error) {
	d := &decodeBench{prompt: prompt, seed: seed, rngs: make([]*rand.Rand, B), in: make([]model.DecodeInput, B),
		sampler: rollout.Sampler{P: rollout.SamplingParams{Temperature: 1, TopP: 1}}}
	var err error
	if d.prefix, err = e.NewSession(maxLen); err != nil {
		return nil, err
	}
	for range B {
		s, err := e.NewSession(maxLen)
		if err != nil {
			return nil, err
		}
		d.sess = append(d.sess, s)
	}
	if d.batch, err = e.NewBatch(B); err != nil {
		return nil, err
	}
	return d, nil
}

// prefill decodes the prompt into the prefix session token by token and copies it to every sequence.
func (d *decodeBench) prefill() error {
	d.prefix.Reset()
	for i, t := range d.prompt {
		if err := d.prefix.Step(t, nil); err != nil {
			return fmt.Errorf("bench: prefill position %d: %w", i, err)
		}
	}
	for i, s := range d.sess {
		if err := s.CopyFrom(d.prefix); err != nil {
			return err
		}
		d.rngs[i] = rand.New(rand.NewPCG(d.seed, uint64(i)))
	}
	d.generated = d.generated[:0]
	return nil
}

// decode chooses n tokens per sequence with n−1 batched steps (the last token is chosen; feeding it would
// only fill the caches).
func (d *decodeBench) decode(n int) error {
	for i := 0; i < n; i++ {
		for j, s := range d.sess {
			var next int32
			if j == 0 {
				next = argmax(s.Logits)
				d.generated = append(d.generated, next)
			} else {
				next, _, _ = d.sampler.Draw(s.Logits, d.rngs[j])
			}
			d.in[j] = model.DecodeInput{S: s, Token: next}
		}
		if i == n-1 {
			break
		}
		if err := d.batch.Step(d.in); err != nil {
			return fmt.Errorf("bench: decode step %d: %w", i, err)
		}
	}
	return nil
}

// rep runs one repetition and returns the prefill and decode durations and the decode's CPU seconds.
func (d *decodeBench) rep(n int) (float64, float64, float64, error) {
	t0 := time.Now()
	if err := d.prefill(); err != nil {
		return 0, 0, 0, err
	}
	t1, c1 := time.Now(), cpuNow()
	err := d.decode(n)
	return t1.Sub(t0).Seconds(), time.Since(t1).Seconds(), (cpuNow() - c1).Seconds(), err
}

// medianOr0 is the median of x, 0 when x is empty.
func medianOr0(x []float64) float64 {
	if len(x) == 0 {
		return 0
	}
	return median(x)
}

func argmax(x []float32) int32 {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return int32(best)
}

// tokenText renders byte tokens as text and any other id as <id>.
func tokenText(ids []int32) string {
	var b strings.Builder
	for _, id := range ids {
		if id >= 0 && id < 128 && strconv.IsPrint(rune(id)) {
			b.WriteByte(byte(id))
		} else {
			fmt.Fprintf(&b, "<%d>", id)
		}
	}
	return b.String()
}

// ---------------------------------------------------------------------------------------------------------
// GEMM

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
// total is exact whenever E divides N·K.
func StepGemms(c configs.Model, B, T int) []StepGemm {
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
	for _, g := range StepGemms(s.cfg.Model, s.B, s.T) {
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

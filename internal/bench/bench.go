// bench.go: the options, set-up and environment record shared by the benchmarks behind `trainer bench gemm|train-step|decode` (trainstep.go, gemm.go, decode.go).
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
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/internal/kernels"
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
	// train-step, decode: after the timed steps (repetitions), ProfileSteps (0 = Reps) more run with a CPU profile written to
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
	Config  string `json:"config"`
	Backend string `json:"backend"` // "gonum" or "openblas"
	// BackendCore is OpenBLAS's kernel set for this CPU ("Haswell", "Zen", "SkylakeX", ...; "" for gonum).
	BackendCore string     `json:"backend_core,omitempty"`
	Threads     int        `json:"threads"` // kernel threads (kernels.For workers)
	GOMAXPROCS  int        `json:"gomaxprocs"`
	LoadAvg     [3]float64 `json:"load_avg"` // /proc/loadavg at the end of the run (1, 5, 15 min); zeros when unreadable
	GoVersion   string     `json:"go_version"`
	// OpenBLASThreads is $OPENBLAS_NUM_THREADS ("" = unset: OpenBLAS uses every core). With the openblas
	// backend it decides whether the replayed sgemm runs on one core or all, and how the step's concurrent
	// GEMMs (kernels.For workers each calling OpenBLAS) share the cores.
	OpenBLASThreads string `json:"openblas_num_threads,omitempty"`
}

func (s *benchSetup) env() Env {
	return Env{Config: s.cfg.Name, Backend: kernels.Backend(), BackendCore: kernels.BackendCore(), Threads: kernels.Threads(),
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

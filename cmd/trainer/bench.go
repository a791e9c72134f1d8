// bench.go implements `trainer bench gemm|train-step|decode [--json]`, a thin layer over bench.BenchGemm,
// bench.BenchTrainStep and bench.BenchDecode (internal/bench): flags in, one JSON object (--json) or a readable
// table out on stdout; progress lines go to stderr.

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sparrow-rl/sparrow/internal/bench"
)

func init() { extraCommands = append(extraCommands, newBenchCmd) }

func newBenchCmd() *cobra.Command {
	var o bench.BenchOptions
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "bench gemm|train-step|decode",
		Short: "Measure sgemm, a full training step and the inference engine",
		Long: `Benchmarks on the model of a recipe (configs/pretrain.yaml unless --config says otherwise), with
randomly initialised weights and synthetic tokens (the work per token does not depend on them).

  train-step  tokens/s of a full step (forward, backward, clipping, AdamW); step_gflops = the step's GEMM
              FLOPs / median step time; sgemm_gflops = sgemm on the step's own shapes, same run
  decode      tokens/s of the inference engine decoding --batch sequences at once with their KV caches
  gemm        sgemm GFLOP/s at square sizes and at the shapes of a training step

Times are medians over --reps repetitions (at least 5 for a result worth quoting).`,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("bench: unknown benchmark %q (want gemm, train-step or decode)", args[0])
			}
			return cmd.Help()
		},
	}
	pf := cmd.PersistentFlags()
	pf.BoolVar(&asJSON, "json", false, "print one JSON object instead of a table")
	pf.StringVar(&o.Config, "config", "pretrain", "recipe name or YAML file giving the model and the batch shape")
	pf.StringArrayVar(&o.Sets, "set", nil, "override a config key, e.g. --set model.hidden_size=256 (repeatable)")
	pf.IntVar(&o.Reps, "reps", 5, "timed repetitions (medians are reported)")
	pf.IntVar(&o.Threads, "threads", 0, "kernel threads (0 = the recipe's run.threads, else GOMAXPROCS)")
	pf.Uint64Var(&o.Seed, "seed", 0, "seed of the weights and the synthetic data (0 = the recipe's seed)")

	logger := func(cmd *cobra.Command) *slog.Logger {
		lvl := slog.LevelInfo
		if f := cmd.Flags().Lookup("log-level"); f != nil {
			_ = lvl.UnmarshalText([]byte(f.Value.String())) // the root command validates it for its own commands
		}
		h := &slog.HandlerOptions{Level: lvl}
		if f := cmd.Flags().Lookup("log-format"); f != nil && f.Value.String() == "json" {
			return slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), h))
		}
		return slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), h))
	}
	check := func() error {
		if o.Reps < 1 {
			return fmt.Errorf("bench: --reps %d: want at least 1", o.Reps)
		}
		if o.Warmup < 0 {
			return fmt.Errorf("bench: --warmup %d: want 0 or more", o.Warmup)
		}
		return nil
	}
	emit := func(w io.Writer, v any, table func(io.Writer)) error {
		if asJSON {
			b, err := json.Marshal(v)
			if err != nil {
				return fmt.Errorf("bench: encoding the result: %w", err)
			}
			_, err = fmt.Fprintf(w, "%s\n", b)
			return err
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		table(tw)
		return tw.Flush()
	}

	train := &cobra.Command{
		Use:   "train-step",
		Short: "tokens/s and GFLOP/s of a full training step next to the same-run sgemm rate",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := check(); err != nil {
				return err
			}
			o.Log = logger(cmd)
			res, err := bench.BenchTrainStep(o)
			if err != nil {
				return err
			}
			return emit(cmd.OutOrStdout(), res, func(w io.Writer) { trainStepTable(w, res) })
		},
	}
	train.Flags().IntVar(&o.Batch, "batch", 0, "sequences per step (0 = the recipe's train.batch_size)")
	train.Flags().IntVar(&o.SeqLen, "seq-len", 0, "tokens per sequence (0 = the recipe's train.seq_len)")
	train.Flags().IntVar(&o.Warmup, "warmup", 1, "untimed steps after the one that records the GEMM shapes")
	train.Flags().StringVar(&o.CPUProfile, "cpu-profile", "", "after the timed steps, profile --profile-steps more steps (CPU) into this file")
	train.Flags().StringVar(&o.MemProfile, "mem-profile", "", "heap profiles of the profiled steps: FILE.base before, FILE after (pprof -base)")
	train.Flags().IntVar(&o.ProfileSteps, "profile-steps", 0, "steps run under --cpu-profile/--mem-profile (0 = --reps)")

	decode := &cobra.Command{
		Use:   "decode",
		Short: "tokens/s of the inference engine (greedy decoding with the latent KV cache)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := check(); err != nil {
				return err
			}
			o.Log = logger(cmd)
			res, err := bench.BenchDecode(o)
			if err != nil {
				return err
			}
			return emit(cmd.OutOrStdout(), res, func(w io.Writer) { decodeTable(w, res) })
		},
	}
	decode.Flags().IntVar(&o.DecodeBatch, "batch", 1, "sequences decoded together (one token each per batched step)")
	decode.Flags().IntVar(&o.Tokens, "tokens", 256, "tokens generated per repetition and sequence")
	decode.Flags().StringVar(&o.Prompt, "prompt", "12+34=", "prompt text (byte tokens)")
	decode.Flags().IntVar(&o.Warmup, "warmup", 1, "untimed repetitions")
	decode.Flags().StringVar(&o.CPUProfile, "cpu-profile", "", "after the timed repetitions, profile --profile-steps more (CPU) into this file")
	decode.Flags().StringVar(&o.MemProfile, "mem-profile", "", "heap profiles of the profiled repetitions: FILE.base before, FILE after (pprof -base)")
	decode.Flags().IntVar(&o.ProfileSteps, "profile-steps", 0, "repetitions run under --cpu-profile/--mem-profile (0 = --reps)")

	gemm := &cobra.Command{
		Use:   "gemm",
		Short: "sgemm GFLOP/s at square sizes and at the shapes of the recipe's training step",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := check(); err != nil {
				return err
			}
			o.Log = logger(cmd)
			res, err := bench.BenchGemm(o)
			if err != nil {
				return err
			}
			return emit(cmd.OutOrStdout(), res, func(w io.Writer) { gemmTable(w, res) })
		},
	}
	gemm.Flags().IntSliceVar(&o.Sizes, "sizes", bench.DefaultGemmSizes, "square sizes")
	gemm.Flags().IntVar(&o.Batch, "batch", 0, "sequences per step for the model shapes (0 = the recipe's)")
	gemm.Flags().IntVar(&o.SeqLen, "seq-len", 0, "tokens per sequence for the model shapes (0 = the recipe's)")
	gemm.Flags().DurationVar(&o.MinTime, "min-time", 20*time.Millisecond, "least time per shape and repetition")

	cmd.AddCommand(train, decode, gemm)
	return cmd
}

func envLines(w io.Writer, e bench.Env) {
	fmt.Fprintf(w, "config\t%s\n", e.Config)
	fmt.Fprintf(w, "backend\t%s (threads %d, GOMAXPROCS %d, %s)\n", e.Backend, e.Threads, e.GOMAXPROCS, e.GoVersion)
	if e.OpenBLASThreads != "" {
		fmt.Fprintf(w, "OPENBLAS_NUM_THREADS\t%s\n", e.OpenBLASThreads)
	}
	fmt.Fprintf(w, "load average\t%.2f %.2f %.2f\n", e.LoadAvg[0], e.LoadAvg[1], e.LoadAvg[2])
}

func trainStepTable(w io.Writer, r bench.TrainStepResult) {
	envLines(w, r.Env)
	fmt.Fprintf(w, "batch\t%d × %d tokens, %d graph shards\n", r.Batch, r.SeqLen, r.GraphShards)
	fmt.Fprintf(w, "parameters\t%d (%d active per token, %d trained)\n", r.Params, r.ActiveParams, r.TrainedParams)
	fmt.Fprintf(w, "repetitions\t%d (+%d warm-up)\n", r.Reps, r.Warmup)
	fmt.Fprintf(w, "tokens/s\t%.0f\n", r.TokensPerS)
	fmt.Fprintf(w, "step\t%.1f ms median (%.1f–%.1f): forward+backward %.1f, optimizer %.1f\n", r.StepMS, r.StepMSMin, r.StepMSMax, r.FwdBwdMS, r.OptimizerMS)
	fmt.Fprintf(w, "CPU per step\t%.1f ms median (process CPU time, all threads; not counting waits for a core)\n", r.CPUMSPerStep)
	fmt.Fprintf(w, "GEMM per step\t%.3f GFLOP in %d calls, %d shapes\n", float64(r.StepFlops)/1e9, r.GemmCalls, r.DistinctGemms)
	fmt.Fprintf(w, "step GFLOP/s\t%.2f\n", r.StepGFLOPS)
	fmt.Fprintf(w, "sgemm GFLOP/s\t%.2f (same shapes, same run: %.1f ms of pure sgemm per step)\n", r.SgemmGFLOPS, r.GemmMS)
	fmt.Fprintf(w, "ratio\t%.1f %%\n", 100*r.Ratio)
	fmt.Fprintf(w, "allocated per step\t%.1f MiB in %.0f allocations, %.2f GC\n", r.AllocBytesPerStep/(1<<20), r.AllocsPerStep, r.GCPerStep)
	fmt.Fprintf(w, "loss, grad norm\t%.4f, %.4f (skipped steps %d)\n", r.Loss, r.GradNorm, r.SkippedSteps)
	fmt.Fprintf(w, "\nlargest GEMMs\tcount\tGFLOP/step\tsgemm GFLOP/s\n")
	for i, g := range r.Gemms {
		if i == 12 {
			fmt.Fprintf(w, "… %d more\t\t\t\n", len(r.Gemms)-i)
			break
		}
		fmt.Fprintf(w, "%s\t%d\t%.4f\t%.2f\n", shapeName(g.TransA, g.TransB, g.M, g.N, g.K), g.Count, float64(g.TotalFlops())/1e9, g.GFLOPS)
	}
}

func decodeTable(w io.Writer, r bench.DecodeResult) {
	envLines(w, r.Env)
	fmt.Fprintf(w, "parameters\t%d (%d active per token)\n", r.Params, r.ActiveParams)
	fmt.Fprintf(w, "prompt, generated\t%d, %d tokens × %d sequences × %d repetitions\n", r.PromptTokens, r.Tokens, r.Batch, r.Reps)
	fmt.Fprintf(w, "tokens/s\t%.0f (%.3f ms per token, %.3f ms per batched step)\n", r.TokensPerS, r.MSPerToken, r.MSPerStep)
	fmt.Fprintf(w, "tokens per CPU second\t%.0f (user + system time of all threads)\n", r.TokensPerCPUS)
	fmt.Fprintf(w, "prefill tokens/s\t%.0f\n", r.PrefillTokensPerS)
	fmt.Fprintf(w, "GEMM per token\t%.3f MFLOP, %.2f GFLOP/s\n", r.GemmFlopsPerToken/1e6, r.GFLOPS)
	fmt.Fprintf(w, "allocated per token\t%.0f B\n", r.AllocBytesPerTok)
	fmt.Fprintf(w, "weights\t%s\n", r.Weights)
	fmt.Fprintf(w, "sample\t%q\n", r.Sample)
}

func gemmTable(w io.Writer, r bench.GemmResult) {
	envLines(w, r.Env)
	fmt.Fprintf(w, "model shapes for\t%d × %d tokens, %d repetitions\n", r.Batch, r.SeqLen, r.Reps)
	fmt.Fprintf(w, "\nshape\tname\tcalls/step\tGFLOP/s\tµs/call\n")
	for _, g := range r.Square {
		fmt.Fprintf(w, "%s\t%s\t\t%.2f\t%.1f\n", shapeName(g.TransA, g.TransB, g.M, g.N, g.K), g.Name, g.GFLOPS, g.USPerCall)
	}
	for _, g := range r.Model {
		fmt.Fprintf(w, "%s\t%s\t%d\t%.2f\t%.1f\n", shapeName(g.TransA, g.TransB, g.M, g.N, g.K), g.Name, g.Count, g.GFLOPS, g.USPerCall)
	}
	fmt.Fprintf(w, "\nmodel shapes, FLOP-weighted\t\t\t%.2f\t\n", r.ModelGFLOPS)
}

// shapeName writes a GEMM as "NT 2048×384×128" (op(A), op(B) transposes; M×N×K).
func shapeName(tA, tB bool, m, n, k int) string {
	var b strings.Builder
	for _, t := range []bool{tA, tB} {
		if t {
			b.WriteByte('T')
		} else {
			b.WriteByte('N')
		}
	}
	fmt.Fprintf(&b, " %d×%d×%d", m, n, k)
	return b.String()
}

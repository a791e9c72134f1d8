// bench_dsa.go implements `trainer bench attention --lengths 512,1024,2048,4096,8192 --topk K [--json]`: dense
// MLA attention against DeepSeek Sparse Attention (indexer + top-k + sparse attention) on one layer of a fixed
// shape (printed with the results), forward+backward and one decode step per length, their ratios, the log-log
// slope of each curve and the working memory of each (bench.BenchAttention, internal/bench). Lengths from
// --long-from on run --long-reps repetitions (the dense step takes tens of seconds there); progress goes to
// stderr. It attaches itself to the bench command of bench.go.

package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sparrow-rl/sparrow/internal/bench"
	"github.com/sparrow-rl/sparrow/internal/kernels"
)

func init() { benchSubcommands = append(benchSubcommands, newBenchAttentionCmd) }

func newBenchAttentionCmd() *cobra.Command {
	var lengths string
	var topk, reps, longReps, longFrom int
	var asJSON bool
	sh := bench.DefaultAttentionBenchShape()
	c := &cobra.Command{
		Use:   "attention",
		Short: "Dense MLA attention vs DeepSeek Sparse Attention: fwd+bwd and decode time per length",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var ls []int
			for _, f := range strings.Split(lengths, ",") {
				n, err := strconv.Atoi(strings.TrimSpace(f))
				if err != nil || n < 2 {
					return fmt.Errorf("--lengths: %q is not a length ≥ 2", f)
				}
				ls = append(ls, n)
			}
			if topk <= 0 || reps <= 0 || longReps <= 0 {
				return fmt.Errorf("--topk %d, --reps %d and --long-reps %d must be > 0", topk, reps, longReps)
			}
			var rs []bench.AttentionBenchResult
			for _, L := range ls {
				n := reps
				if L >= longFrom {
					n = longReps
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "bench attention: length %d, top-k %d, %d repetition(s) after a warm-up run...\n", L, topk, n)
				t0 := time.Now()
				r, err := bench.BenchAttention(sh, L, topk, n, 1)
				if err != nil {
					return fmt.Errorf("bench attention at length %d: %w", L, err)
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "bench attention: length %d done in %.1f s (dense %.0f ms, dsa %.0f ms)\n", L, time.Since(t0).Seconds(), r.DenseMs, r.DSAMs)
				rs = append(rs, r)
				if asJSON {
					if err := json.NewEncoder(cmd.OutOrStdout()).Encode(r); err != nil {
						return err
					}
				}
			}
			x := make([]float64, len(rs))
			col := func(f func(bench.AttentionBenchResult) float64) []float64 {
				y := make([]float64, len(rs))
				for i, r := range rs {
					x[i], y[i] = float64(r.Length), f(r)
				}
				return y
			}
			slopes := map[string]float64{}
			if len(rs) >= 2 {
				slopes["dense"] = bench.LogLogSlope(x, col(func(r bench.AttentionBenchResult) float64 { return r.DenseMs }))
				slopes["dsa"] = bench.LogLogSlope(x, col(func(r bench.AttentionBenchResult) float64 { return r.DSAMs }))
				slopes["sparse_attn"] = bench.LogLogSlope(x, col(func(r bench.AttentionBenchResult) float64 { return r.SparseMs }))
				slopes["indexer"] = bench.LogLogSlope(x, col(func(r bench.AttentionBenchResult) float64 { return r.IndexerMs }))
				slopes["dense_decode"] = bench.LogLogSlope(x, col(func(r bench.AttentionBenchResult) float64 { return r.DenseDecUs }))
				slopes["dsa_decode"] = bench.LogLogSlope(x, col(func(r bench.AttentionBenchResult) float64 { return r.DSADecUs }))
				if rs[0].DenseCPUMs > 0 {
					slopes["dense_cpu"] = bench.LogLogSlope(x, col(func(r bench.AttentionBenchResult) float64 { return r.DenseCPUMs }))
					slopes["dsa_cpu"] = bench.LogLogSlope(x, col(func(r bench.AttentionBenchResult) float64 { return r.DSACPUMs }))
					slopes["sparse_attn_cpu"] = bench.LogLogSlope(x, col(func(r bench.AttentionBenchResult) float64 { return r.SparseCPUMs }))
				}
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(map[string]any{"shape": sh, "slopes": slopes})
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "layer: %d heads, qk %d+%d, v %d, kv latent %d; indexer %d heads × %d; batch 1; top-k %d; BLAS %s; medians of %d (%d from length %d) after a warm-up run\n",
				sh.H, sh.Dn, sh.Dr, sh.Dv, sh.KVr, sh.IH, sh.IDh, topk, kernels.Backend(), reps, longReps, longFrom)
			w := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(w, "L\tdense ms\tdsa ms\t(indexer\tsparse)\tratio\tdense cpu ms\tdsa cpu ms\t(sparse)\tcpu ratio\tdense dec µs\tdsa dec µs\tratio\tdense MiB\tdsa MiB\t")
			for _, r := range rs {
				fmt.Fprintf(w, "%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.3f\t%.0f\t%.0f\t%.0f\t%.3f\t%.0f\t%.0f\t%.3f\t%.1f\t%.1f\t\n", r.Length, r.DenseMs, r.DSAMs, r.IndexerMs, r.SparseMs, r.Ratio,
					r.DenseCPUMs, r.DSACPUMs, r.SparseCPUMs, r.CPURatio, r.DenseDecUs, r.DSADecUs, r.DecodeRatio, r.DenseMemMiB, r.DSAMemMiB)
			}
			if err := w.Flush(); err != nil {
				return err
			}
			if len(slopes) > 0 {
				fmt.Fprintf(out, "log-log slopes: dense %.2f, dsa %.2f (indexer %.2f, sparse attention %.2f); decode: dense %.2f, dsa %.2f\n",
					slopes["dense"], slopes["dsa"], slopes["indexer"], slopes["sparse_attn"], slopes["dense_decode"], slopes["dsa_decode"])
				if _, ok := slopes["dense_cpu"]; ok {
					fmt.Fprintf(out, "log-log slopes of CPU time: dense %.2f, dsa %.2f, sparse attention %.2f\n", slopes["dense_cpu"], slopes["dsa_cpu"], slopes["sparse_attn_cpu"])
				}
			}
			return nil
		},
	}
	c.Flags().StringVar(&lengths, "lengths", "512,1024,2048,4096,8192", "comma-separated sequence lengths")
	c.Flags().IntVar(&topk, "topk", 256, "keys per query")
	c.Flags().IntVar(&reps, "reps", 3, "repetitions (medians are reported)")
	c.Flags().IntVar(&longReps, "long-reps", 1, "repetitions at lengths ≥ --long-from")
	c.Flags().IntVar(&longFrom, "long-from", 8192, "the length from which --long-reps applies")
	c.Flags().BoolVar(&asJSON, "json", false, "one JSON object per length, then one with the shape and the slopes")
	return c
}

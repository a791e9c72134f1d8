// bench_dsa.go implements `trainer bench attention --lengths 512,1024,2048,4096 --topk K [--json]`: dense MLA
// attention against DeepSeek Sparse Attention (indexer + top-k + sparse attention) on one layer of a fixed
// shape (printed with the results), forward+backward and one decode step per length, their ratios, the log-log
// slope of each curve and the working memory of each (model.BenchAttention). It attaches itself to the bench
// command of bench.go.
package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/sparrow-rl/sparrow/model"
)

func init() { benchSubcommands = append(benchSubcommands, newBenchAttentionCmd) }

func newBenchAttentionCmd() *cobra.Command {
	var lengths string
	var topk, reps int
	var asJSON bool
	sh := model.DefaultAttentionBenchShape()
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
			if topk <= 0 || reps <= 0 {
				return fmt.Errorf("--topk %d and --reps %d must be > 0", topk, reps)
			}
			var rs []model.AttentionBenchResult
			for _, L := range ls {
				r, err := model.BenchAttention(sh, L, topk, reps, 1)
				if err != nil {
					return fmt.Errorf("bench attention at length %d: %w", L, err)
				}
				rs = append(rs, r)
				if asJSON {
					if err := json.NewEncoder(cmd.OutOrStdout()).Encode(r); err != nil {
						return err
					}
				}
			}
			x := make([]float64, len(rs))
			col := func(f func(model.AttentionBenchResult) float64) []float64 {
				y := make([]float64, len(rs))
				for i, r := range rs {
					x[i], y[i] = float64(r.Length), f(r)
				}
				return y
			}
			slopes := map[string]float64{}
			if len(rs) >= 2 {
				slopes["dense"] = model.LogLogSlope(x, col(func(r model.AttentionBenchResult) float64 { return r.DenseMs }))
				slopes["dsa"] = model.LogLogSlope(x, col(func(r model.AttentionBenchResult) float64 { return r.DSAMs }))
				slopes["sparse_attn"] = model.LogLogSlope(x, col(func(r model.AttentionBenchResult) float64 { return r.SparseMs }))
				slopes["indexer"] = model.LogLogSlope(x, col(func(r model.AttentionBenchResult) float64 { return r.IndexerMs }))
				slopes["dense_decode"] = model.LogLogSlope(x, col(func(r model.AttentionBenchResult) float64 { return r.DenseDecUs }))
				slopes["dsa_decode"] = model.LogLogSlope(x, col(func(r model.AttentionBenchResult) float64 { return r.DSADecUs }))
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(map[string]any{"shape": sh, "slopes": slopes})
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "layer: %d heads, qk %d+%d, v %d, kv latent %d; indexer %d heads × %d; batch 1; top-k %d; medians of %d\n",
				sh.H, sh.Dn, sh.Dr, sh.Dv, sh.KVr, sh.IH, sh.IDh, topk, reps)
			w := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(w, "L\tdense ms\tdsa ms\t(indexer\tsparse)\tratio\tdense dec µs\tdsa dec µs\tratio\tdense MiB\tdsa MiB\t")
			for _, r := range rs {
				fmt.Fprintf(w, "%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.3f\t%.0f\t%.0f\t%.3f\t%.1f\t%.1f\t\n", r.Length, r.DenseMs, r.DSAMs, r.IndexerMs, r.SparseMs, r.Ratio,
					r.DenseDecUs, r.DSADecUs, r.DecodeRatio, r.DenseMemMiB, r.DSAMemMiB)
			}
			if err := w.Flush(); err != nil {
				return err
			}
			if len(slopes) > 0 {
				fmt.Fprintf(out, "log-log slopes: dense %.2f, dsa %.2f (indexer %.2f, sparse attention %.2f); decode: dense %.2f, dsa %.2f\n",
					slopes["dense"], slopes["dsa"], slopes["indexer"], slopes["sparse_attn"], slopes["dense_decode"], slopes["dsa_decode"])
			}
			return nil
		},
	}
	c.Flags().StringVar(&lengths, "lengths", "512,1024,2048,4096", "comma-separated sequence lengths")
	c.Flags().IntVar(&topk, "topk", 256, "keys per query")
	c.Flags().IntVar(&reps, "reps", 3, "repetitions (medians are reported)")
	c.Flags().BoolVar(&asJSON, "json", false, "one JSON object per length, then one with the shape and the slopes")
	return c
}

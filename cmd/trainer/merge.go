// merge.go is `trainer merge`: a weight-space merge of specialists that share a base (trainer.Merge:
// average, task arithmetic, TIES), written as a normal checkpoint; it prints the checkpoint's directory.

package main

import (
	"errors"
	"fmt"
	"slices"

	"github.com/spf13/cobra"

	"github.com/sparrow-rl/sparrow/merge"
	"github.com/sparrow-rl/sparrow/trainer"
)

func init() { extraCommands = append(extraCommands, newMergeCmd) }

func newMergeCmd() *cobra.Command {
	var method, base, out string
	var lambda, density float64
	c := &cobra.Command{
		Use:   "merge --method average|task_arithmetic|ties --base DIR --out RUN_DIR SPECIALIST...",
		Short: "Merge specialists fine-tuned from one base in weight space; writes RUN_DIR/checkpoints/merge_<method>-0",
		Long: `Merge checkpoints fine-tuned from the same base, tensor by tensor:
  average          θ = mean of the specialists
  task_arithmetic  θ = θ_base + λ·Σ (θ_i − θ_base)                          (Ilharco et al. 2023)
  ties             trim each task vector to its top --density by magnitude, elect the sign of the larger
                   total, average the agreeing values: θ = θ_base + λ·τ_m   (Yadav et al. 2023)
The result is a normal checkpoint (trainer eval --checkpoint, init_from).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if base == "" || out == "" {
				return errors.New("--base and --out are required")
			}
			m := merge.Method(method)
			if !slices.Contains(merge.Methods, m) {
				return fmt.Errorf("--method %q: want average, task_arithmetic or ties", method)
			}
			bdir, err := checkpointDir(base)
			if err != nil {
				return err
			}
			var specs []string
			for _, a := range args {
				d, err := checkpointDir(a)
				if err != nil {
					return err
				}
				specs = append(specs, d)
			}
			dir, err := trainer.Merge(trainer.MergeOptions{Method: m, Base: bdir, Specialists: specs, Options: merge.Options{Lambda: lambda, Density: density}, Out: out})
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), dir)
			return nil
		},
	}
	c.Flags().StringVar(&method, "method", "ties", "average | task_arithmetic | ties")
	c.Flags().StringVar(&base, "base", "", "the base checkpoint the specialists were fine-tuned from")
	c.Flags().StringVar(&out, "out", "", "run directory to write checkpoints/merge_<method>-0 into")
	c.Flags().Float64Var(&lambda, "lambda", 1, "scale of the merged task vector (task_arithmetic, ties)")
	c.Flags().Float64Var(&density, "density", 0.2, "share of each task vector TIES keeps, in (0, 1]")
	return c
}

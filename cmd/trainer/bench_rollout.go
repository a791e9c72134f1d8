// bench_rollout.go implements `trainer bench rollout [--config math] [--checkpoint DIR] [--json]`: completion
// tokens/s of GRPO group sampling and the learner's step time on those groups (bench.BenchRollout,
// internal/bench). It attaches itself to the bench command of bench.go.

package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/internal/bench"
)

func init() { benchSubcommands = append(benchSubcommands, newBenchRolloutCmd) }

func newBenchRolloutCmd() *cobra.Command {
	var config, stage, ckpt string
	var sets []string
	var asJSON bool
	c := &cobra.Command{
		Use:   "rollout",
		Short: "GRPO rollout throughput (completion tokens/s, G per prompt) and the learner's step time",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := configs.Load(config, sets)
			if err != nil {
				return err
			}
			res, err := bench.BenchRollout(cfg, stage, ckpt)
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rollout: %d groups × %d, %d workers: %d completion tokens (mean %.1f) in %.2f s = %.0f tokens/s, %.2f groups/s\nlearner step: %.2f s (%.0f tokens/s)  [%s]\n",
				res.Groups, res.GroupSize, res.Workers, res.CompletionTokens, res.MeanLength, res.RolloutSeconds, res.TokensPerS, res.GroupsPerS,
				res.LearnerStepS, res.LearnerTokensPerS, res.Backend)
			return nil
		},
	}
	c.Flags().StringVar(&config, "config", "math", "recipe with an rl stage")
	c.Flags().StringVar(&stage, "stage", "", "rl stage name (default: the first rl stage)")
	c.Flags().StringVar(&ckpt, "checkpoint", "", "policy checkpoint (default: a random policy, which never stops before max_new_tokens)")
	c.Flags().StringArrayVar(&sets, "set", nil, "override a config key (repeatable)")
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	return c
}

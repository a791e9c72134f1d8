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
	var vs string
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
			results := []*bench.RolloutBenchResult{res}
			if vs != "" {
				// the same policy and sampling on a single-turn family, in the same process right after
				vcfg, err := configs.Load(config, sets)
				if err != nil {
					return fmt.Errorf("--vs %s: %w", vs, err)
				}
				for i := range vcfg.Stages { // the family alone changes (its own default params)
					vcfg.Stages[i].RL.Env, vcfg.Stages[i].RL.EnvParams = vs, map[string]string{}
				}
				vres, err := bench.BenchRollout(vcfg, stage, ckpt)
				if err != nil {
					return fmt.Errorf("--vs %s: %w", vs, err)
				}
				results = append(results, vres)
			}
			if asJSON {
				if len(results) == 1 {
					return json.NewEncoder(cmd.OutOrStdout()).Encode(res)
				}
				return json.NewEncoder(cmd.OutOrStdout()).Encode(results)
			}
			for i, r := range results {
				env := cfg.Stages[0].RL.Env
				for _, s := range cfg.Stages {
					if s.Kind == configs.KindRL {
						env = s.RL.Env
						break
					}
				}
				if i == 1 {
					env = vs
				}
				fmt.Fprintf(cmd.OutOrStdout(), "rollout %s: %d groups × %d, %d workers: %d completion tokens (mean %.1f) in %.2f s = %.0f tokens/s, %.2f episodes/s, %.2f groups/s\nlearner step: %.2f s (%.0f tokens/s)  [%s]\n",
					env, r.Groups, r.GroupSize, r.Workers, r.CompletionTokens, r.MeanLength, r.RolloutSeconds, r.TokensPerS, r.EpisodesPerS, r.GroupsPerS,
					r.LearnerStepS, r.LearnerTokensPerS, r.Backend)
			}
			if len(results) == 2 {
				fmt.Fprintf(cmd.OutOrStdout(), "ratio %s / %s: tokens/s %.2f, episodes/s %.2f\n", "tools", vs,
					results[0].TokensPerS/results[1].TokensPerS, results[0].EpisodesPerS/results[1].EpisodesPerS)
			}
			return nil
		},
	}
	c.Flags().StringVar(&config, "config", "math", "recipe with an rl stage")
	c.Flags().StringVar(&stage, "stage", "", "rl stage name (default: the first rl stage)")
	c.Flags().StringVar(&ckpt, "checkpoint", "", "policy checkpoint (default: a random policy, which never stops before max_new_tokens)")
	c.Flags().StringArrayVar(&sets, "set", nil, "override a config key (repeatable)")
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON object (with --vs: an array of two)")
	c.Flags().StringVar(&vs, "vs", "", "also measure the same policy and rl settings on this single-turn family (e.g. math), in the same run, and print the ratio")
	return c
}

// compare.go is `trainer compare`, `trainer plot` and `trainer ablate`: a table of the key metrics and
// differing config keys of several runs (trainer.CompareRuns), their curves overlaid in one PNG
// (trainer.PlotRuns), and an ablation grid run in-process whose arms are then compared
// (trainer.RunAblation).

package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sparrow-rl/sparrow/trainer"
)

func init() {
	extraCommands = append(extraCommands, newCompareCmd, newPlotCmd, newAblateCmd)
}

// splitMetricList splits comma-separated flag values ("a,b" and repeated flags alike), dropping empty items.
func splitMetricList(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

func newCompareCmd() *cobra.Command {
	var metrics []string
	var last int
	var asJSON bool
	c := &cobra.Command{
		Use:   "compare RUN_DIR...",
		Short: "Compare runs: final, best and last-k mean of the key metrics per stage, and the config keys that differ",
		Long: `Compare run directories (finished or interrupted): for each stage and key metric, every run's final
value, best value (the minimum for loss- and KL-like metrics, else the maximum) and the mean of its last K
records, then the config.yaml keys (flattened: stages.rl_math.rl.kl) whose values differ. The default
metrics are every eval/*/accuracy, reward/mean, actor/kl, loss and eval/loss; --metrics takes names or
patterns ("*" does not cross "/").`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cmp, err := trainer.CompareRuns(args, splitMetricList(metrics), last)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(cmp)
			}
			return cmp.WriteText(cmd.OutOrStdout())
		},
	}
	c.Flags().StringSliceVar(&metrics, "metrics", nil, "metrics to compare, comma-separated names or patterns (default eval/*/accuracy,reward/mean,actor/kl,loss,eval/loss)")
	c.Flags().IntVar(&last, "last", trainer.DefaultCompareLast, "K of the last-K mean")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of the table")
	return c
}

func newPlotCmd() *cobra.Command {
	var metrics []string
	var out string
	c := &cobra.Command{
		Use:   "plot RUN_DIR...",
		Short: "Draw metrics of one or more runs overlaid into one PNG (one panel per stage and metric)",
		Long: `Draw the metrics of run directories (finished or interrupted: a torn last line of metrics.jsonl is
skipped) into one PNG, one panel per stage and metric, one curve per run labelled by its directory name;
a series of one point is drawn as a marker. The default metrics are those of trainer compare.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				out = "plot.png"
				if len(args) == 1 {
					out = filepath.Join(args[0], trainer.PlotsDir, "runs.png")
				}
			}
			panels, err := trainer.PlotRuns(args, splitMetricList(metrics), out)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", out, strings.Join(panels, ", "))
			return nil
		},
	}
	c.Flags().StringSliceVar(&metrics, "metrics", nil, "metrics to draw, comma-separated names or patterns (default: those of compare)")
	c.Flags().StringVar(&out, "out", "", "PNG file (default RUN_DIR/plots/runs.png for one run, else plot.png)")
	return c
}

func newAblateCmd() *cobra.Command {
	var arms, sets []string
	var out string
	var parallel int
	c := &cobra.Command{
		Use:   "ablate ABLATION.yaml | CONFIG --arm NAME=key=value,... [--arm ...]",
		Short: "Run an ablation grid in-process (one run directory per arm) and write compare.txt and compare.json",
		Long: `Run every arm of an ablation, one run directory per arm under --out, then write the comparison of
the arms (as trainer compare) to --out/compare.txt and --out/compare.json, and the grid itself to
--out/ablation.json. The argument is an ablation file (a YAML file with "base" and "arms": see
configs/ablations/) or a config (file or recipe name) whose arms come from --arm NAME=key=value,...
(NAME alone: the config as is). --arm adds arms to a file's; --set overrides every arm.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var abl *trainer.Ablation
			if trainer.IsAblationFile(args[0]) {
				a, err := trainer.LoadAblation(args[0])
				if err != nil {
					return err
				}
				abl = a
			} else {
				name := strings.TrimSuffix(filepath.Base(args[0]), filepath.Ext(args[0]))
				abl = &trainer.Ablation{Name: name, Base: args[0]}
				if len(arms) == 0 {
					return fmt.Errorf("ablate %s: not an ablation file, and no --arm given", args[0])
				}
			}
			for _, s := range arms {
				arm, err := trainer.ParseArm(s)
				if err != nil {
					return fmt.Errorf("--arm: %w", err)
				}
				abl.Arms = append(abl.Arms, arm)
			}
			if out == "" {
				out = filepath.Join("runs", fmt.Sprintf("ablate-%s-%s", abl.Name, time.Now().Format("20060102-150405")))
			}
			log, err := loggerOf(cmd)
			if err != nil {
				return err
			}
			ctx, stop := stopContext(cmd.Context(), log, stopTimeoutOf(cmd), gracefulTrainer)
			defer stop()
			log.Info("ablate", "ablation", abl.Name, "base", abl.Base, "arms", len(abl.Arms), "out", out, "parallel", parallel)
			cmp, err := trainer.RunAblation(ctx, abl, trainer.AblateOptions{Out: out, Parallel: parallel, Sets: sets, Log: log})
			if cmp != nil {
				if werr := cmp.WriteText(cmd.OutOrStdout()); werr != nil && err == nil {
					err = werr
				}
				log.Info("ablation written", "compare", filepath.Join(out, trainer.CompareText))
			}
			return err
		},
	}
	c.Flags().StringArrayVar(&arms, "arm", nil, "an arm: NAME=key=value,key=value (repeatable)")
	c.Flags().StringArrayVar(&sets, "set", nil, "override a config key in every arm (repeatable)")
	c.Flags().StringVar(&out, "out", "", "output directory (default runs/ablate-<name>-<timestamp>)")
	c.Flags().IntVar(&parallel, "parallel", 1, "arms run at once")
	return c
}

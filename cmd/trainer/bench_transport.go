// bench_transport.go implements `trainer bench transport [--config C] [--groups N] [--steps S] [--json]`:
// groups/s and MB/s through the trajectory stream of an embedded nats-server for realistic groups of the
// recipe's model, weight publish + fetch time, and in a short full RL run the learner's data-wait share and
// the transport overhead as a share of its step (bench.BenchTransport, internal/bench). It attaches itself to
// bench.go.

package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sparrow-rl/sparrow/internal/bench"
)

func init() { benchSubcommands = append(benchSubcommands, newBenchTransportCmd) }

func newBenchTransportCmd() *cobra.Command {
	var config string
	var sets []string
	var groups, steps int
	var asJSON bool
	c := &cobra.Command{
		Use:   "transport",
		Short: "Rollout bus: groups/s and MB/s through NATS JetStream, weight sync time, learner data-wait share",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if groups <= 0 || steps < 2 {
				return fmt.Errorf("--groups %d must be > 0 and --steps %d >= 2", groups, steps)
			}
			r, err := bench.BenchTransport(cmd.Context(), config, sets, groups, steps)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(r)
			}
			s := r.Stream
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "stream (%s model, %d groups of G=%d, %.0f bytes/group encoded):\n", r.Config, s.Groups, s.GroupSize, s.GroupBytes)
			fmt.Fprintf(w, "  %.0f groups/s, %.1f MB/s; per group: encode %.3f ms, publish %.3f ms, decode %.3f ms, end to end %.3f ms\n",
				s.GroupsPerS, s.MBPerS, s.EncodeMs, s.PublishMs, s.DecodeMs, s.EndToEndMs)
			fmt.Fprintf(w, "weights: %.2f MB, publish %.3f s, fetch %.3f s\n", float64(s.WeightsBytes)/1e6, s.WeightsPutS, s.WeightsFetchS)
			fmt.Fprintf(w, "full run (%d steps, %d prompts × G=%d): step %.3f s, train %.3f s, data wait %.1f %%, measured transport %.2f %% of the step\n",
				r.RunSteps, r.RunPrompts, r.RunGroupSize, r.StepS, r.TrainS, 100*r.DataWaitFrac, 100*r.TransportFrac)
			fmt.Fprintf(w, "stream overhead per step (encode+publish+decode × %d groups): %.2f ms = %.2f %% of the learner's train step (goal < 5 %%)\n",
				r.RunPrompts, r.StreamOverheadMs, r.OverheadPctTrain)
			return nil
		},
	}
	c.Flags().StringVar(&config, "config", "pretrain", "recipe whose model and rl section to use (its first stage runs as rl)")
	c.Flags().StringArrayVar(&sets, "set", nil, "override a config key (repeatable)")
	c.Flags().IntVar(&groups, "groups", 200, "groups pushed through the stream")
	c.Flags().IntVar(&steps, "steps", 3, "steps of the full run (the first is not counted)")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

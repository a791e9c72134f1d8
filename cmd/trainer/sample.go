// sample.go implements `trainer sample`: N completions of one prompt from a checkpoint (trainer.SampleEpisodes),
// a held-out task of a family (--env, graded) or a free prompt (--prompt), printed as a person reads them:
// the prompt, then each episode's reasoning (the text before </think>) and answer, finish reason, reward and
// correctness; --json prints the record in the shape of rollouts.jsonl's lines instead.

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/sparrow-rl/sparrow/checkpoints"
	"github.com/sparrow-rl/sparrow/checkpoints/objstore"
	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/rollout"
	"github.com/sparrow-rl/sparrow/trainer"
)

func init() { extraCommands = append(extraCommands, newSampleCmd) }

func newSampleCmd() *cobra.Command {
	var ckpt, config, stage, env, prompt string
	var sets []string
	var n, task int
	var greedy, asJSON bool
	var temperature float64
	c := &cobra.Command{
		Use:   "sample --checkpoint DIR (--env NAME | --prompt TEXT)",
		Short: "Sample completions of a held-out task or a prompt from a checkpoint and print them readably",
		Long: "Sample --n completions from the checkpoint's policy, decoding as rl workers do (rl.max_new_tokens,\n" +
			"temperature, top_p, top_k of the config's rl section): of held-out task --task of the family --env (the\n" +
			"tasks evaluations use, graded by the family's verifier), or of --prompt rendered as a user turn.\n" +
			"Each episode prints its reasoning (before </think>), answer, finish reason, and for --env reward and\n" +
			"correctness; --json prints one rollouts.jsonl-shaped line (kind \"sample\") instead.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if ckpt == "" {
				return errors.New("--checkpoint is required")
			}
			if (env == "") == (prompt == "") {
				return errors.New("give --env NAME or --prompt TEXT (one of them)")
			}
			if greedy && cmd.Flags().Changed("temperature") {
				return errors.New("--greedy and --temperature exclude each other")
			}
			if cmd.Flags().Changed("temperature") && !(temperature > 0) {
				return fmt.Errorf("--temperature must be > 0 (or use --greedy), got %g", temperature)
			}
			dir, cfg, st, err := sampleSetup(cmd, ckpt, config, stage, sets)
			if err != nil {
				return err
			}
			g, err := trainer.SampleEpisodes(cmd.Context(), trainer.SampleOptions{Checkpoint: dir, Config: cfg, Stage: st,
				Env: env, Task: task, Prompt: prompt, N: n, Greedy: greedy, Temperature: temperature})
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetEscapeHTML(false) // as rollouts.jsonl: <think> stays readable
				if err := enc.Encode(g); err != nil {
					return fmt.Errorf("sample --json: %w", err)
				}
				return nil
			}
			return printEpisodes(cmd.OutOrStdout(), dir, g)
		},
	}
	c.Flags().StringVar(&ckpt, "checkpoint", "", "checkpoint directory (or a run's checkpoints/ directory: its newest, or an s3:// URL)")
	c.Flags().StringVar(&config, "config", "", "config whose rl section says how to decode and grade (default: the run's config.yaml, else the math recipe)")
	c.Flags().StringVar(&stage, "stage", "", "stage whose rl section to use (default: the checkpoint's stage, else the first rl stage, else the first)")
	c.Flags().StringVar(&env, "env", "", "task family (math, logic, code, kvretrieval, needle, dataset, or a tool environment: calc, search, interpreter, toolmix — multi-turn episodes with calls and results): sample a held-out task")
	c.Flags().IntVar(&task, "task", 0, "with --env: which held-out task, in the order evaluations draw them")
	c.Flags().StringVar(&prompt, "prompt", "", "a free prompt, rendered as a user turn (not graded)")
	c.Flags().IntVar(&n, "n", 4, "completions to sample")
	c.Flags().BoolVar(&greedy, "greedy", false, "decode greedily (temperature 0: every completion is the same)")
	c.Flags().Float64Var(&temperature, "temperature", 0, "sampling temperature (default: the config's rl.temperature)")
	c.Flags().BoolVar(&asJSON, "json", false, "print the episodes as one rollouts.jsonl-shaped JSON line")
	c.Flags().StringArrayVar(&sets, "set", nil, "override a config key (repeatable)")
	return c
}

// sampleSetup resolves the checkpoint directory (an s3:// URL is downloaded, a checkpoints/ directory gives its
// newest), the config (the run's config.yaml next to the checkpoint unless --config) and the stage.
func sampleSetup(cmd *cobra.Command, ckpt, config, stage string, sets []string) (string, *configs.Config, configs.Stage, error) {
	if objstore.IsURL(ckpt) {
		dir, err := objstore.Resolve(cmd.Context(), ckpt, "")
		if err != nil {
			return "", nil, configs.Stage{}, err
		}
		ckpt = dir
	}
	if fi, err := os.Stat(filepath.Join(ckpt, "latest")); err == nil && !fi.IsDir() {
		if d, err := checkpoints.Latest(ckpt); err == nil {
			ckpt = d
		}
	}
	if config == "" {
		config = "math"
		if cand := filepath.Join(filepath.Dir(filepath.Dir(filepath.Clean(ckpt))), "config.yaml"); fileExists(cand) {
			config = cand
		}
	}
	cfg, err := configs.Load(config, sets)
	if err != nil {
		return "", nil, configs.Stage{}, err
	}
	name := stage
	if name == "" {
		name = checkpointStage(ckpt, cfg)
	}
	s, ok := cfg.Stage(name)
	if !ok {
		return "", nil, configs.Stage{}, fmt.Errorf("--stage %q: config %s has stages %v", name, config, cfg.StageNames())
	}
	if staged := stageSets(sets, s.Name); len(staged) > 0 {
		// a run's resolved config.yaml gives every stage its own sections: the overrides must reach the stage
		if cfg, err = configs.Load(config, append(slices.Clone(sets), staged...)); err != nil {
			return "", nil, configs.Stage{}, err
		}
		s, _ = cfg.Stage(name)
	}
	return ckpt, cfg, *s, nil
}

// checkpointStage is the stage of cfg whose rl section samples the checkpoint: the checkpoint's own stage when
// cfg has it, else the first rl stage, else the first stage.
func checkpointStage(ckpt string, cfg *configs.Config) string {
	var ts checkpoints.TrainerState
	if b, err := os.ReadFile(filepath.Join(ckpt, checkpoints.TrainerStateFile)); err == nil && json.Unmarshal(b, &ts) == nil {
		if _, ok := cfg.Stage(ts.Stage); ok {
			return ts.Stage
		}
	}
	for _, s := range cfg.Stages {
		if s.Kind == configs.KindRL {
			return s.Name
		}
	}
	return cfg.Stages[0].Name
}

func fileExists(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir()
}

// printEpisodes prints the prompt and each episode as a person reads them.
func printEpisodes(w io.Writer, dir string, g *trainer.RolloutGroup) error {
	var b strings.Builder
	fmt.Fprintf(&b, "checkpoint %s (stage %s, step %d, policy version %d)\n", dir, g.Stage, g.Step, g.PolicyVersion)
	if g.Env != "" {
		fmt.Fprintf(&b, "task %s of %s, reference answer %q\n", strings.TrimPrefix(g.GroupID, "sample-"), g.Env, g.Answer)
	}
	fmt.Fprintf(&b, "\nprompt:\n%s\n", indent(g.Prompt))
	for i, c := range g.Completions {
		fmt.Fprintf(&b, "\n── episode %d/%d ── %d tokens, finish %s", i+1, len(g.Completions), c.Length, c.FinishReason)
		if c.Correct != nil {
			verdict := "wrong"
			if *c.Correct {
				verdict = "correct"
			}
			fmt.Fprintf(&b, ", reward %.4g, %s", c.Reward, verdict)
		}
		b.WriteString("\n")
		if c.Turns != nil {
			printTurns(&b, c.Turns)
			continue
		}
		reasoning, answer, closed := strings.Cut(c.Text, "</think>")
		fmt.Fprintf(&b, "reasoning:\n%s\n", indent(reasoning))
		if closed {
			fmt.Fprintf(&b, "answer:\n%s\n", indent(answer))
		} else {
			b.WriteString("answer: (none: the completion never closed its reasoning with </think>)\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// printTurns prints a multi-turn tool episode: per turn the reasoning, the calls with their results, and the
// final turn's answer.
func printTurns(b *strings.Builder, turns []rollout.Turn) {
	for k, t := range turns {
		reasoning, rest, closed := strings.Cut(strings.TrimSuffix(t.Text, "<｜end▁of▁sentence｜>"), "</think>")
		fmt.Fprintf(b, "turn %d reasoning:\n%s\n", k+1, indent(reasoning))
		if !closed {
			b.WriteString("  (the turn never closed its reasoning with </think>)\n")
			continue
		}
		if len(t.Calls) == 0 {
			fmt.Fprintf(b, "answer:\n%s\n", indent(rest))
			continue
		}
		if content, _, _ := strings.Cut(rest, "\n\n<｜DSML｜function_calls"); strings.TrimSpace(content) != "" {
			fmt.Fprintf(b, "turn %d content:\n%s\n", k+1, indent(content))
		}
		for _, c := range t.Calls {
			if c.Name == "" {
				fmt.Fprintf(b, "call (malformed block) → %s\n", readable(c.Result))
				continue
			}
			fmt.Fprintf(b, "call %s(%s) → %s\n", c.Name, readable(c.Arguments), readable(c.Result))
		}
	}
}

// indent prefixes every line of s with two spaces ("  (empty)" for an empty s), after making it safe for a
// terminal (readable).
func indent(s string) string {
	if s == "" {
		return "  (empty)"
	}
	return "  " + strings.ReplaceAll(readable(s), "\n", "\n  ")
}

// readable writes the bytes of s that are not valid UTF-8 as \xNN and control characters other than newline
// and tab as \uNNNN, so that a completion of byte tokens cannot garble the terminal.
func readable(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, "\\x%02x", s[i])
		case r != '\n' && r != '\t' && unicode.IsControl(r):
			fmt.Fprintf(&b, "\\u%04x", r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

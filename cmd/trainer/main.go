// main.go builds the root command with its global logging flags and the run, eval and version commands;
// the other files of the package add theirs (bench, chat, export, learn, rollout) through extraCommands.

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sparrow-rl/sparrow/checkpoints"
	"github.com/sparrow-rl/sparrow/checkpoints/objstore"
	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/internal/kernels"
	"github.com/sparrow-rl/sparrow/rollout/natsbus"
	"github.com/sparrow-rl/sparrow/trainer"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		if errors.Is(err, trainer.ErrInterrupted) || errors.As(err, new(*stopSignal)) {
			os.Exit(exitInterrupted) // a graceful stop (signals.go)
		}
		os.Exit(1)
	}
}

type globalFlags struct {
	logLevel    string
	logFormat   string
	stopTimeout time.Duration
}

func (g *globalFlags) logger(w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", g.logLevel)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch g.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", g.logFormat)
}

func newRootCmd() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:           "trainer",
		Short:         "Sparrow: DeepSeek-V3.2-style pre-training and RL post-training in Go",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "debug, info, warn or error")
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "text", "text or json (logs go to stderr)")
	root.PersistentFlags().DurationVar(&g.stopTimeout, "stop-timeout", 2*time.Minute,
		"after SIGINT/SIGTERM, exit at once (128+signal) if the graceful stop takes longer than this (0: wait)")
	root.AddCommand(newRunCmd(g), newEvalCmd(g), newVersionCmd())
	for _, c := range extraCommands {
		cmd := c()
		if cmd.Name() == "bench" {
			attachBenchSubcommands(cmd)
		}
		root.AddCommand(cmd)
	}
	return root
}

// extraCommands are the commands other files of this package add (bench, chat, export, learn, rollout).
var extraCommands []func() *cobra.Command

// benchSubcommands are added to the bench command by the files that define them (bench attention, rollout, transport).
var benchSubcommands []func() *cobra.Command

// attachBenchSubcommands adds benchSubcommands to the bench command built by newBenchCmd.
func attachBenchSubcommands(bench *cobra.Command) {
	for _, sub := range benchSubcommands {
		bench.AddCommand(sub())
	}
}

func newRunCmd(g *globalFlags) *cobra.Command {
	var sets []string
	var runDir, resume string
	var leaseTTL time.Duration
	var mf metricsFlags
	c := &cobra.Command{
		Use:   "run [CONFIG] [--resume [DIR]]",
		Short: "Run a training pipeline (a recipe name such as math, or a YAML file), or continue one with --resume",
		Long: `Run a training pipeline: CONFIG is a recipe name (math, tiny, ...) or a YAML file.

--resume continues a run. Bare, it takes the newest checkpoint of --run-dir; --resume DIR (or --resume=DIR)
takes a run directory (its newest checkpoint), a checkpoint directory or an s3:// URL. Without CONFIG the
run directory's resolved config.yaml is used, with --set applied on top; every key that differs from the
checkpoint's config is logged. Examples:

  trainer run --resume runs/tiny-20260101-120000
  trainer run --resume --run-dir runs/tiny-20260101-120000 --set train.steps=400
  trainer run --resume runs/tiny-20260101-120000/checkpoints/pretrain-200
  trainer run tiny --run-dir runs/x --resume     # the recipe as it is now, differences named`,
		Args: cobra.RangeArgs(0, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			config, res, dir, err := runTarget("run", args, resume, runDir)
			if err != nil {
				return err
			}
			cfg, err := loadRunConfig(config, sets, config == filepath.Join(dir, "config.yaml"))
			if err != nil {
				return err
			}
			runDir = resolveRunDir(dir, cfg)
			console := trainer.NewConsole(cmd.ErrOrStderr())
			log, err := g.logger(console)
			if err != nil {
				return err
			}
			ctx, stop := stopContext(cmd.Context(), log, g.stopTimeout, gracefulTrainer)
			defer stop()
			log.Info("run", "config", cfg.Name, "from", config, "dir", runDir, "stages", strings.Join(cfg.StageNames(), ","), "blas", kernels.Backend(), "blas_core", kernels.BackendCore(), "threads", kernels.Threads())
			obs, stopMetrics, err := mf.learner(ctx, log)
			if err != nil {
				return err
			}
			defer stopMetrics()
			start := time.Now()
			if err := trainer.Execute(ctx, cfg, trainer.Options{Dir: runDir, Resume: res, Log: log, Console: console, LeaseTTL: leaseTTL, Observer: obs}); err != nil {
				return err
			}
			log.Info("run finished", "dir", runDir, "minutes", fmt.Sprintf("%.2f", time.Since(start).Minutes()))
			return nil
		},
	}
	c.Flags().StringArrayVar(&sets, "set", nil, "override a config key, e.g. --set optimizer.lr=1e-3 (repeatable)")
	c.Flags().StringVar(&runDir, "run-dir", "", "run directory (default runs/<name>-<timestamp>)")
	c.Flags().StringVar(&resume, "resume", "", "continue a run: bare --resume takes the newest checkpoint of --run-dir; --resume DIR a run directory, a checkpoint directory or an s3:// URL (CONFIG defaults to the run's config.yaml)")
	c.Flags().Lookup("resume").NoOptDefVal = "auto"
	c.Flags().DurationVar(&leaseTTL, "lease-ttl", natsbus.DefaultLeaseTTL, "with rl.bus.transport nats: TTL of the learner lease (a learner gone this long is replaced)")
	mf.register(c)
	return c
}

// loadRunConfig loads the config of `trainer run` with the --set overrides. A run's resolved config.yaml
// (resolved) gives every stage its own copy of every section, which would shadow a top-level --set: there a
// --set of a stage section (train.steps=…) applies to every stage as well.
func loadRunConfig(config string, sets []string, resolved bool) (*configs.Config, error) {
	if !resolved || len(sets) == 0 {
		return configs.Load(config, sets)
	}
	base, err := configs.Load(config, nil)
	if err != nil {
		return nil, err
	}
	all := slices.Clone(sets)
	for _, name := range base.StageNames() {
		all = append(all, stageSets(sets, name)...)
	}
	return configs.Load(config, all)
}

// runTarget works out what `trainer run` (or `learn`, command) runs from its arguments and its --resume and --run-dir flags: the
// config (a recipe, a file, or the run directory's config.yaml when resuming without one), the resume target
// for trainer.Options.Resume ("", "auto", a checkpoint directory or an s3:// URL) and the run directory ("":
// resolveRunDir picks one).
//
// --resume takes an optional value, so `--resume DIR` with a space leaves DIR as a positional argument: with
// a bare --resume, an argument that is a directory (or an s3:// URL) is the resume target (a config is a
// recipe name or a file, never a directory). A resume target that is a run directory (no manifest.json, a
// checkpoints/ directory) is the run directory, resumed from its newest checkpoint.
func runTarget(command string, args []string, resume, runDir string) (config, res, dir string, err error) {
	dir = runDir
	for _, a := range args {
		isDir := false
		if fi, err := os.Stat(a); err == nil && fi.IsDir() {
			isDir = true
		}
		switch {
		case resume == "auto" && (isDir || objstore.IsURL(a)):
			resume = a
		case config == "" && !isDir:
			config = a
		case isDir:
			return "", "", "", fmt.Errorf("%s: %s is a directory, not a config; to continue the run in it: trainer %s --resume %s", command, a, command, a)
		default:
			return "", "", "", fmt.Errorf("%s: unexpected argument %q (one CONFIG; --resume DIR takes one directory)", command, a)
		}
	}
	res = resume
	if res != "" && res != "auto" && !objstore.IsURL(res) {
		_, errMan := os.Stat(filepath.Join(res, checkpoints.ManifestFile))
		fi, errCk := os.Stat(filepath.Join(res, "checkpoints"))
		switch {
		case errMan == nil: // a checkpoint directory: its run directory when it lives in one
			if dir == "" && config == "" && filepath.Base(filepath.Dir(filepath.Clean(res))) == "checkpoints" {
				dir = filepath.Dir(filepath.Dir(filepath.Clean(res)))
			}
		case errCk == nil && fi.IsDir(): // a run directory
			if dir != "" && filepath.Clean(dir) != filepath.Clean(res) {
				return "", "", "", fmt.Errorf("%s: --resume %s is a run directory, and --run-dir names another (%s)", command, res, dir)
			}
			dir, res = res, "auto"
		default:
			return "", "", "", fmt.Errorf("%s: --resume %s: not a checkpoint (no %s) nor a run directory (no checkpoints/)", command, res, checkpoints.ManifestFile)
		}
	}
	if config != "" {
		return config, res, dir, nil
	}
	if res == "" {
		return "", "", "", fmt.Errorf("%s: CONFIG is required (a recipe name such as tiny, or a YAML file), unless you continue a run with --resume", command)
	}
	if dir == "" {
		return "", "", "", fmt.Errorf("%s: --resume without CONFIG reads the run directory's config.yaml: name it with --run-dir DIR or --resume RUN_DIR", command)
	}
	config = filepath.Join(dir, "config.yaml")
	if _, err := os.Stat(config); err != nil {
		return "", "", "", fmt.Errorf("%s: --resume: %s has no resolved config (%w): pass the CONFIG to continue it with", command, dir, err)
	}
	return config, res, dir, nil
}

func newEvalCmd(g *globalFlags) *cobra.Command {
	var ckpt, config, stage, env, samplesPath string
	var sets []string
	var batches, n, k int
	c := &cobra.Command{
		Use:   "eval --checkpoint DIR|RUN_DIR",
		Short: "Evaluate a checkpoint: held-out loss and perplexity, or with --env task accuracy and pass@k; prints JSON",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if ckpt == "" {
				return errors.New("--checkpoint is required")
			}
			if objstore.IsURL(ckpt) {
				dir, err := objstore.Resolve(cmd.Context(), ckpt, "")
				if err != nil {
					return err
				}
				ckpt = dir
			}
			if fi, err := os.Stat(filepath.Join(ckpt, "checkpoints", checkpoints.LatestFile)); err == nil && !fi.IsDir() {
				// a run directory: its newest checkpoint
				d, err := checkpoints.Latest(filepath.Join(ckpt, "checkpoints"))
				if err != nil {
					return fmt.Errorf("--checkpoint %s: a run directory without a usable latest checkpoint: %w", ckpt, err)
				}
				ckpt = d
			} else if fi, err := os.Stat(filepath.Join(ckpt, "latest")); err == nil && !fi.IsDir() {
				// a checkpoints/ directory: take its newest checkpoint
				if d, err := checkpoints.Latest(ckpt); err == nil {
					ckpt = d
				}
			}
			if config == "" {
				// the run's own resolved config when the checkpoint lives in a run directory
				cand := filepath.Join(filepath.Dir(filepath.Dir(filepath.Clean(ckpt))), "config.yaml")
				if _, err := os.Stat(cand); err == nil {
					config = cand
				} else {
					config = "pretrain"
				}
			}
			cfg, err := configs.Load(config, sets)
			if err != nil {
				return err
			}
			st := cfg.Stages[0]
			if stage != "" {
				s, ok := cfg.Stage(stage)
				if !ok {
					return fmt.Errorf("--stage %q: config %s has stages %v", stage, config, cfg.StageNames())
				}
				st = *s
			}
			if staged := stageSets(sets, st.Name); len(staged) > 0 {
				// A run's resolved config.yaml gives every stage its own copy of every section, which would
				// shadow a top-level --set: apply the overrides to the evaluated stage as well.
				if cfg, err = configs.Load(config, append(slices.Clone(sets), staged...)); err != nil {
					return err
				}
				s, _ := cfg.Stage(st.Name)
				st = *s
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			if strings.Contains(env, ",") { // several families: one JSON object with each one's accuracy
				names, err := trainer.SplitEnvs(env)
				if err != nil {
					return err
				}
				res, err := trainer.EvaluateFamilies(ckpt, cfg, st, names, n, k)
				if err != nil {
					return err
				}
				return enc.Encode(res)
			}
			if env != "" {
				res, err := trainer.EvaluateTasks(ckpt, cfg, st, env, n, k)
				if err != nil {
					return err
				}
				if samplesPath != "" {
					if err := writeSamples(samplesPath, res.Samples); err != nil {
						return err
					}
				}
				return enc.Encode(res)
			}
			if batches <= 0 {
				batches = st.Train.EvalBatches
			}
			res, err := trainer.Evaluate(ckpt, cfg, st, batches)
			if err != nil {
				return err
			}
			return enc.Encode(res)
		},
	}
	c.Flags().StringVar(&ckpt, "checkpoint", "", "checkpoint directory, or a run directory or its checkpoints/ directory (their newest checkpoint)")
	c.Flags().StringVar(&config, "config", "", "config for the data and batch shape (default: the run's config.yaml, else the pretrain recipe)")
	c.Flags().StringVar(&stage, "stage", "", "stage whose data section to evaluate on (default: the first)")
	c.Flags().IntVar(&batches, "batches", 0, "held-out batches (default: train.eval_batches)")
	c.Flags().StringVar(&env, "env", "", "evaluate on a task family instead (math, logic, code, kvretrieval, needle, dataset), or on several (math,logic,code: one JSON object by family): greedy accuracy and pass@k")
	c.Flags().IntVar(&n, "n", 500, "with --env: held-out tasks")
	c.Flags().IntVar(&k, "k", 8, "with --env: samples per task for pass@k (0 = greedy only)")
	c.Flags().StringVar(&samplesPath, "samples", "", "with --env: write every greedy completion and its grade to this JSONL file")
	c.Flags().Bool("json", true, "print JSON (the only format)")
	c.Flags().StringArrayVar(&sets, "set", nil, "override a config key (repeatable)")
	return c
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, module version, VCS revision, Go version and BLAS backend",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, args []string) {
			bi, ok := debug.ReadBuildInfo()
			fmt.Fprint(cmd.OutOrStdout(), versionText(version, bi, ok))
		},
	}
}

// versionText is what `trainer version` prints: the version (-ldflags -X main.version, else the module's),
// the main module's path and version ("(devel)" for a build from a source tree rather than a released
// module), the VCS revision with its commit time and whether the tree had uncommitted changes, the Go
// version and platform, and the BLAS backend.
func versionText(ldVersion string, bi *debug.BuildInfo, ok bool) string {
	mod, modVer := "github.com/sparrow-rl/sparrow", "unknown (no build information)"
	settings := map[string]string{}
	if ok && bi != nil {
		if bi.Main.Path != "" {
			mod = bi.Main.Path
		}
		switch bi.Main.Version {
		case "":
			modVer = "unknown"
		case "(devel)":
			modVer = "(devel): built from a source tree, not a released module version"
		default:
			modVer = bi.Main.Version
		}
		for _, s := range bi.Settings {
			settings[s.Key] = s.Value
		}
	}
	v := ldVersion
	if v == "" || v == "dev" {
		v = "dev"
		if ok && bi != nil && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
	}
	rev := settings["vcs.revision"]
	if rev == "" {
		rev = "unknown (built without VCS information: -buildvcs=false, go run, or outside a checkout)"
	} else {
		if t := settings["vcs.time"]; t != "" {
			rev += " (committed " + t + ")"
		}
		if settings["vcs.modified"] == "true" {
			rev += ", modified: built with uncommitted changes"
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "sparrow trainer %s\n", v)
	fmt.Fprintf(&b, "module   %s %s\n", mod, modVer)
	fmt.Fprintf(&b, "revision %s\n", rev)
	fmt.Fprintf(&b, "go       %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(&b, "blas     %s, %d threads\n", kernels.Backend(), kernels.Threads())
	return b.String()
}

// writeSamples writes greedy evaluation samples as JSONL, one object per task.
func writeSamples(path string, samples []trainer.TaskSample) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("eval --samples: %w", err)
	}
	enc := json.NewEncoder(f)
	for _, s := range samples {
		if err := enc.Encode(s); err != nil {
			f.Close()
			return fmt.Errorf("eval --samples %s: %w", path, err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("eval --samples %s: %w", path, err)
	}
	return nil
}

// resolveRunDir is the run directory: --run-dir, else the config's run.dir, else runs/<name>-<timestamp>.
func resolveRunDir(flag string, cfg *configs.Config) string {
	if flag != "" {
		return flag
	}
	if cfg.Run.Dir != "" {
		return cfg.Run.Dir
	}
	return filepath.Join("runs", fmt.Sprintf("%s-%s", cfg.Name, time.Now().Format("20060102-150405")))
}

// stageSections are the config sections a stage carries its own copy of (configs.Stage).
var stageSections = []string{"data.", "optimizer.", "schedule.", "train.", "rl.", "dsa."}

// stageSets returns the --set overrides of stage sections addressed to the stage name ("rl.env_params=…" →
// "stages.NAME.rl.env_params=…").
func stageSets(sets []string, name string) []string {
	var out []string
	for _, s := range sets {
		for _, sec := range stageSections {
			if strings.HasPrefix(s, sec) {
				out = append(out, "stages."+name+"."+s)
				break
			}
		}
	}
	return out
}

// learn.go implements `trainer learn CONFIG --nats URL` (the RL learner alone: it dispatches prompts,
// trains on the groups that come back over NATS JetStream and publishes the weights after each update) and
// `trainer rollout CONFIG --nats URL [--workers N]` (a rollout worker process, which decodes as the learner's
// policy runs: the weights say dense or sparse, and a config that says otherwise is refused). Credentials pass through to
// nats.go: user and password or a token in the URL (nats://user:pass@host:4222, nats://token@host:4222) or
// from SPARROW_NATS_PASSWORD / SPARROW_NATS_TOKEN, a .creds file, TLS files. Secrets are taken out of the
// URL before anything is logged or written to config.yaml. SIGINT and SIGTERM stop both gracefully
// (signals.go); the learner holds the stage's lease on the server (--lease-ttl, natsbus.Lease).

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/rollout"
	"github.com/sparrow-rl/sparrow/rollout/natsbus"
	"github.com/sparrow-rl/sparrow/trainer"
)

func init() { extraCommands = append(extraCommands, newLearnCmd, newRolloutCmd) }

// natsFlags are the connection flags shared by learn and rollout.
type natsFlags struct {
	url, user, creds, ca, cert, key string
}

func (f *natsFlags) register(c *cobra.Command) {
	c.Flags().StringVar(&f.url, "nats", "", "NATS server URL(s), comma-separated; user:password@ or token@ allowed (never logged)")
	c.Flags().StringVar(&f.user, "nats-user", "", "NATS user (password from SPARROW_NATS_PASSWORD or the URL)")
	c.Flags().StringVar(&f.creds, "nats-creds", "", "NATS .creds file")
	c.Flags().StringVar(&f.ca, "nats-tls-ca", "", "CA bundle (PEM) of the server's certificate")
	c.Flags().StringVar(&f.cert, "nats-tls-cert", "", "client certificate (PEM) for mutual TLS")
	c.Flags().StringVar(&f.key, "nats-tls-key", "", "client key (PEM) for mutual TLS")
}

// apply turns the flags into --set overrides (no secrets) and a context carrying the secrets.
func (f *natsFlags) apply(ctx context.Context, sets []string) ([]string, context.Context, error) {
	if f.url == "" {
		return nil, ctx, errors.New("--nats URL is required")
	}
	clean, user, sec, err := natsbus.SplitURL(f.url)
	if err != nil {
		return nil, ctx, err
	}
	if f.user != "" {
		user = f.user
	}
	env := natsbus.SecretsFrom(context.Background())
	if sec.Password == "" {
		sec.Password = env.Password
	}
	if sec.Token == "" {
		sec.Token = env.Token
	}
	out := append([]string{"rl.bus.transport=nats", "rl.bus.url=" + clean}, sets...)
	for _, kv := range [][2]string{{"user", user}, {"creds_file", f.creds}, {"tls_ca", f.ca}, {"tls_cert", f.cert}, {"tls_key", f.key}} {
		if kv[1] != "" {
			out = append(out, "rl.bus."+kv[0]+"="+kv[1])
		}
	}
	return out, natsbus.WithSecrets(ctx, sec), nil
}

// stopTimeoutOf is the --stop-timeout global flag.
func stopTimeoutOf(cmd *cobra.Command) time.Duration {
	d, err := cmd.Flags().GetDuration("stop-timeout")
	if err != nil {
		return 2 * time.Minute
	}
	return d
}

func loggerOf(cmd *cobra.Command) (*slog.Logger, error) {
	lvl, _ := cmd.Flags().GetString("log-level")
	format, _ := cmd.Flags().GetString("log-format")
	g := &globalFlags{logLevel: lvl, logFormat: format}
	if g.logLevel == "" {
		g.logLevel = "info"
	}
	if g.logFormat == "" {
		g.logFormat = "text"
	}
	return g.logger(cmd.ErrOrStderr())
}

func newLearnCmd() *cobra.Command {
	var nf natsFlags
	var sets []string
	var runDir, resume string
	var leaseTTL time.Duration
	var mf metricsFlags
	c := &cobra.Command{
		Use:   "learn [CONFIG] --nats URL [--resume [DIR]]",
		Short: "Run the RL learner alone against a NATS server; rollout workers run as `trainer rollout`",
		Long: `Run the RL learner alone against a NATS server; rollout workers run as ` + "`trainer rollout`" + `.
--resume continues a run as for ` + "`trainer run`" + `: bare, the newest checkpoint of --run-dir; --resume DIR a run
directory, a checkpoint directory or an s3:// URL; without CONFIG the run's config.yaml with --set on top.`,
		Args: cobra.RangeArgs(0, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := loggerOf(cmd)
			if err != nil {
				return err
			}
			ctx, stop := stopContext(cmd.Context(), log, stopTimeoutOf(cmd), gracefulTrainer)
			defer stop()
			all, ctx, err := nf.apply(ctx, append([]string{"rl.bus.local_workers=false"}, sets...))
			if err != nil {
				return err
			}
			config, res, dir, err := runTarget("learn", args, resume, runDir)
			if err != nil {
				return err
			}
			cfg, err := loadRunConfig(config, all, config == filepath.Join(dir, "config.yaml"))
			if err != nil {
				return err
			}
			runDir = resolveRunDir(dir, cfg)
			log.Info("learn", "config", cfg.Name, "from", config, "dir", runDir, "nats", cfg.RL.Bus.URL)
			obs, stopMetrics, err := mf.learner(ctx, log)
			if err != nil {
				return err
			}
			defer stopMetrics()
			return trainer.Execute(ctx, cfg, trainer.Options{Dir: runDir, Resume: res, Log: log, LeaseTTL: leaseTTL, Observer: obs})
		},
	}
	nf.register(c)
	c.Flags().StringArrayVar(&sets, "set", nil, "override a config key (repeatable)")
	c.Flags().StringVar(&runDir, "run-dir", "", "run directory (default runs/<name>-<timestamp>)")
	c.Flags().StringVar(&resume, "resume", "", "continue a run: bare --resume takes the newest checkpoint of --run-dir; --resume DIR a run directory, a checkpoint directory or an s3:// URL (CONFIG defaults to the run's config.yaml)")
	c.Flags().Lookup("resume").NoOptDefVal = "auto"
	c.Flags().DurationVar(&leaseTTL, "lease-ttl", natsbus.DefaultLeaseTTL, "TTL of the learner lease on the NATS server: a learner gone this long is replaced by the next one")
	mf.register(c)
	return c
}

func newRolloutCmd() *cobra.Command {
	var nf natsFlags
	var sets []string
	var stage, runDir string
	var workers int
	var mf metricsFlags
	c := &cobra.Command{
		Use:   "rollout CONFIG --nats URL [--workers N]",
		Short: "Run rollout workers for the learner of CONFIG over NATS; exits when the learner finishes the stage",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := loggerOf(cmd)
			if err != nil {
				return err
			}
			ctx, stop := stopContext(cmd.Context(), log, stopTimeoutOf(cmd), gracefulRollout)
			defer stop()
			all, ctx, err := nf.apply(ctx, sets)
			if err != nil {
				return err
			}
			cfg, err := configs.Load(args[0], all)
			if err != nil {
				return err
			}
			var st *configs.Stage
			for i := range cfg.Stages {
				if s := &cfg.Stages[i]; (s.Kind == configs.KindRL || s.Kind == configs.KindDistill) && (stage == "" || s.Name == stage) {
					st = s
					break
				}
			}
			if st == nil {
				return fmt.Errorf("config %s has no rl or distill stage %q (stages: %v)", cfg.Name, stage, cfg.StageNames())
			}
			if workers <= 0 {
				workers = st.RL.Workers
			}
			fam, err := trainer.RLFamily(*st)
			if err != nil {
				return err
			}
			fam, closeTools, err := trainer.RemoteTools(ctx, *st, fam, log)
			if err != nil {
				return err
			}
			defer closeTools()
			att, why, err := trainer.WorkerAttention(cfg, *st)
			if err != nil {
				return err
			}
			var scorer rollout.Scorer
			if st.Kind == configs.KindDistill { // this process holds the teachers and scores what it samples
				var stageFinal func(string) (string, error)
				if runDir != "" {
					stageFinal = trainer.StageFinal(cfg, runDir)
				}
				sc, err := trainer.LoadTeacherScorer(ctx, *st, cfg.Model, stageFinal, filepath.Join(os.TempDir(), "sparrow-teachers"), log)
				if err != nil {
					return err
				}
				scorer = sc
			}
			names := trainer.BusNames(cfg, *st)
			conn := natsbus.FromConfig(ctx, st.RL.Bus, st.RL.Bus.URL, "", log)
			log.Info("rollout", "config", cfg.Name, "stage", st.Name, "workers", workers, "conn", conn, "jobs", names.JobSubject(),
				"attention", att, "why", why, "keep_selection", st.RL.KeepSelection)
			onStart, stopMetrics, err := mf.worker(ctx, log)
			if err != nil {
				return err
			}
			defer stopMetrics()
			rep, err := natsbus.RunWorkers(ctx, natsbus.WorkerOptions{Conn: conn, Names: names, RL: st.RL, Attention: att, AttentionWhy: why,
				Family: fam, Workers: workers, Log: log, OnStart: onStart, Scorer: scorer})
			log.Info("rollout finished", "groups", rep.Groups, "tokens", rep.Tokens, "policy_version", rep.Version, "weight_swaps", rep.Swaps, "policy", rep.Policy.String())
			if sig := stoppedBySignal(ctx); sig != nil && errors.Is(err, context.Canceled) {
				// a graceful stop: finished groups were published and acked, prompts in flight handed back
				return fmt.Errorf("rollout: %w; prompts in flight were handed back to the queue", sig)
			}
			return err
		},
	}
	nf.register(c)
	c.Flags().StringArrayVar(&sets, "set", nil, "override a config key (repeatable)")
	c.Flags().StringVar(&stage, "stage", "", "rl or distill stage to serve (default: the first)")
	c.Flags().StringVar(&runDir, "run-dir", "", "the learner's run directory, where a distill stage's stage:<name> teachers are (else teachers must be directories or s3:// URLs)")
	c.Flags().IntVar(&workers, "workers", 0, "workers in this process (default: rl.workers)")
	mf.register(c)
	return c
}

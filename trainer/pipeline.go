// pipeline.go: the pipeline runner. A run is a directory (docs/architecture.md, "Run directory") and a list
// of stages; each stage starts from its init_from checkpoint, the previous stage's weights, or a fresh model,
// and ends with a checkpoint. Resume picks up a checkpoint's stage at its step, with its optimizer state and
// data cursor, so N steps + resume + N steps equals 2N steps bit for bit. One trainer at a time works in a
// run directory (runlock.go), and checkpoints/latest only moves forward (checkpoints.CheckForward).

package trainer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/sparrow-rl/sparrow/checkpoints"
	"github.com/sparrow-rl/sparrow/checkpoints/objstore"
	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/internal/kernels"
	"github.com/sparrow-rl/sparrow/model"
)

// ImplementedKinds are the stage kinds this build can run.
var ImplementedKinds = map[string]bool{configs.KindPretrain: true, configs.KindSFT: true, configs.KindRL: true, configs.KindDSAWarmup: true, configs.KindDSASparse: true, configs.KindDistill: true}

// Options configure a pipeline run.
type Options struct {
	// Dir is the run directory (created if missing).
	Dir string
	// Resume is "" (start fresh; refuses a run directory that already has checkpoints), "auto" (continue the
	// newest checkpoint of Dir), or a checkpoint directory. Resuming logs every config key that differs from
	// the checkpoint's, drops the records of the steps after the checkpoint from metrics.jsonl and the
	// TensorBoard files, and refuses a damaged checkpoint, naming the newest intact one (resume.go).
	Resume string
	Log    *slog.Logger
	// Console, when set, is the writer Log's handler writes to: a stage's progress bar is drawn on its output
	// and log lines print above the bar (console.go). Without one the bar (run.progress) draws on stderr.
	Console *Console
	// LeaseTTL is the time to live of an rl stage's learner lease on a NATS cluster (0: the default,
	// natsbus.DefaultLeaseTTL): a learner that stops renewing it is replaced after at most this long.
	LeaseTTL time.Duration
	// Observer gets every metric record as it is logged (nil: none), e.g. the Prometheus endpoint's
	// telemetry.Learner; when it is also a QueueWatcher, rl stages on NATS hand it the queue's depth.
	Observer Observer
	// TableOut receives the end-of-run accuracy table (run.accuracy_table > 0); nil = standard output.
	TableOut io.Writer
}

// Run is one pipeline run in progress.
type Run struct {
	Config  *configs.Config
	Dir     string
	Metrics *Metrics
	Log     *slog.Logger

	uploader *objstore.Uploader // checkpoint.upload: background copies to object storage
	console  *Console           // Options.Console
	leaseTTL time.Duration      // Options.LeaseTTL
}

// queueWatcher is the metrics observer when it reads the rollout queue's depth, or nil.
func (r *Run) queueWatcher() QueueWatcher {
	if r.Metrics == nil {
		return nil
	}
	qw, _ := r.Metrics.Observer.(QueueWatcher)
	return qw
}

// CheckpointsDir is <run>/checkpoints.
func (r *Run) CheckpointsDir() string { return filepath.Join(r.Dir, "checkpoints") }

// saveCheckpoint writes ck under its name; fence (nil: none) runs right before the checkpoint takes its name
// and latest moves, and its error (a lost learner lease) discards the checkpoint.
func (r *Run) saveCheckpoint(ck *checkpoints.Checkpoint, fence func() error) (string, error) {
	name := checkpoints.Name(ck.State.Stage, ck.State.Step)
	dir, err := checkpoints.SaveWith(r.CheckpointsDir(), name, ck, checkpoints.SaveOptions{Stages: r.Config.StageNames(), Fence: fence})
	if err != nil {
		return "", fmt.Errorf("saving checkpoint %s: %w", name, err)
	}
	r.Log.Info("checkpoint saved", "dir", dir)
	if r.uploader != nil {
		r.uploader.Enqueue(dir) // before local pruning: the uploader keeps its own hard links
	}
	c := r.Config.Checkpoint
	if c.KeepLast > 0 {
		removed, err := checkpoints.PruneKeeping(r.CheckpointsDir(), c.KeepLast, c.KeepEvery, r.isBranchPoint)
		if err != nil {
			return dir, fmt.Errorf("pruning checkpoints: %w", err)
		}
		for _, n := range removed {
			r.Log.Debug("checkpoint pruned", "name", n)
		}
	}
	return dir, nil
}

// Execute runs the pipeline of cfg (already validated) until its last stage ends, ctx is cancelled
// (ErrInterrupted, after a checkpoint of the last completed step), or an error. It holds the run
// directory's lock throughout (ErrRunLocked when another trainer holds it).
func Execute(ctx context.Context, cfg *configs.Config, opt Options) (err error) {
	if err := cfg.CheckKinds(ImplementedKinds); err != nil {
		return err
	}
	log := opt.Log
	if log == nil {
		log = slog.Default()
	}
	if opt.Dir == "" {
		return errors.New("trainer: no run directory")
	}
	if err := os.MkdirAll(opt.Dir, 0o755); err != nil {
		return fmt.Errorf("trainer: run directory: %w", err)
	}
	unlock, err := lockRunDir(opt.Dir)
	if err != nil {
		return err
	}
	defer unlock()
	r := &Run{Config: cfg, Dir: opt.Dir, Log: log, leaseTTL: opt.LeaseTTL, console: opt.Console}
	// object storage: s3:// references are downloaded to the run's cache and verified against their manifest
	cache := filepath.Join(opt.Dir, "cache")
	for i := range cfg.Stages {
		st := &cfg.Stages[i]
		if objstore.IsURL(st.InitFrom) {
			dir, err := objstore.Resolve(ctx, st.InitFrom, cache)
			if err != nil {
				return stoppedEarly(ctx, fmt.Errorf("stages[%s].init_from: %w", st.Name, err))
			}
			log.Info("init_from downloaded", "stage", st.Name, "from", st.InitFrom, "dir", dir)
			st.InitFrom = dir
		}
	}
	if objstore.IsURL(opt.Resume) {
		dir, err := objstore.Resolve(ctx, opt.Resume, cache)
		if err != nil {
			return stoppedEarly(ctx, fmt.Errorf("trainer: --resume: %w", err))
		}
		opt.Resume = dir
	}
	if cfg.Checkpoint.Upload != "" {
		store, err := objstore.NewFromEnv()
		if err != nil {
			return fmt.Errorf("checkpoint.upload: %w", err)
		}
		dst, err := objstore.ParseURL(cfg.Checkpoint.Upload)
		if err != nil {
			return fmt.Errorf("checkpoint.upload: %w", err)
		}
		r.uploader = objstore.NewUploader(store, dst, objstore.UploaderOptions{KeepLast: cfg.Checkpoint.KeepLast, KeepEvery: cfg.Checkpoint.KeepEvery})
		defer func() {
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			log.Info("waiting for checkpoint uploads", "to", cfg.Checkpoint.Upload)
			if uerr := r.uploader.Close(cctx); uerr != nil && err == nil {
				err = fmt.Errorf("checkpoint.upload: %w", uerr)
			}
		}()
	}
	var resume *checkpoints.Checkpoint
	switch opt.Resume {
	case "":
		if latest, err := checkpoints.Latest(r.CheckpointsDir()); err == nil {
			return fmt.Errorf("trainer: run directory %s already has checkpoint %s: pass --resume to continue it or choose another --run-dir", opt.Dir, filepath.Base(latest))
		}
	default:
		ck, dir, err := r.openResume(opt.Resume)
		if err != nil {
			return err
		}
		if ck.Foreign {
			return fmt.Errorf("trainer: --resume: %s is not a Sparrow training checkpoint (no trainer state); use init_from to start a stage from it", dir)
		}
		if _, ok := cfg.Stage(ck.State.Stage); !ok {
			return fmt.Errorf("trainer: --resume: checkpoint %s belongs to stage %q, which this config does not have (stages: %v)", dir, ck.State.Stage, cfg.StageNames())
		}
		// latest never moves back: resuming an older checkpoint into this run directory would, at its first save
		name := checkpoints.Name(ck.State.Stage, ck.State.Step)
		if err := checkpoints.CheckForward(r.CheckpointsDir(), name, cfg.StageNames()); err != nil {
			// unless the checkpoint latest names is damaged (resume.go): it is set aside and latest moves back
			lname := latestName(r.CheckpointsDir())
			reason := r.damagedReason(lname)
			ours := filepath.Clean(filepath.Dir(dir)) == filepath.Clean(r.CheckpointsDir()) && filepath.Base(dir) == name
			if !errors.Is(err, checkpoints.ErrBehindLatest) || reason == nil || !ours {
				return fmt.Errorf("trainer: --resume %s: %w", dir, err)
			}
			log.Warn("the newest checkpoint is damaged: setting it aside and resuming from an older one", "damaged", lname, "err", reason, "checkpoint", name)
			if err := checkpoints.RetireDamaged(r.CheckpointsDir(), lname, name); err != nil {
				return fmt.Errorf("trainer: --resume %s: %w", dir, err)
			}
		}
		r.logConfigChanges(ck, dir)
		if err := r.trimAfter(ck); err != nil {
			return err
		}
		resume = ck
		log.Info("resuming", "checkpoint", dir, "stage", ck.State.Stage, "step", ck.State.StageSteps)
	}
	if err := cfg.WriteResolved(filepath.Join(opt.Dir, "config.yaml")); err != nil {
		return fmt.Errorf("trainer: %w", err)
	}
	m, err := OpenMetrics(opt.Dir, cfg.Run.TensorBoard)
	if err != nil {
		return fmt.Errorf("trainer: %w", err)
	}
	defer m.Close()
	m.Observer = opt.Observer
	r.Metrics = m
	if cfg.Run.Threads > 0 {
		kernels.SetThreads(cfg.Run.Threads)
	}

	var params *model.Params
	skipping := resume != nil
	for _, st := range cfg.Stages {
		if skipping && st.Name != resume.State.Stage {
			log.Info("stage already done", "stage", st.Name)
			continue
		}
		var ck *checkpoints.Checkpoint
		if skipping {
			ck, skipping = resume, false
		}
		params, err = r.runStage(ctx, st, params, ck)
		if err != nil {
			return err
		}
		if cfg.Run.Plots {
			if _, err := PlotRun(opt.Dir); err != nil {
				log.Warn("plotting failed", "err", err)
			}
		}
	}
	if n := cfg.Run.AccuracyTable; n > 0 {
		out := opt.TableOut
		if out == nil {
			out = os.Stdout
		}
		if err := r.writeAccuracyTable(n, out); err != nil {
			return err
		}
	}
	return nil
}

// stoppedEarly turns an error that ctx's cancellation caused before any step was trained into
// ErrInterrupted: there is nothing to save.
func stoppedEarly(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return fmt.Errorf("%w before training, nothing to save (%v)", ErrInterrupted, err)
	}
	return err
}

// newStage builds the stage of st's kind over params.
func (r *Run) newStage(ctx context.Context, st configs.Stage, params *model.Params) (stage, error) {
	switch st.Kind {
	case configs.KindPretrain, configs.KindSFT:
		return newLMStage(r, st, params)
	case configs.KindDSAWarmup, configs.KindDSASparse:
		return newDSAStage(r, st, params)
	case configs.KindRL:
		return newRLStage(r, st, params)
	case configs.KindDistill:
		return newDistillStage(ctx, r, st, params)
	}
	return nil, fmt.Errorf("stages[%s].kind: %s is not implemented by this build", st.Name, st.Kind)
}

// stageParams returns the weights a stage starts from.
func (r *Run) stageParams(st configs.Stage, prev *model.Params) (*model.Params, error) {
	from := st.InitFrom
	if ref, ok := configs.StageRef(from); ok {
		dir, err := r.stageFinal(ref)
		if err != nil {
			return nil, fmt.Errorf("stages[%s].init_from: %w", st.Name, err)
		}
		r.Log.Info("branching from an earlier stage", "stage", st.Name, "from", ref, "checkpoint", dir)
		from = dir
	}
	switch {
	case from != "":
		p, warns, err := checkpoints.LoadParams(from)
		if err != nil {
			return nil, fmt.Errorf("stages[%s].init_from: %w", st.Name, err)
		}
		for _, w := range warns {
			r.Log.Warn(w, "stage", st.Name)
		}
		if p.Config != r.Config.Model {
			r.Log.Warn("init_from checkpoint's model differs from the config's model section; using the checkpoint's", "stage", st.Name)
		}
		return p, nil
	case prev != nil:
		return prev, nil
	default:
		p := model.NewParams(r.Config.Model)
		p.Init(uint64(r.Config.Seed))
		return p, nil
	}
}

func (r *Run) runStage(ctx context.Context, st configs.Stage, prev *model.Params, resume *checkpoints.Checkpoint) (*model.Params, error) {
	var params *model.Params
	var err error
	if resume != nil {
		if params, err = resume.ToParams(); err != nil {
			return nil, fmt.Errorf("trainer: --resume: %w", err)
		}
	} else if params, err = r.stageParams(st, prev); err != nil {
		return nil, err
	}
	total, active := params.Count()
	r.Log.Info("stage start", "stage", st.Name, "kind", st.Kind, "params", total, "active_params", active,
		"steps", st.Train.Steps, "batch", st.Train.BatchSize, "seq_len", st.Train.SeqLen, "grad_accum", st.Train.GradAccum, "blas", kernels.Backend())
	s, err := r.newStage(ctx, st, params)
	if err != nil {
		return nil, err
	}
	if err := r.runLoop(ctx, st, s, resume); err != nil {
		return nil, err
	}
	r.Log.Info("stage done", "stage", st.Name)
	return params, nil
}

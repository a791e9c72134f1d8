// stage.go: the one stage loop. Every stage kind is a type with the methods of stage; runLoop owns what
// they share: step counting, the skipped-step budget, metrics and console lines, the evaluation cadence,
// checkpoints (every checkpoint.every steps and at the end), exact resume, and a clean stop on cancellation
// (SIGINT, SIGTERM) after a checkpoint of the last completed step. A new stage kind is a new type, not a new
// loop.
//
// Stopping: a step is either completed or not counted. A stage's step watches ctx only while it waits for
// its inputs, and then returns an error wrapping errStepStopped, having changed nothing; once it changes the
// model it runs to its end (update, new policy version, weights published) whatever ctx says. The loop then
// skips the evaluation (or drops one in progress), saves the last completed step (unless saved already; the
// stage then acks what the checkpoint holds), and returns ErrInterrupted. Any other error while stopping is
// an error: no checkpoint of a step that may be half done is ever written.

package trainer

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/sparrow-rl/sparrow/checkpoints"
	"github.com/sparrow-rl/sparrow/configs"
)

// ErrInterrupted is returned (possibly wrapped) when a run stops because its context was cancelled (SIGINT,
// SIGTERM): a checkpoint of the last completed step has been written, or no step was trained since the
// checkpoint the run started from.
var ErrInterrupted = errors.New("trainer: interrupted")

// errStepStopped marks a step that ctx stopped before it changed anything: the loop does not count it.
var errStepStopped = errors.New("trainer: step stopped before it changed the model")

// fencer is a stage whose checkpoints are fenced (an rl stage holding a NATS learner lease): fence runs
// right before a checkpoint takes its name, and its error discards the checkpoint.
type fencer interface {
	fence() error
}

// stage is what runLoop drives: one stage kind's training.
type stage interface {
	// plan says how long the stage runs and when it logs and evaluates.
	plan() plan
	// begin runs once before the first step this process trains, from step (0, or the resumed step).
	begin(ctx context.Context, step int) error
	// step trains optimizer step number step (counting from 0).
	step(ctx context.Context, step int) (stepResult, error)
	// evaluate measures the model after step steps; an empty map logs nothing.
	evaluate(ctx context.Context, step int) (map[string]float64, error)
	// checkpoint returns the stage's part of a checkpoint after step steps: tensors, optimizer state, data
	// cursor (runLoop fills the stage, kind, step, skipped steps and config hash).
	checkpoint(step int) (*checkpoints.Checkpoint, error)
	// saved runs once the checkpoint is on disk.
	saved(ctx context.Context) error
	// restore loads the stage's part of a checkpoint of this stage (resume).
	restore(ck *checkpoints.Checkpoint) error
	// end releases the stage when the loop stops (also when begin did not run or failed); completed says the
	// stage ran all its steps.
	end(completed bool)
}

// plan is a stage's cadence.
type plan struct {
	steps     int
	logEvery  int  // steps between metric records (a step with a skipped update is always logged)
	evalEvery int  // steps between evaluations (0 = only at the end)
	evalFirst bool // evaluate before the first step of a fresh stage
	// headline are the metric keys of the console line; the progress bar shows the metric progress and the
	// throughput rate (tokens per second).
	headline       []string
	progress, rate string
}

// stepResult is what one step reports.
type stepResult struct {
	metrics map[string]float64
	tokens  int64 // tokens trained on, for tokens_per_s (0: the stage reports its own throughput)
	skipped int   // optimizer updates skipped for a non-finite loss or gradient norm
}

// stageRun is the loop's state of one stage.
type stageRun struct {
	run       *Run
	st        configs.Stage
	s         stage
	step      int // completed steps
	skipped   int // updates skipped so far
	lastSaved int
}

// runLoop trains s, the stage st, from the checkpoint resume (nil: from step 0) until its last step, ctx's
// cancellation (ErrInterrupted, after a checkpoint) or an error.
func (r *Run) runLoop(ctx context.Context, st configs.Stage, s stage, resume *checkpoints.Checkpoint) (err error) {
	sr := &stageRun{run: r, st: st, s: s, lastSaved: -1}
	p := s.plan()
	defer func() { s.end(sr.step >= p.steps && err == nil) }()
	if resume != nil {
		if err := s.restore(resume); err != nil {
			return fmt.Errorf("stage %s: resume: %w", st.Name, err)
		}
		sr.step, sr.skipped = resume.State.StageSteps, resume.State.SkippedSteps
	}
	pb := r.console.progress(r.Config.Run.Progress, st.Name, p.steps)
	defer r.console.finish(pb)
	pb.Show(p.progress)
	if sr.step > 0 {
		pb.Update(sr.step-1, math.NaN(), 0)
	}
	if err := s.begin(ctx, sr.step); err != nil {
		// stopped while starting (waiting for the server, the lease, the first weights): nothing was trained
		return stoppedEarly(ctx, fmt.Errorf("stage %s: %w", st.Name, err))
	}
	if sr.step == 0 && p.evalFirst && ctx.Err() == nil {
		if err := sr.evaluate(ctx); err != nil {
			return err
		}
	}
	rate := throughput{start: time.Now()}
	for sr.step < p.steps {
		if ctx.Err() != nil {
			return sr.interrupt()
		}
		res, err := s.step(ctx, sr.step)
		if err != nil {
			if ctx.Err() != nil && errors.Is(err, errStepStopped) {
				continue // stopped before it changed anything: the step did not happen
			}
			return fmt.Errorf("stage %s step %d: %w", st.Name, sr.step, err)
		}
		sr.step++
		if testHookAfterStep != nil {
			testHookAfterStep(sr.step)
		}
		if err := sr.record(res, &rate, p, pb); err != nil {
			return err
		}
		if ((p.evalEvery > 0 && sr.step%p.evalEvery == 0) || sr.step == p.steps) && ctx.Err() == nil {
			if err := sr.evaluate(ctx); err != nil {
				return err
			}
		}
		if every := r.Config.Checkpoint.Every; (every > 0 && sr.step%every == 0) || sr.step == p.steps {
			if err := sr.save(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// record logs a step's metrics (every plan.logEvery steps, the last step and any step with a skipped
// update) and enforces the skipped-step budget.
func (sr *stageRun) record(res stepResult, rate *throughput, p plan, pb *Progress) error {
	m := res.metrics
	name := sr.st.Name
	log := sr.run.Log.With("stage", name)
	rate.add(res.tokens)
	if res.skipped > 0 {
		sr.skipped += res.skipped
		log.Warn("skipped an update with a non-finite loss or gradient norm", "step", sr.step, "loss", m["loss"], "grad_norm", m["grad_norm"], "skipped_total", sr.skipped)
	}
	if sr.skipped > 0 {
		m["skipped_steps"] = float64(sr.skipped)
	}
	if res.skipped > 0 || sr.step%p.logEvery == 0 || sr.step == p.steps {
		if res.tokens > 0 && res.skipped == 0 {
			m["tokens_per_s"] = rate.perSecond()
		}
		if err := sr.run.Metrics.Log(name, sr.step, m); err != nil {
			return err
		}
		// with a bar drawn, a Console prints the line above it (console.go)
		log.Info("step", headline(sr.step, m, p.headline)...)
	}
	rateNow, ok := m[p.rate]
	if !ok {
		rateNow = math.NaN() // between metric records: the bar keeps the last rate
	}
	pb.Update(sr.step-1, m[p.progress], rateNow)
	if limit := max(10, p.steps/10); sr.skipped > limit {
		return fmt.Errorf("stage %s: %d updates skipped for non-finite values; stopping (lower optimizer.lr or check the data)", name, sr.skipped)
	}
	return nil
}

// headline is the console line of a step: the step, then the plan's metrics that the step has.
func headline(step int, m map[string]float64, keys []string) []any {
	out := []any{"step", step}
	for _, k := range keys {
		if v, ok := m[k]; ok {
			out = append(out, k, round4(v))
		}
	}
	return out
}

// evaluate runs the stage's evaluation after the current step and logs it.
func (sr *stageRun) evaluate(ctx context.Context) error {
	m, err := sr.s.evaluate(ctx, sr.step)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			sr.run.Log.Info("evaluation dropped: stopping", "stage", sr.st.Name, "step", sr.step)
			return nil
		}
		return fmt.Errorf("stage %s: eval: %w", sr.st.Name, err)
	}
	if len(m) == 0 {
		return nil
	}
	if err := sr.run.Metrics.Log(sr.st.Name, sr.step, m); err != nil {
		return err
	}
	line := []any{"stage", sr.st.Name, "step", sr.step}
	keys := make([]string, 0, len(m))
	for k := range m {
		if !strings.Contains(k, "/layer") { // per-layer values are in metrics.jsonl
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		line = append(line, k, round4(m[k]))
	}
	sr.run.Log.Info("eval", line...)
	return nil
}

// save writes the checkpoint of the current step, then lets the stage act on it.
func (sr *stageRun) save(ctx context.Context) error {
	ck, err := sr.s.checkpoint(sr.step)
	if err != nil {
		return fmt.Errorf("stage %s: checkpoint: %w", sr.st.Name, err)
	}
	st := &ck.State
	st.Stage, st.Kind, st.Step, st.StageSteps, st.SkippedSteps = sr.st.Name, sr.st.Kind, sr.step, sr.step, sr.skipped
	st.ConfigHash = sr.run.Config.Hash()
	var fence func() error
	if f, ok := sr.s.(fencer); ok {
		fence = f.fence
	}
	if _, err := sr.run.saveCheckpoint(ck, fence); err != nil {
		return err
	}
	sr.lastSaved = sr.step
	// a stop signal does not cut the stage's follow-up (acking what the checkpoint holds) short
	return sr.s.saved(context.WithoutCancel(ctx))
}

// interrupt saves the last completed step (unless saved already) and returns ErrInterrupted.
func (sr *stageRun) interrupt() error {
	if sr.lastSaved != sr.step {
		if err := sr.save(context.Background()); err != nil {
			return fmt.Errorf("saving on interrupt: %w", err)
		}
	}
	name := checkpoints.Name(sr.st.Name, sr.step)
	sr.run.Log.Info("interrupted", "stage", sr.st.Name, "step", sr.step, "checkpoint", name)
	return fmt.Errorf("%w after step %d of stage %s (checkpoint %s saved)", ErrInterrupted, sr.step, sr.st.Name, name)
}

// throughput measures tokens per second between metric records.
type throughput struct {
	tokens int64
	start  time.Time
}

func (t *throughput) add(n int64) { t.tokens += n }

// perSecond returns the rate since the last call (or the loop's start) and starts a new window.
func (t *throughput) perSecond() float64 {
	v := float64(t.tokens) / time.Since(t.start).Seconds()
	t.tokens, t.start = 0, time.Now()
	return v
}

func round4(v float64) float64 { return math.Round(v*1e4) / 1e4 }

// testHookAfterStep, when set by a test, is called after every step (to interrupt a run at a chosen step).
var testHookAfterStep func(step int)

// lm.go: the language-model training loop shared by the stages that minimise next-token cross-entropy
// (pretrain now; sft and dsa_sparse reuse it): micro-batches from a packer, gradient accumulation with the loss
// normalised by the trained-token count of the whole accumulated batch, global-norm clipping, AdamW with
// linear warm-up and cosine decay, a step with a non-finite loss or gradient norm skipped and counted, the
// aux-loss-free MoE bias update after each applied step (dsv32-spec.md §5.2), periodic held-out loss, metrics,
// checkpoints with exact resume, and a clean stop on cancellation after a checkpoint.
package trainer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/sparrow-rl/sparrow/checkpoints"
	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/model"
)

// ErrInterrupted is returned when a run stops because its context was cancelled (Ctrl-C); a checkpoint of
// the last completed step has been written.
var ErrInterrupted = errors.New("trainer: interrupted (checkpoint saved)")

// lmState is the part of trainer_state.json's data cursor that an LM stage owns.
type lmState struct {
	Packer json.RawMessage `json:"packer"`
}

// lmStage trains params on next-token prediction for one stage.
type lmStage struct {
	run    *Run
	stage  configs.Stage
	params *model.Params
	graph  *model.Graph[float32]
	opt    *AdamW
	groups []ParamGroup
	gradOf []int // spec index of each group
	packer batcher
	tok    *data.Tokenizer

	step, skipped int
	tokensSeen    int64
	batches       []data.Batch
	in            model.StepInput
	load          [][]int // per layer, accumulated over the micro-batches of a step
}

func corpusConfig(d configs.Data, seed int64) data.CorpusConfig {
	return data.CorpusConfig{Source: d.Source, Generator: d.Generator, Path: d.Path, TextColumn: d.TextColumn,
		HeldOut: d.HeldOut, MaxDigits: d.MaxDigits, Ops: d.Ops, Params: d.Params, Seed: seed}
}

func newLMStage(r *Run, st configs.Stage, params *model.Params) (*lmStage, error) {
	tr := st.Train
	tok, err := data.NewTokenizer(params.Config.VocabSize)
	if err != nil {
		return nil, err
	}
	batches, err := newBatcher(st, r.Config.Seed, tok, data.SplitTrain, tr.BatchSize, tr.SeqLen)
	if err != nil {
		return nil, fmt.Errorf("stage %s: training data: %w", st.Name, err)
	}
	g, err := model.NewGraph[float32](params.Config, params.Data, model.GraphOptions{B: tr.BatchSize, T: tr.SeqLen})
	if err != nil {
		batches.Close()
		return nil, fmt.Errorf("stage %s: %w", st.Name, err)
	}
	s := &lmStage{run: r, stage: st, params: params, graph: g, tok: tok, packer: batches}
	s.groups, s.gradOf = trainedGroups(params, g)
	o := st.Optimizer
	s.opt = NewAdamW(s.groups, o.Beta1, o.Beta2, o.Eps, o.WeightDecay)
	s.batches = make([]data.Batch, tr.GradAccum)
	N := tr.BatchSize * tr.SeqLen
	s.in = model.StepInput{Lengths: make([]int32, tr.BatchSize), Weights: make([]float32, N)}
	s.load = make([][]int, params.Config.NumHiddenLayers)
	for l := range s.load {
		if params.Config.IsMoE(l) {
			s.load[l] = make([]int, params.Config.NRoutedExperts)
		}
	}
	return s, nil
}

func (s *lmStage) close() {
	s.graph.Close()
	s.packer.Close()
}

// restore loads the optimizer moments, step counters and data cursor of a checkpoint of this stage.
func (s *lmStage) restore(ck *checkpoints.Checkpoint) error {
	if err := s.opt.LoadState(namedTensors(ck.Optimizer)); err != nil {
		return fmt.Errorf("resume: optimizer state: %w", err)
	}
	var cur lmState
	if err := json.Unmarshal(ck.State.DataCursor, &cur); err != nil {
		return fmt.Errorf("resume: data cursor: %w", err)
	}
	if err := s.packer.Restore(cur.Packer); err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	s.step, s.skipped, s.tokensSeen = ck.State.StageSteps, ck.State.SkippedSteps, ck.State.TokensSeen
	return nil
}

// save writes a checkpoint of the current step.
func (s *lmStage) save() (string, error) {
	ps, err := s.packer.State()
	if err != nil {
		return "", err
	}
	cur, err := json.Marshal(lmState{Packer: ps})
	if err != nil {
		return "", err
	}
	ck := &checkpoints.Checkpoint{Model: s.params.Config, Tensors: checkpoints.FromParams(s.params), Optimizer: optimizerTensors("", s.opt),
		State: checkpoints.TrainerState{Stage: s.stage.Name, Kind: s.stage.Kind, Step: s.step, StageSteps: s.step,
			TokensSeen: s.tokensSeen, SkippedSteps: s.skipped, DataCursor: cur, ConfigHash: s.run.Config.Hash()}}
	return s.run.saveCheckpoint(ck)
}

// trainStep runs one optimizer step over GradAccum micro-batches. It returns the step's metrics; applied is
// false when the step was skipped for a non-finite loss or gradient norm.
func (s *lmStage) trainStep() (m map[string]float64, applied bool, err error) {
	tr := s.stage.Train
	total := 0
	for i := range s.batches {
		if err := s.packer.Next(&s.batches[i]); err != nil {
			return nil, false, fmt.Errorf("step %d: %w", s.step, err)
		}
		total += s.batches[i].Tokens
	}
	if total == 0 {
		return nil, false, fmt.Errorf("step %d: the accumulated batch has no trained token", s.step)
	}
	for _, g := range s.groups {
		clear(g.Grad)
	}
	for _, l := range s.load {
		clear(l)
	}
	var loss, aux float64
	for i := range s.batches {
		b := &s.batches[i]
		fillStep(&s.in, b, 1/float64(total))
		for _, r := range s.graph.Routing {
			if r != nil {
				r.AuxScale = 1 / float64(tr.GradAccum)
			}
		}
		l, err := s.graph.Run(s.in)
		if err != nil {
			return nil, false, fmt.Errorf("step %d: %w", s.step, err)
		}
		loss += l
		aux += s.graph.AuxLoss()
		for k, gi := range s.gradOf {
			gr := s.graph.Grad(gi)
			dst := s.groups[k].Grad
			for j, v := range gr {
				dst[j] += v
			}
		}
		for l, r := range s.graph.Routing {
			if r != nil {
				for e, c := range r.Load {
					s.load[l][e] += c
				}
			}
		}
	}
	m = map[string]float64{"loss": loss}
	if s.params.Config.AuxLossAlpha > 0 {
		m["moe/aux_loss"] = aux
	}
	var cv float64
	nMoE := 0
	for _, l := range s.load {
		if l != nil {
			cv += model.LoadCV(l)
			nMoE++
		}
	}
	if nMoE > 0 {
		m["moe/load_cv"] = cv / float64(nMoE)
	}
	norm := GlobalNorm(s.groups)
	m["grad_norm"] = norm
	if math.IsNaN(loss) || math.IsInf(loss, 0) || math.IsNaN(norm) || math.IsInf(norm, 0) {
		s.skipped++
		return m, false, nil
	}
	if clip := s.stage.Optimizer.GradClip; clip > 0 {
		ClipGrads(s.groups, clip)
	}
	sc := s.stage.Schedule
	lr := LR(sc.Kind, s.stage.Optimizer.LR, s.step, sc.WarmupSteps, tr.Steps, sc.MinLRRatio)
	s.opt.Update(lr)
	m["lr"] = lr
	for l, ld := range s.load {
		if ld != nil {
			model.UpdateBias(s.params.Get(model.LayerPrefix(l)+"mlp.gate.e_score_correction_bias"), ld, s.params.Config.BiasUpdateSpeed)
		}
	}
	s.tokensSeen += int64(total)
	return m, true, nil
}

// evalLoss returns the mean next-token loss per trained token on the first n batches of the held-out split
// (the same batches at every evaluation).
func (s *lmStage) evalLoss(n int) (float64, error) {
	return heldOutLoss(s.graph, s.stage, s.run.Config.Seed, s.tok, n)
}

// heldOutLoss evaluates a graph's loss on n held-out batches of the data section d.
func heldOutLoss(g *model.Graph[float32], st configs.Stage, seed int64, tok *data.Tokenizer, n int) (float64, error) {
	p, err := newBatcher(st, seed, tok, data.SplitHeldOut, g.B, g.T)
	if err != nil {
		return 0, fmt.Errorf("held-out data: %w", err)
	}
	defer p.Close()
	var b data.Batch
	in := model.StepInput{Lengths: make([]int32, g.B), Weights: make([]float32, g.B*g.T)}
	var sum float64
	var tokens int
	saved := make([][]int, len(g.Routing))
	for l, r := range g.Routing {
		if r != nil {
			saved[l] = append([]int(nil), r.Load...)
		}
	}
	for i := 0; i < n; i++ {
		if err := p.Next(&b); err != nil {
			return 0, err
		}
		fillStep(&in, &b, 1)
		l, err := g.Run(in)
		if err != nil {
			return 0, err
		}
		sum += l
		tokens += b.Tokens
	}
	for l, r := range g.Routing {
		if r != nil {
			copy(r.Load, saved[l])
		}
	}
	if tokens == 0 {
		return 0, fmt.Errorf("held-out batches have no trained token")
	}
	return sum / float64(tokens), nil
}

// run trains until the stage's step budget, the context's cancellation, or an error.
func (s *lmStage) runLoop(ctx context.Context) error {
	tr := s.stage.Train
	r := s.run
	pb := NewProgress(r.Config.Run.Progress, s.stage.Name, tr.Steps)
	defer pb.Finish()
	if s.step > 0 {
		pb.Update(s.step, math.NaN(), 0)
	}
	log := r.Log.With("stage", s.stage.Name)
	every := r.Config.Checkpoint.Every
	var windowTokens int64
	windowStart := time.Now()
	lastSaved := -1
	for s.step < tr.Steps {
		if ctx.Err() != nil {
			if lastSaved != s.step {
				if _, err := s.save(); err != nil {
					return fmt.Errorf("saving on interrupt: %w", err)
				}
			}
			log.Info("interrupted", "step", s.step)
			return ErrInterrupted
		}
		tokensBefore := s.tokensSeen
		m, applied, err := s.trainStep()
		if err != nil {
			return fmt.Errorf("stage %s: %w", s.stage.Name, err)
		}
		if !applied {
			log.Warn("skipped a step with a non-finite loss or gradient norm", "step", s.step, "loss", m["loss"], "grad_norm", m["grad_norm"], "skipped_total", s.skipped)
			m["skipped_steps"] = float64(s.skipped)
			if err := r.Metrics.Log(s.stage.Name, s.step+1, m); err != nil {
				return err
			}
			if s.skipped > max(10, tr.Steps/10) {
				return fmt.Errorf("stage %s: %d steps skipped for non-finite values; stopping (lower optimizer.lr or check the data)", s.stage.Name, s.skipped)
			}
		}
		s.step++
		if testHookAfterStep != nil {
			testHookAfterStep(s.step)
		}
		windowTokens += s.tokensSeen - tokensBefore
		logNow := s.step%tr.LogEvery == 0 || s.step == tr.Steps
		if applied && logNow {
			el := time.Since(windowStart).Seconds()
			m["tokens_per_s"] = float64(windowTokens) / el
			windowTokens, windowStart = 0, time.Now()
			if s.skipped > 0 {
				m["skipped_steps"] = float64(s.skipped)
			}
			if err := r.Metrics.Log(s.stage.Name, s.step, m); err != nil {
				return err
			}
			pb.Update(s.step, m["loss"], m["tokens_per_s"])
			if !pb.Enabled() {
				log.Info("step", "step", s.step, "loss", round4(m["loss"]), "lr", m["lr"], "grad_norm", round4(m["grad_norm"]), "tokens_per_s", math.Round(m["tokens_per_s"]))
			}
		} else if applied {
			pb.Update(s.step, m["loss"], 0)
		}
		if (tr.EvalEvery > 0 && s.step%tr.EvalEvery == 0) || s.step == tr.Steps {
			el, err := s.evalLoss(tr.EvalBatches)
			if err != nil {
				return fmt.Errorf("stage %s: eval: %w", s.stage.Name, err)
			}
			if err := r.Metrics.Log(s.stage.Name, s.step, map[string]float64{"eval/loss": el}); err != nil {
				return err
			}
			if !pb.Enabled() {
				log.Info("eval", "step", s.step, "eval_loss", round4(el))
			}
		}
		if (every > 0 && s.step%every == 0) || s.step == tr.Steps {
			if _, err := s.save(); err != nil {
				return err
			}
			lastSaved = s.step
		}
	}
	return nil
}

func round4(v float64) float64 { return math.Round(v*1e4) / 1e4 }

var _ = slog.Info

// testHookAfterStep, when set by a test, is called after every step (to interrupt a run at a chosen step).
var testHookAfterStep func(step int)

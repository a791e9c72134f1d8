// lm.go: the stage kinds that minimise next-token cross-entropy, pretrain and sft (the loss on the
// assistant's tokens only comes from the data): micro-batches from a packer, gradient accumulation with the
// loss normalised by the trained-token count of the whole accumulated batch, global-norm clipping, AdamW with
// linear warm-up and cosine decay, a step with a non-finite loss or gradient norm skipped and counted, the
// aux-loss-free MoE bias update after each applied step (dsv32-spec.md §5.2), and the held-out loss as its
// evaluation. runLoop (stage.go) drives it.

package trainer

import (
	"context"
	"fmt"

	"github.com/sparrow-rl/sparrow/checkpoints"
	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/model"
)

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

	tokensSeen int64
	batches    []data.Batch
	in         model.StepInput
	load       moeLoad // accumulated over the micro-batches of a step
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
	g, err := model.NewGraph[float32](params.Config, params.Data, model.GraphOptions{B: tr.BatchSize, T: tr.SeqLen, Shards: r.Config.Run.GraphShards})
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
	s.load = newMoELoad(params.Config)
	return s, nil
}

func (s *lmStage) plan() plan {
	tr := s.stage.Train
	return plan{steps: tr.Steps, logEvery: tr.LogEvery, evalEvery: tr.EvalEvery,
		headline: []string{"loss", "lr", "grad_norm", "tokens_per_s"}, progress: "loss", rate: "tokens_per_s"}
}

func (s *lmStage) begin(context.Context, int) error { return nil }
func (s *lmStage) saved(context.Context) error      { return nil }

func (s *lmStage) end(bool) {
	s.graph.Close()
	s.packer.Close()
}

// restore loads the optimizer moments, token count and data cursor of a checkpoint of this stage.
func (s *lmStage) restore(ck *checkpoints.Checkpoint) error {
	if err := s.opt.LoadState(namedTensors(ck.Optimizer)); err != nil {
		return fmt.Errorf("resume: optimizer state: %w", err)
	}
	if err := restoreCursor(s.packer, ck.State.DataCursor); err != nil {
		return err
	}
	s.tokensSeen = ck.State.TokensSeen
	return nil
}

func (s *lmStage) checkpoint(int) (*checkpoints.Checkpoint, error) {
	cur, err := cursorOf(s.packer)
	if err != nil {
		return nil, err
	}
	return &checkpoints.Checkpoint{Model: s.params.Config, Tensors: checkpoints.FromParams(s.params), Optimizer: optimizerTensors("", s.opt),
		State: checkpoints.TrainerState{TokensSeen: s.tokensSeen, DataCursor: cur}}, nil
}

// step runs one optimizer step over GradAccum micro-batches; a step with a non-finite loss or gradient norm
// is skipped (no update) and reported.
func (s *lmStage) step(_ context.Context, step int) (stepResult, error) {
	tr := s.stage.Train
	total, err := nextBatches(s.packer, s.batches)
	if err != nil {
		return stepResult{}, err
	}
	for _, g := range s.groups {
		clear(g.Grad)
	}
	s.load.reset()
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
			return stepResult{}, err
		}
		loss += l
		aux += s.graph.AuxLoss()
		accumulate(s.graph, s.groups, s.gradOf)
		s.load.add(s.graph)
	}
	m := map[string]float64{"loss": loss}
	if s.params.Config.AuxLossAlpha > 0 {
		m["moe/aux_loss"] = aux
	}
	if cv, ok := s.load.cv(); ok {
		m["moe/load_cv"] = cv
	}
	norm := GlobalNorm(s.groups)
	m["grad_norm"] = norm
	if bad(loss) || bad(norm) {
		return stepResult{metrics: m, skipped: 1}, nil
	}
	if clip := s.stage.Optimizer.GradClip; clip > 0 {
		ClipGrads(s.groups, clip)
	}
	sc := s.stage.Schedule
	lr := LR(sc.Kind, s.stage.Optimizer.LR, step, sc.WarmupSteps, tr.Steps, sc.MinLRRatio)
	s.opt.Update(lr)
	m["lr"] = lr
	s.load.updateBiases(s.params)
	s.tokensSeen += int64(total)
	return stepResult{metrics: m, tokens: int64(total)}, nil
}

// evaluate returns eval/loss: the mean next-token loss per trained token on the first train.eval_batches
// batches of the held-out split (the same batches at every evaluation).
func (s *lmStage) evaluate(context.Context, int) (map[string]float64, error) {
	l, err := heldOutLoss(s.graph, s.stage, s.run.Config.Seed, s.tok, s.stage.Train.EvalBatches)
	if err != nil {
		return nil, err
	}
	return map[string]float64{"eval/loss": l}, nil
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

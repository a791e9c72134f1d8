// dsa_stages.go: the two continued-pre-training stages that install DeepSeek Sparse Attention in a dense model
// (dsv32-spec.md §2):
//
//   - dsa_warmup: dense attention; every parameter frozen except the lightning indexers, trained on
//     Σ_t KL(p_t ‖ softmax(I_t)) per layer (Eq. 3), p_t = head-mean attention probabilities; the stage's own
//     optimizer.lr and train.steps.
//   - dsa_sparse: top-k sparse attention; the stage's optimizer trains every backbone parameter on the LM loss,
//     a second AdamW (dsa.indexer_lr) trains the indexers on the KL restricted to the selected set (Eq. 4).
//     The indexer's inputs are detached inside the graph (model/dsa_ops.go), so the two losses share one
//     forward/backward and one Grad call, and each optimizer only sees its own gradients.
//
// Metrics: loss (LM), dsa/indexer_kl (mean over layers) and dsa/indexer_kl/layer<l>; at each eval the held-out
// LM loss, and on the same held-out batches a dense pass giving dsa/topk_recall, dsa/topk_recall_rel and
// dsa/best_topk_mass (mean and per layer, k = dsa.recall_topk); at the end of the stage the held-out accuracy
// on dsa.eval_env (greedy decoding with the engine: dense in warm-up, sparse in dsa_sparse). runLoop
// (stage.go) drives it.

package trainer

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/sparrow-rl/sparrow/checkpoints"
	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/envs"
	"github.com/sparrow-rl/sparrow/internal/kernels"
	"github.com/sparrow-rl/sparrow/model"
)

// indexerOptPrefix names the indexer optimizer's tensors in a dsa_sparse checkpoint.
const indexerOptPrefix = "indexer_opt/"

func isIndexerSpec(s model.Spec) bool { return strings.Contains(s.Name, ".indexer.") }

// dsaStage runs dsa_warmup or dsa_sparse.
type dsaStage struct {
	run    *Run
	stage  configs.Stage
	sparse bool
	params *model.Params
	graph  *model.Graph[float32]
	dense  *model.Graph[float32] // dense graph with recall metrics, for evaluation (the training graph in warm-up)
	tok    *data.Tokenizer
	src    batcher // the stage's training data: a text corpus or chat-format documents (packing padded)

	opt, iopt         *AdamW // backbone (sparse) or indexers (warm-up); indexers (sparse only)
	groups, igroups   []ParamGroup
	gradOf, igradOf   []int
	tokensSeen        int64
	batches           []data.Batch
	in                model.StepInput
	load              moeLoad
	recallK, nIndexer int
}

func newDSAStage(r *Run, st configs.Stage, params *model.Params) (*dsaStage, error) {
	cfg := params.Config
	if cfg.IndexNHeads <= 0 {
		return nil, fmt.Errorf("stages[%s]: kind %s needs an indexer: set model.index_n_heads > 0", st.Name, st.Kind)
	}
	tr := st.Train
	tok, err := data.NewTokenizer(cfg.VocabSize)
	if err != nil {
		return nil, err
	}
	src, err := newBatcher(st, r.Config.Seed, tok, data.SplitTrain, tr.BatchSize, tr.SeqLen)
	if err != nil {
		return nil, fmt.Errorf("stage %s: training data: %w", st.Name, err)
	}
	s := &dsaStage{run: r, stage: st, sparse: st.Kind == configs.KindDSASparse, params: params, tok: tok, src: src}
	s.recallK = st.DSA.RecallTopK
	if s.recallK <= 0 {
		s.recallK = cfg.IndexTopk
	}
	trainable := isIndexerSpec
	if s.sparse {
		trainable = func(sp model.Spec) bool { return sp.Role != model.Buffer }
	}
	opt := model.GraphOptions{B: tr.BatchSize, T: tr.SeqLen, Trainable: trainable, DSA: &model.DSAOptions{Sparse: s.sparse, TopK: cfg.IndexTopk}}
	if !s.sparse {
		opt.DSA.TopK, opt.DSA.Recall = s.recallK, true
	}
	if s.graph, err = model.NewGraph[float32](cfg, params.Data, opt); err != nil {
		src.Close()
		return nil, fmt.Errorf("stage %s: %w", st.Name, err)
	}
	if !s.sparse {
		s.dense = s.graph
	}
	for i, sp := range params.Specs {
		if s.graph.Grads[i] == nil {
			continue
		}
		g := paramGroup(params, i)
		if s.sparse && isIndexerSpec(sp) {
			s.igroups, s.igradOf = append(s.igroups, g), append(s.igradOf, i)
		} else {
			s.groups, s.gradOf = append(s.groups, g), append(s.gradOf, i)
		}
	}
	o := st.Optimizer
	s.opt = NewAdamW(s.groups, o.Beta1, o.Beta2, o.Eps, o.WeightDecay)
	if s.sparse {
		s.iopt = NewAdamW(s.igroups, o.Beta1, o.Beta2, o.Eps, o.WeightDecay)
	}
	s.batches = make([]data.Batch, tr.GradAccum)
	s.in = model.StepInput{Lengths: make([]int32, tr.BatchSize), Weights: make([]float32, tr.BatchSize*tr.SeqLen)}
	s.load = newMoELoad(cfg)
	return s, nil
}

func (s *dsaStage) plan() plan {
	tr := s.stage.Train
	return plan{steps: tr.Steps, logEvery: tr.LogEvery, evalEvery: tr.EvalEvery, evalFirst: true,
		headline: []string{"loss", "dsa/indexer_kl", "lr", "tokens_per_s"}, progress: "loss", rate: "tokens_per_s"}
}

func (s *dsaStage) begin(context.Context, int) error { return nil }
func (s *dsaStage) saved(context.Context) error      { return nil }

func (s *dsaStage) end(bool) {
	s.src.Close()
	s.graph.Close()
	if s.dense != nil && s.dense != s.graph {
		s.dense.Close()
	}
}

func (s *dsaStage) restore(ck *checkpoints.Checkpoint) error {
	var main, idx []NamedTensor
	for _, t := range ck.Optimizer {
		if strings.HasPrefix(t.Name, indexerOptPrefix) {
			idx = append(idx, namedTensor(t, indexerOptPrefix))
		} else {
			main = append(main, namedTensor(t, ""))
		}
	}
	if err := s.opt.LoadState(main); err != nil {
		return fmt.Errorf("resume: optimizer state: %w", err)
	}
	if s.iopt != nil {
		if err := s.iopt.LoadState(idx); err != nil {
			return fmt.Errorf("resume: indexer optimizer state: %w", err)
		}
	}
	if err := restoreCursor(s.src, ck.State.DataCursor); err != nil {
		return err
	}
	s.tokensSeen = ck.State.TokensSeen
	return nil
}

func (s *dsaStage) checkpoint(int) (*checkpoints.Checkpoint, error) {
	cur, err := cursorOf(s.src)
	if err != nil {
		return nil, err
	}
	opt := optimizerTensors("", s.opt)
	if s.iopt != nil {
		opt = append(opt, optimizerTensors(indexerOptPrefix, s.iopt)...)
	}
	return &checkpoints.Checkpoint{Model: s.params.Config, Tensors: checkpoints.FromParams(s.params), Optimizer: opt,
		State: checkpoints.TrainerState{TokensSeen: s.tokensSeen, DataCursor: cur}}, nil
}

// step runs one optimizer step (of both optimizers in dsa_sparse).
func (s *dsaStage) step(_ context.Context, step int) (stepResult, error) {
	tr := s.stage.Train
	total, err := nextBatches(s.src, s.batches)
	if err != nil {
		return stepResult{}, err
	}
	for _, g := range append(s.groups, s.igroups...) {
		clear(g.Grad)
	}
	s.load.reset()
	L := s.params.Config.NumHiddenLayers
	perLayer := make([]float64, L)
	var lm float64
	w := s.stage.DSA.LossWeight
	s.graph.DSA.LossScale = w / float64(tr.GradAccum)
	for i := range s.batches {
		fillStep(&s.in, &s.batches[i], 1/float64(total))
		for _, r := range s.graph.Routing {
			if r != nil {
				r.AuxScale = 1 / float64(tr.GradAccum)
			}
		}
		l, err := s.graph.Run(s.in)
		if err != nil {
			return stepResult{}, err
		}
		kl, per := s.graph.DSA.IndexLoss()
		lm += l - s.graph.DSA.LossScale*kl
		for j, v := range per {
			perLayer[j] += v / float64(tr.GradAccum)
		}
		accumulate(s.graph, s.groups, s.gradOf)
		accumulate(s.graph, s.igroups, s.igradOf)
		if s.sparse { // the backbone trains: its routing load moves the balance biases
			s.load.add(s.graph)
		}
	}
	m := map[string]float64{"loss": lm}
	var klMean float64
	for l, v := range perLayer {
		m[fmt.Sprintf("dsa/indexer_kl/layer%d", l)] = v
		klMean += v / float64(L)
	}
	m["dsa/indexer_kl"] = klMean
	norm := GlobalNorm(s.groups)
	m["grad_norm"] = norm
	var inorm float64
	if s.sparse {
		inorm = GlobalNorm(s.igroups)
		m["dsa/indexer_grad_norm"] = inorm
	}
	if bad(lm) || bad(klMean) || bad(norm) || bad(inorm) {
		return stepResult{metrics: m, skipped: 1}, nil
	}
	o, sc := s.stage.Optimizer, s.stage.Schedule
	if o.GradClip > 0 {
		ClipGrads(s.groups, o.GradClip)
		if s.sparse {
			ClipGrads(s.igroups, o.GradClip)
		}
	}
	lr := LR(sc.Kind, o.LR, step, sc.WarmupSteps, tr.Steps, sc.MinLRRatio)
	s.opt.Update(lr)
	m["lr"] = lr
	if s.sparse {
		ilr := LR(sc.Kind, s.stage.DSA.IndexerLR, step, sc.WarmupSteps, tr.Steps, sc.MinLRRatio)
		s.iopt.Update(ilr)
		m["dsa/indexer_lr"] = ilr
		s.load.updateBiases(s.params)
	}
	s.tokensSeen += int64(total)
	return stepResult{metrics: m, tokens: int64(total)}, nil
}

func bad(v float64) bool { return math.IsNaN(v) || math.IsInf(v, 0) }

// DSAEval holds the held-out DSA metrics of a model.
type DSAEval struct {
	Loss      float64   // held-out LM loss per trained token (sparse attention when the graph is sparse)
	KL        float64   // mean indexer KL per query (dense attention), mean over layers
	Recall    float64   // mean over layers of dsa/topk_recall
	RecallRel float64   // mean over layers of dsa/topk_recall_rel
	Best      float64   // mean over layers of the true top-k mass
	PerLayer  []float64 // recall per layer
	PerRel    []float64 // recall_rel per layer
}

// Metrics returns the metric map of e.
func (e DSAEval) Metrics() map[string]float64 {
	m := map[string]float64{"eval/loss": e.Loss, "dsa/topk_recall": e.Recall, "dsa/topk_recall_rel": e.RecallRel,
		"dsa/best_topk_mass": e.Best, "eval/dsa/indexer_kl": e.KL}
	for l := range e.PerLayer {
		m[fmt.Sprintf("dsa/topk_recall/layer%d", l)] = e.PerLayer[l]
		m[fmt.Sprintf("dsa/topk_recall_rel/layer%d", l)] = e.PerRel[l]
	}
	return m
}

// evaluateDSA computes the held-out LM loss with g and the recall metrics with the dense graph dense (built
// with DSAOptions{Recall: true}), on n held-out batches of d.
func evaluateDSA(g, dense *model.Graph[float32], d configs.Data, seed int64, tok *data.Tokenizer, n int) (DSAEval, error) {
	var e DSAEval
	saved := g.DSA.LossScale
	g.DSA.LossScale = 0
	st := configs.Stage{Kind: configs.KindPretrain, Data: d}
	loss, err := heldOutLoss(g, st, seed, tok, n)
	g.DSA.LossScale = saved
	if err != nil {
		return e, err
	}
	e.Loss = loss
	p, err := newBatcher(st, seed, tok, data.SplitHeldOut, dense.B, dense.T)
	if err != nil {
		return e, fmt.Errorf("held-out data: %w", err)
	}
	defer p.Close()
	L := len(dense.DSA.Layers)
	e.PerLayer, e.PerRel = make([]float64, L), make([]float64, L)
	mass, best, kl := make([]float64, L), make([]float64, L), make([]float64, L)
	rows := make([]int, L)
	var b data.Batch
	in := model.StepInput{Lengths: make([]int32, dense.B), Weights: make([]float32, dense.B*dense.T)}
	savedD := dense.DSA.LossScale
	defer func() { dense.DSA.LossScale = savedD }()
	dense.DSA.LossScale = 1
	for i := 0; i < n; i++ {
		if err := p.Next(&b); err != nil {
			return e, err
		}
		fillStep(&in, &b, 1)
		if _, err := dense.Run(in); err != nil {
			return e, err
		}
		for l, ly := range dense.DSA.Layers {
			r := ly.Recall
			mass[l] += r.Mass * float64(r.Rows)
			best[l] += r.Best * float64(r.Rows)
			rows[l] += r.Rows
			kl[l] += ly.KL / float64(n)
		}
	}
	for l := 0; l < L; l++ {
		if rows[l] > 0 {
			e.PerLayer[l] = mass[l] / float64(rows[l])
			if best[l] > 0 {
				e.PerRel[l] = mass[l] / best[l]
			}
			e.Best += best[l] / float64(rows[l]) / float64(L)
		}
		e.Recall += e.PerLayer[l] / float64(L)
		e.RecallRel += e.PerRel[l] / float64(L)
		e.KL += kl[l] / float64(L)
	}
	return e, nil
}

// evaluate computes the held-out DSA metrics (DSAEval) and, after the last step, the greedy accuracy on
// dsa.eval_env.
func (s *dsaStage) evaluate(_ context.Context, step int) (map[string]float64, error) {
	tr := s.stage.Train
	if s.dense == nil {
		var err error
		cfg := s.params.Config
		s.dense, err = model.NewGraph[float32](cfg, s.params.Data, model.GraphOptions{B: tr.BatchSize, T: tr.SeqLen,
			Trainable: isIndexerSpec, DSA: &model.DSAOptions{TopK: s.recallK, Recall: true}})
		if err != nil {
			return nil, fmt.Errorf("dense evaluation graph: %w", err)
		}
	}
	e, err := evaluateDSA(s.graph, s.dense, s.stage.Data, s.run.Config.Seed, s.tok, tr.EvalBatches)
	if err != nil {
		return nil, err
	}
	m := e.Metrics()
	if step == tr.Steps && s.stage.DSA.EvalEnv != "" {
		acc, err := EnvAccuracy(s.params, s.stage.DSA.EvalEnv, s.stage, s.stage.DSA.EvalTasks, s.sparse, s.run.Config.Seed)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.stage.DSA.EvalEnv, err)
		}
		m["eval/"+s.stage.DSA.EvalEnv+"/accuracy"] = acc
	}
	return m, nil
}

// EnvAccuracy decodes n held-out tasks of the family env greedily and returns the share the family's verifier
// accepts. Prompts are rendered the way the stage's data renders documents: for data.format chat the chat
// encoding with special ids (as RL prompts), otherwise as the synthetic text corpus does ("<｜User｜>prompt
// <｜Assistant｜><think>" as text after BOS), so a model pre-trained on the family is evaluated on its own format.
// sparse decodes with DSA (the model's index_topk), else with dense attention. The tasks are the held-out
// tasks the rl stage's evaluation and `trainer eval --env` draw for the same seed, and a completion may be as
// long as the stage's rl.max_new_tokens (or four times the longest answer plus 64, if that is longer), so a
// DSA stage's accuracy and an rl stage's are measured on the same problems with the same budget.
func EnvAccuracy(p *model.Params, env string, st configs.Stage, n int, sparse bool, seed int64) (float64, error) {
	d := st.Data
	opts := envs.Options{HeldOut: d.HeldOut}
	if d.Generator == env { // the stage's own task distribution, without the document-only follow-ups
		opts.Params = dataFamilyParams(d)
		delete(opts.Params, "followups")
		delete(opts.Params, "recall")
	}
	fam, err := envs.New(env, opts)
	if err != nil {
		return 0, err
	}
	if n <= 0 {
		return 0, fmt.Errorf("eval tasks %d must be > 0", n)
	}
	tok, err := data.NewTokenizer(p.Config.VocabSize)
	if err != nil {
		return 0, err
	}
	tasks, _ := envs.EvalTasks(fam, labeledRNG(seed, "eval/"+env, 2), data.SplitHeldOut, n)
	budget := st.RL.MaxNewTokens
	for _, t := range tasks {
		budget = max(budget, 4*len(t.Answer)+64)
	}
	decodeBatch := st.RL.DecodeBatch
	if decodeBatch <= 0 {
		decodeBatch = configs.DefaultRL().DecodeBatch
	}
	o, err := greedyEval(model.NewEngine(p), tok, fam, tasks, evalDecoding{maxNewTokens: budget, text: d.Format != "chat",
		sparse: sparse, workers: kernels.Threads(), decodeBatch: decodeBatch})
	if err != nil {
		return 0, err
	}
	return o.accuracy(), nil
}

// textCompletion decodes task t greedily from the prompt as the synthetic text corpus renders it
// ("<｜User｜>prompt<｜Assistant｜><think>" as text after BOS), for a model pre-trained on the text format; it
// stops at EOS or the EOS literal's bytes (with which a text-format model ends an answer that a follow-up
// question continues) and returns the completion text.
func textCompletion(e *model.Engine, tok *data.Tokenizer, t envs.Task, sparse bool) (string, error) {
	stop := tok.AppendText(nil, data.SpecialTokens[data.EOS-256])
	prefix, _, _ := strings.Cut(envs.Document(t.Prompt, "", ""), "</think>")
	ids := tok.AppendText([]int32{data.BOS}, prefix)
	maxNew := 4*len(t.Answer) + 64
	if maxPos := e.Cfg.MaxPositionEmbeddings; len(ids)+maxNew > maxPos {
		return "", fmt.Errorf("task %s: prompt of %d tokens + %d new exceeds max_position_embeddings %d", t.ID, len(ids), maxNew, maxPos)
	}
	out, err := greedy(e, ids, maxNew, sparse, stop)
	if err != nil {
		return "", fmt.Errorf("task %s: %w", t.ID, err)
	}
	return tok.Decode(out), nil
}

// greedy decodes from the prompt ids until EOS, the stop sequence (when not empty) or maxNew tokens; it returns
// the generated ids without EOS or the stop sequence.
func greedy(e *model.Engine, ids []int32, maxNew int, sparse bool, stop []int32) ([]int32, error) {
	total := len(ids) + maxNew
	var step func(int32) error
	var logits func() []float32
	if sparse {
		s, err := e.NewDSASession(total, 0)
		if err != nil {
			return nil, err
		}
		step = func(t int32) error { return s.Step(t, nil, nil) }
		logits = func() []float32 { return s.Logits }
	} else {
		s, err := e.NewSession(total)
		if err != nil {
			return nil, err
		}
		step = func(t int32) error { return s.Step(t, nil) }
		logits = func() []float32 { return s.Logits }
	}
	for _, t := range ids {
		if err := step(t); err != nil {
			return nil, err
		}
	}
	var out []int32
	for len(out) < maxNew {
		lg := logits()
		best := 0
		for j, v := range lg {
			if v > lg[best] {
				best = j
			}
		}
		if int32(best) == data.EOS {
			break
		}
		out = append(out, int32(best))
		if len(stop) > 0 && len(out) >= len(stop) && slices.Equal(out[len(out)-len(stop):], stop) {
			return out[:len(out)-len(stop)], nil
		}
		if err := step(int32(best)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

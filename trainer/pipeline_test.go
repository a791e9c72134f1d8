package trainer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/sparrow-rl/sparrow/checkpoints"
	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/model"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func tinyConfig(t *testing.T, sets ...string) *configs.Config {
	t.Helper()
	cfg, err := configs.Load("tiny", append([]string{"run.progress=off", "run.plots=false"}, sets...))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func loadWeights(t *testing.T, dir string) *model.Params {
	t.Helper()
	p, _, err := checkpoints.LoadParams(dir)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPretrainRunsAndLearns: the tiny recipe runs end to end, leaves metrics and a latest checkpoint, and the
// loss falls.
func TestPretrainRunsAndLearns(t *testing.T) {
	dir := t.TempDir()
	cfg := tinyConfig(t, "train.steps=30", "train.eval_every=10", "run.plots=true")
	if err := Execute(context.Background(), cfg, Options{Dir: dir, Log: quietLog()}); err != nil {
		t.Fatal(err)
	}
	recs, err := ReadMetrics(filepath.Join(dir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var first, last, evalLast float64 = math.NaN(), math.NaN(), math.NaN()
	for _, r := range recs {
		if v, ok := r.Values["loss"]; ok {
			if math.IsNaN(first) {
				first = v
			}
			last = v
		}
		if v, ok := r.Values["eval/loss"]; ok {
			evalLast = v
		}
		if _, ok := r.Values["moe/load_cv"]; !ok {
			if _, isTrain := r.Values["loss"]; isTrain {
				t.Errorf("step %d: no moe/load_cv", r.Step)
			}
		}
	}
	if !(last < first-0.5) || math.IsNaN(evalLast) {
		t.Fatalf("loss %v → %v, eval %v: want a falling loss and an eval loss", first, last, evalLast)
	}
	latest, err := checkpoints.Latest(filepath.Join(dir, "checkpoints"))
	if err != nil || filepath.Base(latest) != "pretrain-30" {
		t.Fatalf("latest = %q, %v", latest, err)
	}
	for _, f := range []string{"config.yaml", "plots/pretrain_loss.png"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
	if tb, _ := filepath.Glob(filepath.Join(dir, "events.out.tfevents.*")); len(tb) == 0 {
		t.Error("no TensorBoard event file")
	}
}

// TestExactResume: N steps, save, resume, N more steps gives the same weights, bit for bit, as 2N straight —
// with gradient accumulation, MoE bias updates and the data cursor all in play.
func TestExactResume(t *testing.T) {
	straight := t.TempDir()
	cfg := tinyConfig(t, "train.steps=16", "train.grad_accum=2", "checkpoint.every=8", "checkpoint.keep_last=0")
	if err := Execute(context.Background(), cfg, Options{Dir: straight, Log: quietLog()}); err != nil {
		t.Fatal(err)
	}
	// first half: a run stopped after step 8 — emulate by a run whose budget ends there, then resume the
	// checkpoint with the full budget.
	resumed := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cfgStop := tinyConfig(t, "train.steps=16", "train.grad_accum=2", "checkpoint.every=8", "checkpoint.keep_last=0")
	r := &Run{Config: cfgStop, Dir: resumed, Log: quietLog()}
	_ = r
	stopAfter := &stopper{at: 8, cancel: cancel}
	testHookAfterStep = stopAfter.hook
	err := Execute(ctx, cfgStop, Options{Dir: resumed, Log: quietLog()})
	testHookAfterStep = nil
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("interrupted run: %v", err)
	}
	if latest, _ := checkpoints.Latest(filepath.Join(resumed, "checkpoints")); filepath.Base(latest) != "pretrain-8" {
		t.Fatalf("after interrupt latest = %s", latest)
	}
	if err := Execute(context.Background(), cfgStop, Options{Dir: resumed, Resume: "auto", Log: quietLog()}); err != nil {
		t.Fatal(err)
	}
	a := loadWeights(t, filepath.Join(straight, "checkpoints", "pretrain-16"))
	b := loadWeights(t, filepath.Join(resumed, "checkpoints", "pretrain-16"))
	for i := range a.Data {
		for j := range a.Data[i] {
			if math.Float32bits(a.Data[i][j]) != math.Float32bits(b.Data[i][j]) {
				t.Fatalf("%s[%d]: straight %v, resumed %v", a.Specs[i].Name, j, a.Data[i][j], b.Data[i][j])
			}
		}
	}
	// a fresh run into a directory with checkpoints is refused
	if err := Execute(context.Background(), cfgStop, Options{Dir: resumed, Log: quietLog()}); err == nil {
		t.Fatal("a second fresh run into the same directory was accepted")
	}
}

type stopper struct {
	at     int
	cancel func()
}

func (s *stopper) hook(step int) {
	if step == s.at {
		s.cancel()
	}
}

// TestNonFiniteStepSkipped: a step whose loss is not finite is skipped and counted, never applied.
func TestNonFiniteStepSkipped(t *testing.T) {
	cfg := tinyConfig(t)
	p := model.NewParams(cfg.Model)
	p.Init(1)
	r := &Run{Config: cfg, Dir: t.TempDir(), Log: quietLog()}
	s, err := newLMStage(r, cfg.Stages[0], p)
	if err != nil {
		t.Fatal(err)
	}
	defer s.end(false)
	p.MustGet("lm_head.weight")[0] = float32(math.Inf(1))
	before := p.Clone()
	res, err := s.step(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if res.skipped != 1 || res.tokens != 0 {
		t.Fatalf("skipped=%d tokens=%d loss=%v, want the step skipped", res.skipped, res.tokens, res.metrics["loss"])
	}
	for i := range p.Data {
		for j := range p.Data[i] {
			x, y := p.Data[i][j], before.Data[i][j]
			if x != y && !(math.IsInf(float64(x), 0) && math.IsInf(float64(y), 0)) {
				t.Fatalf("%s changed by a skipped step", p.Specs[i].Name)
			}
		}
	}
}

// TestAccumulationNormalisesByWholeBatch: two micro-batches of B rows give the same gradient as one batch of
// 2B rows (the loss is normalised by the token count of the whole accumulated batch).
func TestAccumulationNormalisesByWholeBatch(t *testing.T) {
	one := tinyConfig(t, "train.batch_size=4", "train.grad_accum=1")
	two := tinyConfig(t, "train.batch_size=2", "train.grad_accum=2")
	grads := func(cfg *configs.Config) []ParamGroup {
		p := model.NewParams(cfg.Model)
		p.Init(5)
		s, err := newLMStage(&Run{Config: cfg, Dir: t.TempDir(), Log: quietLog()}, cfg.Stages[0], p)
		if err != nil {
			t.Fatal(err)
		}
		defer s.end(false)
		s.stage.Optimizer.LR = 0
		if _, err := s.step(context.Background(), 0); err != nil {
			t.Fatal(err)
		}
		return s.groups
	}
	g1, g2 := grads(one), grads(two)
	for i := range g1 {
		for j := range g1[i].Grad {
			if d := math.Abs(float64(g1[i].Grad[j] - g2[i].Grad[j])); d > 1e-6+1e-4*math.Abs(float64(g1[i].Grad[j])) {
				t.Fatalf("%s[%d]: one batch %g, accumulated %g", g1[i].Name, j, g1[i].Grad[j], g2[i].Grad[j])
			}
		}
	}
}

// TestSFTOnTaskFamily: the sft stage fine-tunes on chat-format conversations of a task family (loss only on
// the assistant's tokens) and its loss falls; a pretrain stage on the same family in chat format runs too.
func TestSFTOnTaskFamily(t *testing.T) {
	for _, kind := range []string{"sft", "pretrain"} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			cfg := tinyConfig(t, "train.steps=25", "train.eval_every=0", "data.generator=math", "data.format=chat",
				`data.params={digits: "1"}`, "stages.pretrain.kind="+kind, "stages.pretrain.name=s_"+kind)
			if err := Execute(context.Background(), cfg, Options{Dir: dir, Log: quietLog()}); err != nil {
				t.Fatal(err)
			}
			recs, err := ReadMetrics(filepath.Join(dir, "metrics.jsonl"))
			if err != nil {
				t.Fatal(err)
			}
			var losses []float64
			for _, r := range recs {
				if v, ok := r.Values["loss"]; ok {
					losses = append(losses, v)
				}
			}
			if len(losses) < 2 || !(losses[len(losses)-1] < losses[0]) {
				t.Fatalf("losses %v: want a falling loss", losses)
			}
		})
	}
}

// TestSFTOnConversationFile: the sft stage on a JSONL file of conversations in the OpenAI/HF shape: the loss
// falls, and the trained positions are exactly the assistant's tokens.
func TestSFTOnConversationFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "conv.jsonl")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 400; i++ {
		a, b := i%17, (i*7)%23
		fmt.Fprintf(f, `{"messages": [{"role": "system", "content": "Add."}, {"role": "user", "content": "%d+%d"}, {"role": "assistant", "reasoning_content": "%d plus %d", "content": "%d"}]}`+"\n", a, b, a, b, a+b)
	}
	f.Close()
	cfg := tinyConfig(t, "train.steps=30", "train.eval_every=0", "data.source=jsonl", "data.path="+path,
		"data.text_column=messages", "data.held_out=0.1", "stages.pretrain.kind=sft", "stages.pretrain.name=sft")
	run := filepath.Join(dir, "run")
	if err := Execute(context.Background(), cfg, Options{Dir: run, Log: quietLog()}); err != nil {
		t.Fatal(err)
	}
	recs, err := ReadMetrics(filepath.Join(run, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var losses []float64
	for _, r := range recs {
		if v, ok := r.Values["loss"]; ok {
			losses = append(losses, v)
		}
	}
	if len(losses) < 2 || !(losses[len(losses)-1] < losses[0]*0.8) {
		t.Fatalf("losses %v: want a falling loss", losses)
	}
	// the mask: a batch from the same data trains exactly the assistant tokens
	tok, _ := data.NewTokenizer(cfg.Model.VocabSize)
	batch := firstBatch(t, cfg.Stages[0], cfg.Seed, tok, 1, 64)
	inAssistant := false
	for i, id := range batch.Inputs {
		// the target at i is trained iff it lies inside an assistant turn: after <｜Assistant｜><think> … up to
		// and including EOS
		switch id {
		case data.ThinkBeg:
			inAssistant = true
		case data.EOS, data.BOS:
			inAssistant = false
		}
		tgt := batch.Targets[i]
		want := inAssistant && tgt != data.User
		if tgt == data.BOS {
			want = false
		}
		if got := batch.LossMask[i] == 1; got != want {
			t.Fatalf("position %d (input %d, target %d): trained=%v, want %v", i, id, tgt, got, want)
		}
	}
}

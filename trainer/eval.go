// eval.go: evaluation. Of a checkpoint: the held-out next-token loss (and perplexity) on a data section's
// held-out split (Evaluate), and task accuracy, greedy and pass@k (EvaluateTasks). greedyEval is the one
// greedy evaluator of a task family that every stage and command uses.

package trainer

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sparrow-rl/sparrow/envs"
	"github.com/sparrow-rl/sparrow/internal/kernels"
	"github.com/sparrow-rl/sparrow/rollout"

	"github.com/sparrow-rl/sparrow/checkpoints"
	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/model"
)

// EvalResult is what `trainer eval` prints.
type EvalResult struct {
	Checkpoint string             `json:"checkpoint"`
	Step       int                `json:"step,omitempty"`
	Stage      string             `json:"stage,omitempty"`
	Metrics    map[string]float64 `json:"metrics"`
	Warnings   []string           `json:"warnings,omitempty"`
}

// Evaluate loads the checkpoint in dir and computes eval/loss and eval/perplexity on `batches` held-out
// batches of the data section and batch shape of stage st.
func Evaluate(dir string, cfg *configs.Config, st configs.Stage, batches int) (*EvalResult, error) {
	ck, err := checkpoints.Load(dir, checkpoints.LoadOptions{WeightsOnly: true})
	if err != nil {
		return nil, err
	}
	p, err := ck.ToParams()
	if err != nil {
		return nil, err
	}
	tok, err := data.NewTokenizer(p.Config.VocabSize)
	if err != nil {
		return nil, err
	}
	if st.Train.SeqLen > p.Config.MaxPositionEmbeddings {
		return nil, fmt.Errorf("eval: seq_len %d exceeds the checkpoint's max_position_embeddings %d", st.Train.SeqLen, p.Config.MaxPositionEmbeddings)
	}
	g, err := model.NewGraph[float32](p.Config, p.Data, model.GraphOptions{B: st.Train.BatchSize, T: st.Train.SeqLen, Shards: cfg.Run.GraphShards})
	if err != nil {
		return nil, err
	}
	defer g.Close()
	loss, err := heldOutLoss(g, st, cfg.Seed, tok, batches)
	if err != nil {
		return nil, fmt.Errorf("eval: %w", err)
	}
	return &EvalResult{Checkpoint: dir, Step: ck.State.Step, Stage: ck.State.Stage, Warnings: ck.Warnings,
		Metrics: map[string]float64{"eval/loss": loss, "eval/perplexity": math.Exp(loss)}}, nil
}

// TaskEval is what `trainer eval --env NAME` prints.
type TaskEval struct {
	Checkpoint string  `json:"checkpoint"`
	Env        string  `json:"env"`
	N          int     `json:"n"`
	Distinct   int     `json:"distinct"`    // different tasks among the n (fewer only when the split is smaller)
	Accuracy   float64 `json:"accuracy"`    // greedy decoding
	K          int     `json:"k"`           // samples per problem for pass@k
	PassAtK    float64 `json:"pass_at_k"`   // share of problems with at least one right answer among k samples
	MeanAtK    float64 `json:"mean_at_k"`   // share of right answers among all n·k samples
	Temp       float64 `json:"temperature"` // of the k samples
	TopP       float64 `json:"top_p"`
	Seconds    float64 `json:"seconds"`
	// Attention is the attention the checkpoint's policy decodes with: "dense", or "sparse" (DeepSeek Sparse
	// Attention at model.index_topk) for a dsa_sparse checkpoint or an rl checkpoint of a sparse policy.
	Attention string `json:"attention"`

	// Tool holds a tool environment's episode statistics (evalOutcome.toolStats): tool_calls, turns,
	// malformed_rate, no_call_rate, answer_in_result_rate.
	Tool map[string]float64 `json:"tool,omitempty"`

	// Samples holds the greedy completion of every task, in task order (written by `trainer eval --samples`).
	Samples []TaskSample `json:"-"`
}

// TaskSample is one greedy completion of a held-out task and its grade.
type TaskSample struct {
	ID           string  `json:"id"`
	Prompt       string  `json:"prompt"`
	Answer       string  `json:"answer"`
	Completion   string  `json:"completion"`
	FinishReason string  `json:"finish_reason"`
	Correct      bool    `json:"correct"`
	Reward       float64 `json:"reward"`
	// Turns holds a tool environment's episode: each policy segment with its calls and their results
	// (Completion is then the last segment, the one graded).
	Turns []rollout.Turn `json:"turns,omitempty"`
	// ToolCalls and Malformed count the episode's executed and refused calls.
	ToolCalls int `json:"tool_calls,omitempty"`
	Malformed int `json:"malformed_calls,omitempty"`
	// Misuse is how the episode misused the tools (envs.ClassifyMisuse: no_call, miscopied_argument,
	// ignored_result), "" for none.
	Misuse string `json:"misuse,omitempty"`
}

// evalDecoding says how greedyEval decodes.
type evalDecoding struct {
	maxNewTokens int  // of a chat-format completion
	text         bool // prompt as the family's text corpus renders it (textCompletion), for a model pre-trained on it
	sparse       bool // DeepSeek Sparse Attention with sparseTopK keys (0 = model.index_topk)
	sparseTopK   int
	workers      int // tasks decoded in parallel (each worker its own sessions over the shared engine)
	decodeBatch  int // completions each worker decodes together (rl.decode_batch)
	// passK > 0 also samples passK completions per task with sampling, seeded by sampleSeed(i), for pass@k.
	passK      int
	sampling   rollout.SamplingParams
	sampleSeed func(i int) *rand.Rand
	// stop, when closed, ends the evaluation between tasks with an error wrapping context.Canceled (a run
	// that is stopping does not wait for it).
	stop <-chan struct{}
}

// evalOutcome is what greedyEval measured.
type evalOutcome struct {
	samples  []TaskSample // the greedy completion of every task, in task order
	anyRight int          // tasks with at least one right answer among their passK samples
	right    int          // right answers among all samples
}

func (o evalOutcome) accuracy() float64 {
	right := 0
	for _, s := range o.samples {
		if s.Correct {
			right++
		}
	}
	return float64(right) / float64(len(o.samples))
}

// episodeMisuse classifies an evaluated episode's use of the tools (envs.ClassifyMisuse).
func episodeMisuse(te envs.ToolEnv, t envs.Task, ep *rollout.Episode) string {
	var calls []envs.ToolCallRecord
	for _, tu := range ep.Turns {
		for _, c := range tu.Calls {
			if c.Name != "" {
				calls = append(calls, envs.ToolCallRecord{Name: c.Name, Arguments: c.Arguments, Result: c.Result, Failed: c.Error != ""})
			}
		}
	}
	return envs.ClassifyMisuse(te, t, calls, envs.ParseCompletion(ep.Final).Answer)
}

// toolStats are a tool environment's episode statistics over the greedy samples (nil for other families):
// tool_calls and turns per episode, malformed_rate (refused calls per call attempted), and the misuse
// patterns no_call_rate (episodes answered without a call) and answer_in_result_rate (episodes whose
// answer is the text of one of their successful tool results, the opposite of ignoring the result), and
// misuse_<kind>_rate for each of envs.MisuseKinds (episodeMisuse).
func (o evalOutcome) toolStats() map[string]float64 {
	if len(o.samples) == 0 || o.samples[0].Turns == nil {
		return nil
	}
	var calls, malformed, turns, noCall, inResult float64
	misuse := map[string]float64{}
	for _, s := range o.samples {
		calls += float64(s.ToolCalls)
		malformed += float64(s.Malformed)
		turns += float64(len(s.Turns))
		if s.ToolCalls == 0 {
			noCall++
		}
		answer := strings.TrimSpace(envs.ParseCompletion(s.Completion).Answer)
		found := false
		for _, tu := range s.Turns {
			for _, c := range tu.Calls {
				if c.Error == "" && answer != "" && strings.Contains(c.Result, answer) {
					found = true
				}
			}
		}
		if found {
			inResult++
		}
		if s.Misuse != "" {
			misuse[s.Misuse]++
		}
	}
	n := float64(len(o.samples))
	m := map[string]float64{"tool_calls": calls / n, "turns": turns / n, "no_call_rate": noCall / n, "answer_in_result_rate": inResult / n, "malformed_rate": 0}
	if calls+malformed > 0 {
		m["malformed_rate"] = malformed / (calls + malformed)
	}
	for _, k := range envs.MisuseKinds {
		m["misuse_"+k+"_rate"] = misuse[k] / n
	}
	return m
}

// greedyEval decodes every task greedily with eng and grades it with the family's verifier (and samples
// pass@k completions when d.passK > 0). Each of d.workers workers decodes its share of the tasks together,
// d.decodeBatch completions per batched engine step (rollout.GroupSampler.Run); greedy decoding, and pass@k
// samples drawn from per-completion generators seeded by the task, make the result independent of d.workers
// and d.decodeBatch.
func greedyEval(eng *model.Engine, tok *data.Tokenizer, fam envs.Family, tasks []envs.Task, d evalDecoding) (evalOutcome, error) {
	out := evalOutcome{samples: make([]TaskSample, len(tasks))}
	workers := max(1, min(d.workers, len(tasks)))
	var anyRight, right atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, workers)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if d.stop != nil {
		go func() {
			select {
			case <-d.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	sc := rollout.SamplerConfig{Params: d.sampling, GroupSize: d.passK, MaxNewTokens: d.maxNewTokens, Sparse: d.sparse, SparseTopK: d.sparseTopK,
		DecodeBatch: d.decodeBatch}
	for w := range workers {
		gs := rollout.NewGroupSampler(eng, tok, fam, fmt.Sprintf("eval%d", w), sc)
		var mine []int // this worker's tasks
		for i := w; i < len(tasks); i += workers {
			mine = append(mine, i)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			switch {
			case d.text:
				err = textEval(ctx, eng, tok, fam, tasks, mine, d.sparse, out.samples)
			case gs.ToolEnv() != nil:
				err = episodeEval(ctx, gs, tasks, mine, d, out.samples, &anyRight, &right)
			default:
				err = chatEval(ctx, gs, tasks, mine, d, out.samples, &anyRight, &right)
			}
			if ctx.Err() != nil && d.stop != nil {
				err = fmt.Errorf("evaluation stopped: %w", context.Canceled)
			}
			errs[w] = err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return out, err
	}
	out.anyRight, out.right = int(anyRight.Load()), int(right.Load())
	return out, nil
}

// textEval decodes the tasks mine one by one from the family's text-corpus prompt (textCompletion) into
// samples.
func textEval(ctx context.Context, eng *model.Engine, tok *data.Tokenizer, fam envs.Family, tasks []envs.Task, mine []int, sparse bool, samples []TaskSample) error {
	for _, i := range mine {
		if err := ctx.Err(); err != nil {
			return err
		}
		t := tasks[i]
		completion, err := textCompletion(eng, tok, t, sparse)
		if err != nil {
			return fmt.Errorf("task %s: %w", t.ID, err)
		}
		samples[i] = gradedSample(fam, t, completion, "stop")
	}
	return nil
}

// episodeEval runs the tasks mine of a tool environment one by one as multi-turn episodes (greedy, and with
// d.passK a group of sampled episodes counted into anyRight and right), recording each greedy episode's
// turns, tool calls, malformed calls and misuse pattern.
func episodeEval(ctx context.Context, gs *rollout.GroupSampler, tasks []envs.Task, mine []int, d evalDecoding, samples []TaskSample, anyRight, right *atomic.Int64) error {
	for _, i := range mine {
		if err := ctx.Err(); err != nil {
			return err
		}
		t := tasks[i]
		ep, err := gs.GreedyEpisode(ctx, t)
		if err != nil {
			return fmt.Errorf("task %s: %w", t.ID, err)
		}
		samples[i] = gradedSample(gs.Family, t, ep.Final, ep.Finish)
		samples[i].Turns, samples[i].ToolCalls, samples[i].Malformed = ep.Turns, ep.ToolCalls, ep.Malformed
		samples[i].Misuse = episodeMisuse(gs.ToolEnv(), t, ep)
		if d.passK == 0 {
			continue
		}
		g, err := gs.Sample(ctx, t, fmt.Sprintf("eval-%d", i), 0, d.sampleSeed(i))
		if err != nil {
			return fmt.Errorf("task %s: %w", t.ID, err)
		}
		countPassK(g, anyRight, right)
	}
	return nil
}

// chatEval decodes the tasks mine together with gs: a greedy completion of each into samples and, with
// d.passK, a group of passK sampled completions counted into anyRight and right.
func chatEval(ctx context.Context, gs *rollout.GroupSampler, tasks []envs.Task, mine []int, d evalDecoding, samples []TaskSample, anyRight, right *atomic.Int64) error {
	var reqs []rollout.GroupRequest
	for _, i := range mine {
		t := tasks[i]
		reqs = append(reqs, rollout.GroupRequest{Task: t, GroupID: fmt.Sprintf("eval-greedy-%d", i), Greedy: true})
		if d.passK > 0 {
			reqs = append(reqs, rollout.GroupRequest{Task: t, GroupID: fmt.Sprintf("eval-%d", i), RNG: d.sampleSeed(i)})
		}
	}
	groups, err := gs.Run(ctx, reqs)
	if err != nil {
		return err
	}
	per := 1 + min(d.passK, 1)
	for n, i := range mine {
		tr := groups[n*per].Trajectories[0]
		samples[i] = gradedSample(gs.Family, tasks[i], rollout.CompletionText(gs.Tok, tr.CompletionTokens), tr.FinishReason)
		if d.passK == 0 {
			continue
		}
		countPassK(groups[n*per+1], anyRight, right)
	}
	return nil
}

// countPassK counts the right answers of a task's pass@k group into right, and the task into anyRight when
// at least one is right.
func countPassK(g *data.Group, anyRight, right *atomic.Int64) {
	ok := false
	for _, tr := range g.Trajectories {
		if tr.RewardParts["correct"] == 1 {
			right.Add(1)
			ok = true
		}
	}
	if ok {
		anyRight.Add(1)
	}
}

// gradedSample is task t's completion graded by the family's verifier.
func gradedSample(fam envs.Family, t envs.Task, completion, finish string) TaskSample {
	rw := fam.Verify(t, completion, finish)
	return TaskSample{ID: t.ID, Prompt: t.Prompt, Answer: t.Answer, Completion: completion,
		FinishReason: finish, Correct: rw.Correct, Reward: rw.Total}
}

// EvaluateTasks measures a checkpoint on n held-out tasks of the family env (options from the stage's rl
// section: env_params, reward, max_new_tokens, temperature, top_p): greedy accuracy, and pass@k over k samples.
// The tasks are the same for every checkpoint of a seed, so numbers compare across a run. A sparse-attention
// policy (CheckpointAttention) decodes with DeepSeek Sparse Attention, as it was trained and as it serves.
func EvaluateTasks(dir string, cfg *configs.Config, st configs.Stage, env string, n, k int) (*TaskEval, error) {
	start := time.Now()
	p, _, err := checkpoints.LoadParams(dir)
	if err != nil {
		return nil, err
	}
	attention, _, err := CheckpointAttention(dir)
	if err != nil {
		return nil, fmt.Errorf("eval: the attention of checkpoint %s: %w", dir, err)
	}
	sparse := attention == configs.AttentionSparse
	if env == "" {
		env = st.RL.Env
	}
	st.RL.Env = env
	fam, err := envs.New(env, familyOptions(st))
	if err != nil {
		return nil, fmt.Errorf("eval --env %s: %w", env, err)
	}
	tok, err := data.NewTokenizer(p.Config.VocabSize)
	if err != nil {
		return nil, err
	}
	// A model pre-trained on the family's text corpus is prompted in that format, as EnvAccuracy does; pass@k
	// samples through the rollout engine, which renders the chat format only.
	text := st.Data.Source == "synthetic" && dataFormat(st.Kind, st.Data) == "text" && st.Data.Generator == env
	if text && k > 0 {
		return nil, fmt.Errorf("eval --env %s: the checkpoint's stage was trained on the text format (data.format %q), whose prompts pass@k does not sample: use --k 0", env, st.Data.Format)
	}
	tasks, distinct := envs.EvalTasks(fam, labeledRNG(cfg.Seed, "eval/"+env, 2), data.SplitHeldOut, n)
	rc := st.RL
	o, err := greedyEval(model.NewEngine(p), tok, fam, tasks, evalDecoding{maxNewTokens: rc.MaxNewTokens, text: text, sparse: sparse,
		workers: kernels.Threads(), decodeBatch: rc.DecodeBatch, passK: k, sampling: rollout.SamplingParams{Temperature: rc.Temperature, TopP: rc.TopP, TopK: rc.TopK},
		sampleSeed: func(i int) *rand.Rand { return labeledRNG(cfg.Seed, fmt.Sprintf("evalk/%s/%d", env, i), 3) }})
	if err != nil {
		return nil, err
	}
	res := &TaskEval{Checkpoint: dir, Env: env, N: n, Distinct: distinct, K: k, Accuracy: o.accuracy(), Temp: rc.Temperature, TopP: rc.TopP, Attention: attention, Samples: o.samples, Tool: o.toolStats()}
	if k > 0 {
		res.PassAtK = float64(o.anyRight) / float64(n)
		res.MeanAtK = float64(o.right) / float64(n*k)
	}
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

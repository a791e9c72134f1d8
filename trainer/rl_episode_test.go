// Tests of rl stages on tool environments: the learner recomputes the sampler's log-probabilities on the
// policy's tokens of multi-turn episodes (Keep Routing and Keep Sampling Mask over every segment), inserted
// tool results stay out of the loss unless rl.tool_results_in_loss, and a short GRPO run on calc logs the
// agent metrics.
package trainer

import (
	"context"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/envs"
	"github.com/sparrow-rl/sparrow/model"
	"github.com/sparrow-rl/sparrow/rollout"
)

// agentConfigSets are rlTinyConfig's overrides for the calc tool environment.
var agentConfigSets = []string{"rl.env=calc", "rl.env_params={digits: \"3\", mul_digits: \"2\"}", "rl.max_prompt_tokens=200",
	"rl.max_new_tokens=300", "rl.temperature=1", "rl.top_p=1", "rl.beta=0", "model.max_position_embeddings=512"}

// forcedEpisodes samples one group of worked calc episodes (forced decoding of the right conversation) on
// the stage's engine.
func forcedEpisodes(t *testing.T, s *rlStage, resultsInLoss bool) []*data.Trajectory {
	t.Helper()
	te := s.family.(envs.ToolEnv)
	var trajs []*data.Trajectory
	for i := range 2 {
		task := s.family.Sample(rand.New(rand.NewPCG(uint64(i), 9)), data.SplitTrain)
		conv, err := te.Episode(context.Background(), task, -1)
		if err != nil {
			t.Fatal(err)
		}
		ids, mask, err := data.EncodeForTraining(s.tok, conv, envs.ToolEncodeOptions())
		if err != nil {
			t.Fatal(err)
		}
		prompt, err := rollout.RenderEpisodePrompt(s.tok, te, task)
		if err != nil {
			t.Fatal(err)
		}
		var script []int32
		for k := len(prompt); k < len(ids); k++ {
			if mask[k] == 1 && !(ids[k] == data.EOS && k+1 < len(ids)) { // the EOS after a call block is inserted
				script = append(script, ids[k])
			}
		}
		sc := rollout.RLSamplerConfig(s.rc, false, 0)
		sc.GroupSize = 1
		sc.Episode.ResultsInLoss = resultsInLoss
		sc.Episode.Drawer = &rollout.ForcedDrawer{Tokens: script, Temperature: s.rc.Temperature}
		gs := rollout.NewGroupSampler(s.engine, s.tok, s.family, "w", sc)
		g, err := gs.Sample(context.Background(), task, "g", s.version, rand.New(rand.NewPCG(1, 1)))
		if err != nil {
			t.Fatal(err)
		}
		tr := &g.Trajectories[0]
		if tr.RewardParts[rollout.PartToolCalls] != 1 || tr.RewardParts["correct"] != 1 {
			t.Fatalf("forced episode: parts %v", tr.RewardParts)
		}
		trajs = append(trajs, tr)
	}
	return trajs
}

// TestRLEpisodeLogpParity: at equal policy version the learner's log π_θ of every policy token of a
// multi-turn episode (two segments around the inserted results) equals the sampler's log π_old to float
// rounding, with the recorded experts replayed; inserted tokens are not loss tokens, and with
// rl.tool_results_in_loss they are, with the engine's log-probabilities matching the learner's too.
func TestRLEpisodeLogpParity(t *testing.T) {
	for _, inLoss := range []bool{false, true} {
		cfg := rlTinyConfig(t, agentConfigSets...)
		p := model.NewParams(cfg.Model)
		p.Init(5)
		s, err := newRLStage(&Run{Config: cfg, Dir: t.TempDir(), Log: quietLog()}, cfg.Stages[0], p)
		if err != nil {
			t.Fatal(err)
		}
		trajs := forcedEpisodes(t, s, inLoss)
		b := s.batch
		if err := b.lay(trajs, make([]float64, len(trajs)), s.layout); err != nil {
			t.Fatal(err)
		}
		rec := &logpRecorder{batch: b, dlogp: make([]float64, b.Rows*b.T)}
		b.replay(s.graph, s.rc.Temperature, s.layout.moeLayers)
		s.graph.Policy.Loss = rec.loss
		if _, err := s.graph.Run(b.Input); err != nil {
			t.Fatal(err)
		}
		var maxD float64
		policy, inserted := 0, 0
		for k, lp := range rec.logp {
			if b.Layout.LossMask[k] == 0 {
				inserted++
				continue
			}
			policy++
			maxD = math.Max(maxD, math.Abs(lp-b.LogpOld[k]))
		}
		if maxD > 2e-4 {
			t.Errorf("results in loss %v: max |logp − logp_old| = %g over %d policy tokens", inLoss, maxD, policy)
		}
		if inLoss && inserted != 0 || !inLoss && inserted < 40 {
			t.Errorf("results in loss %v: %d tokens out of the loss, %d in", inLoss, inserted, policy)
		}
		t.Logf("results in loss %v: %d loss tokens, %d inserted out of the loss, max |Δlogp| %.2g", inLoss, policy, inserted, maxD)
		s.end(false)
	}
}

// TestRLAgentRunLogs: a two-step GRPO run on calc (in process) trains on multi-turn episodes and logs the
// agent metrics and the evaluation's tool statistics.
func TestRLAgentRunLogs(t *testing.T) {
	dir := t.TempDir()
	cfg := rlTinyConfig(t, append(agentConfigSets, "train.steps=2", "rl.max_new_tokens=60", "rl.eval_tasks=2", "rl.bus.transport=inproc")...)
	if err := Execute(context.Background(), cfg, Options{Dir: dir, Log: quietLog()}); err != nil {
		t.Fatal(err)
	}
	recs, err := ReadMetrics(filepath.Join(dir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range recs {
		for k := range r.Values {
			seen[k] = true
		}
	}
	for _, k := range []string{"agent/tool_calls", "agent/turns", "agent/malformed_rate", "agent/no_call_rate", "eval/calc/accuracy",
		"eval/calc/tool_calls", "eval/calc/malformed_rate", "eval/calc/turns", "eval/calc/no_call_rate", "rollout/logp_mismatch"} {
		if !seen[k] {
			t.Errorf("metric %s was not logged", k)
		}
	}
}

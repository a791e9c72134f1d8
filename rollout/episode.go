// episode.go: multi-turn "thinking with tools" rollouts (DeepSeek-V3.2's agentic protocol, chat-format.md
// §3.3–3.4, §8). The prompt is the tool environment's system message (its tools rendered in the tools block)
// and the task's user turn, in thinking mode. The policy decodes; when its own tokens close a DSML
// function_calls block, decoding pauses, the segment it wrote since the last pause is parsed with the chat
// parser (data.ParseCompletionIDs), each call runs in the environment's sandbox (envs.CallTool), and the
// assistant's EOS and the results are inserted exactly as the V3.2 encoder renders tool messages
// ("<EOS>\n\n<function_results>\n<result>…</result>\n</function_results>\n\n<think>"); decoding then goes on
// from the cached engine state, only the inserted tokens stepped through the engine. The episode ends at EOS
// (the final answer is the last segment), at max_tool_calls, or when the token budget (max_new_tokens, the
// inserted tokens included) runs out.
//
// The trajectory is one completion over every segment: the policy's tokens carry LossMask 1, log π_old, the
// kept set, and like every position the experts (Keep Routing) and DSA selections (Keep Selection), so the
// learner replays the whole multi-turn sequence; inserted tokens carry LossMask 0, log π_old 0 and no kept
// set (EpisodeConfig.ResultsInLoss, an ablation, trains them too, with the engine's log-probability as
// π_old). A malformed block (bad DSML, unknown tool, bad arguments) gets an error result and is counted;
// nothing the policy writes makes the loop panic (FuzzEpisode).

package rollout

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/envs"
	"github.com/sparrow-rl/sparrow/model"
)

// EpisodeConfig says how multi-turn tool episodes run.
type EpisodeConfig struct {
	// MaxToolCalls is the most tool calls (invoke elements) an episode executes (0: DefaultMaxToolCalls); a
	// block beyond them ends the episode (finish_reason "length").
	MaxToolCalls int
	Limits       envs.ToolLimits
	// ResultsInLoss trains the inserted tokens too (LossMask 1, log π_old the engine's), an ablation.
	ResultsInLoss bool
	// Drawer, when set, draws the policy's tokens instead of the sampler (ForcedDrawer: forced decoding of a
	// scripted or recorded policy).
	Drawer TokenDrawer
}

// RLEpisodeConfig is how the workers of an rl stage run tool episodes: rl.max_tool_calls,
// rl.tool_timeout_s, rl.tool_results_in_loss.
func RLEpisodeConfig(rc configs.RL) EpisodeConfig {
	return EpisodeConfig{MaxToolCalls: rc.MaxToolCalls, Limits: envs.ToolLimits{Timeout: time.Duration(rc.ToolTimeoutS * float64(time.Second))},
		ResultsInLoss: rc.ToolResultsInLoss}
}

// DefaultMaxToolCalls is EpisodeConfig.MaxToolCalls' default.
const DefaultMaxToolCalls = 4

// Reward-part keys with which an episode's statistics travel in data.Trajectory.RewardParts (like
// "correct", they are not summed into the reward).
const (
	PartToolCalls = "tool_calls"      // invokes executed
	PartMalformed = "malformed_calls" // blocks or calls refused: bad DSML, unknown tool, bad arguments
	PartToolError = "tool_errors"     // calls that failed in the tool (time, output, its own error)
	PartTurns     = "turns"           // policy segments (tool-call blocks + the final answer)
)

// CallRecord is one executed (or refused) call of an episode.
type CallRecord struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
	Result    string `json:"result"`
	Error     string `json:"error,omitempty"`
	Malformed bool   `json:"malformed,omitempty"`
}

// Turn is one policy segment: the text it wrote (decoded with special literals) and the calls it made.
type Turn struct {
	Text  string       `json:"text"`
	Calls []CallRecord `json:"calls,omitempty"`
}

// Episode is a decoded multi-turn episode.
type Episode struct {
	Turns []Turn
	// Final is the last segment's text without its EOS: what the verifier reads ("reasoning</think>answer").
	Final                            string
	Finish                           string // "stop" or "length"
	ToolCalls, Malformed, ToolErrors int
	PromptTokens, CompletionTokens   []int32
	LossMask                         []uint8
	// EndedByLimit: a tool-call block came after MaxToolCalls calls; EndedByBudget: the token budget ran out.
	EndedByLimit, EndedByBudget bool

	toolTime      time.Duration
	closeTag      []int32
	maxCalls      int
	resultsInLoss bool
}

// parts returns the episode's statistics as reward parts.
func (e *Episode) parts() map[string]float32 {
	return map[string]float32{PartToolCalls: float32(e.ToolCalls), PartMalformed: float32(e.Malformed),
		PartToolError: float32(e.ToolErrors), PartTurns: float32(len(e.Turns))}
}

// ToolEnv returns the tool environment of the sampler's family, or nil for a single-turn family.
func (g *GroupSampler) ToolEnv() envs.ToolEnv {
	te, _ := g.Family.(envs.ToolEnv)
	return te
}

// RenderTaskPrompt renders the prompt the sampler of fam decodes after: RenderEpisodePrompt for a tool
// environment, RenderPrompt for the others.
func RenderTaskPrompt(tok *data.Tokenizer, fam envs.Family, t envs.Task) ([]int32, error) {
	if te, ok := fam.(envs.ToolEnv); ok {
		return RenderEpisodePrompt(tok, te, t)
	}
	return RenderPrompt(tok, t)
}

// RenderEpisodePrompt renders a tool task's prompt ids: the system message with the tools, the user turn,
// thinking mode (envs.ToolEncodeOptions), with BOS.
func RenderEpisodePrompt(tok *data.Tokenizer, te envs.ToolEnv, t envs.Task) ([]int32, error) {
	return data.EncodeIDs(tok, envs.ToolPrompt(te, t), envs.ToolEncodeOptions())
}

// callsCloseTag is the token sequence that closes a tool-call block: "</" DSML "function_calls>".
func callsCloseTag(tok *data.Tokenizer) []int32 {
	ids := tok.AppendText(nil, "</")
	ids = tok.AppendSpecial(ids, data.DSML)
	return tok.AppendText(ids, "function_calls>")
}

// TokenDrawer picks the policy's next token from the logits: its id, log π_old and kept set (Sampler.Draw).
type TokenDrawer interface {
	Draw(logits []float32, rng *rand.Rand) (int32, float32, []int32)
}

// ForcedDrawer plays Tokens in order (forced decoding), then EOS. Each token's log π_old is the engine's
// log-softmax at Temperature (≤ 0: 1) over the whole vocabulary (an empty kept set), what the learner
// recomputes with rl.temperature and rl.top_p 1.
type ForcedDrawer struct {
	Tokens      []int32
	Temperature float64
	next        int
}

// Draw returns the next forced token.
func (f *ForcedDrawer) Draw(logits []float32, _ *rand.Rand) (int32, float32, []int32) {
	tok := int32(data.EOS)
	if f.next < len(f.Tokens) {
		tok = f.Tokens[f.next]
		f.next++
	}
	if tok < 0 || int(tok) >= len(logits) {
		tok = data.EOS
	}
	return tok, logSoftmaxT(logits, tok, f.Temperature), nil
}

// episodeRecorder records what the learner replays; nil records nothing (greedy evaluation).
type episodeRecorder struct {
	tr *data.Trajectory
	g  *GroupSampler
}

// recordToken appends a completion token's record (before the engine steps it).
func (r *episodeRecorder) recordToken(tok int32, lp float32, kept []int32, mask uint8) {
	if r == nil {
		return
	}
	t := r.tr
	t.CompletionTokens = append(t.CompletionTokens, tok)
	t.LogpOld = append(t.LogpOld, lp)
	t.LossMask = append(t.LossMask, mask)
	t.KeptIDs = append(t.KeptIDs, kept...)
	t.KeptOffsets = append(t.KeptOffsets, int32(len(t.KeptIDs)))
}

// recordPosition appends the experts and selections of the position the engine just stepped.
func (r *episodeRecorder) recordPosition(s *model.Session) {
	if r == nil {
		return
	}
	if len(r.g.moeLayer) > 0 {
		r.tr.ExpertIDs = r.g.appendExperts(r.tr.ExpertIDs, s)
	}
	if r.g.RecordSelection {
		r.tr.DSATopK = appendSelection(r.tr.DSATopK, s)
	}
}

// logSoftmaxT is log softmax(logits/temperature)[id] in float64 (temperature ≤ 0 counts as 1).
func logSoftmaxT(logits []float32, id int32, temperature float64) float32 {
	if temperature <= 0 {
		temperature = 1
	}
	m := math.Inf(-1)
	for _, v := range logits {
		m = math.Max(m, float64(v)/temperature)
	}
	var s float64
	for _, v := range logits {
		s += math.Exp(float64(v)/temperature - m)
	}
	return float32(float64(logits[id])/temperature - m - math.Log(s))
}

// runEpisode decodes one episode from the session s (holding the prompt; dense or DSA as the sampler
// decodes), drawing the policy's tokens with d, and records it in rec (nil: not recorded).
func (g *GroupSampler) runEpisode(ctx context.Context, te envs.ToolEnv, t envs.Task, s *model.Session,
	d TokenDrawer, rng *rand.Rand, rec *episodeRecorder) (*Episode, error) {
	ep := &Episode{Finish: "length", closeTag: callsCloseTag(g.Tok), maxCalls: g.Episode.MaxToolCalls, resultsInLoss: g.Episode.ResultsInLoss}
	if ep.maxCalls <= 0 {
		ep.maxCalls = DefaultMaxToolCalls
	}
	seg := 0 // start of the current policy segment in the completion
	for len(ep.CompletionTokens) < g.MaxNewTokens {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		// 1. the policy's token
		tok, lp, kept := d.Draw(s.Logits, rng)
		rec.recordToken(tok, lp, kept, 1)
		ep.CompletionTokens = append(ep.CompletionTokens, tok)
		ep.LossMask = append(ep.LossMask, 1)
		if err := s.Step(tok, nil); err != nil {
			return nil, fmt.Errorf("rollout: decode: %w", err)
		}
		rec.recordPosition(s)
		segment := ep.CompletionTokens[seg:]
		// 2. the final answer
		if tok == data.EOS {
			ep.Finish = "stop"
			ep.Turns = append(ep.Turns, Turn{Text: g.Tok.Decode(segment)})
			ep.Final = CompletionText(g.Tok, segment)
			return ep, nil
		}
		// 3. a closed tool-call block: run the calls, insert the results
		if !hasSuffix(segment, ep.closeTag) {
			continue
		}
		turn := Turn{Text: g.Tok.Decode(segment)}
		if ep.ToolCalls >= ep.maxCalls {
			ep.Turns = append(ep.Turns, turn)
			ep.EndedByLimit = true
			return ep, nil
		}
		results := ep.execute(ctx, te, g.Tok, segment, &turn, g.Episode.Limits)
		ep.Turns = append(ep.Turns, turn)
		inserted, err := insertedTokens(g.Tok, te, t, results)
		if err != nil {
			return nil, fmt.Errorf("rollout: rendering the results of task %s: %w", t.ID, err)
		}
		if len(ep.CompletionTokens)+len(inserted) > g.MaxNewTokens {
			ep.EndedByBudget = true
			return ep, nil
		}
		for _, id := range inserted {
			mask, lp := uint8(0), float32(0)
			if ep.resultsInLoss {
				mask, lp = 1, logSoftmaxT(s.Logits, id, g.Params.Temperature)
			}
			rec.recordToken(id, lp, nil, mask)
			ep.CompletionTokens = append(ep.CompletionTokens, id)
			ep.LossMask = append(ep.LossMask, mask)
			if err := s.Step(id, nil); err != nil {
				return nil, fmt.Errorf("rollout: prefilling tool results: %w", err)
			}
			rec.recordPosition(s)
		}
		seg = len(ep.CompletionTokens)
	}
	if seg < len(ep.CompletionTokens) {
		ep.Turns = append(ep.Turns, Turn{Text: g.Tok.Decode(ep.CompletionTokens[seg:])})
	}
	ep.EndedByBudget = true
	return ep, nil
}

func hasSuffix(s, suffix []int32) bool {
	return len(s) >= len(suffix) && slices.Equal(s[len(s)-len(suffix):], suffix)
}

// execute parses a segment that closed a tool-call block and runs its calls (at most the episode's remaining
// budget); it returns one tool-message content per result, in order, and records the calls in turn.
func (ep *Episode) execute(ctx context.Context, te envs.ToolEnv, tok *data.Tokenizer, segment []int32, turn *Turn, lim envs.ToolLimits) []string {
	msg, err := data.ParseCompletionIDs(tok, segment, data.ModeThinking)
	if err == nil && len(msg.ToolCalls) == 0 {
		err = errors.New("chat parse: a tool-call block without calls")
	}
	if err != nil {
		ep.Malformed++
		content := "error: " + err.Error()
		turn.Calls = append(turn.Calls, CallRecord{Result: content, Error: err.Error(), Malformed: true})
		return []string{content}
	}
	var out []string
	for _, c := range msg.ToolCalls {
		rec := CallRecord{Name: c.Name, Arguments: c.Arguments}
		var r envs.ToolResult
		if ep.ToolCalls >= ep.maxCalls {
			r = envs.ErrorResult(fmt.Errorf("tool call limit of %d reached", ep.maxCalls))
		} else {
			ep.ToolCalls++
			r = envs.CallTool(ctx, te.Tools(), c.Name, c.Arguments, lim)
			ep.toolTime += r.Elapsed
		}
		rec.Result = r.Content
		if r.Err != nil {
			rec.Error = r.Err.Error()
			if errors.Is(r.Err, envs.ErrUnknownTool) || errors.Is(r.Err, envs.ErrBadArguments) {
				rec.Malformed = true
				ep.Malformed++
			} else {
				ep.ToolErrors++
			}
		}
		turn.Calls = append(turn.Calls, rec)
		out = append(out, r.Content)
	}
	return out
}

// insertedTokens renders what follows the policy's closing tag: the assistant message's EOS and the tool
// messages with the encoder, in the context of the prompt and an assistant turn of len(results) calls.
func insertedTokens(tok *data.Tokenizer, te envs.ToolEnv, t envs.Task, results []string) ([]int32, error) {
	ctxMsgs := envs.ToolPrompt(te, t)
	asst := data.Message{Role: "assistant"}
	tools := make([]data.Message, len(results))
	for i, r := range results {
		asst.ToolCalls = append(asst.ToolCalls, data.ToolCall{Type: "function", Function: data.FunctionCall{Name: "call", Arguments: "{}"}})
		tools[i] = data.Message{Role: "tool", Content: r}
	}
	opt := envs.ToolEncodeOptions()
	opt.Context = append(ctxMsgs, asst)
	ids, err := data.EncodeIDs(tok, tools, opt)
	if err != nil {
		return nil, err
	}
	return append([]int32{data.EOS}, ids...), nil
}

// sampleEpisodes is Sample for a tool environment: G multi-turn episodes of task t from one prefilled prompt
// (the batched sampler's prefill and records, batch.go), decoded one after another: an episode pauses at each
// tool call, so its completions do not advance in lockstep.
func (g *GroupSampler) sampleEpisodes(ctx context.Context, te envs.ToolEnv, t envs.Task, groupID string, version int64, rng *rand.Rand) (*data.Group, error) {
	te = envs.TaskEnv(te, t)
	r, s, err := g.episodeStart(te, GroupRequest{Task: t, GroupID: groupID, Version: version})
	if err != nil {
		return nil, err
	}
	defer g.episodeEnd(r, s)
	grp := &data.Group{GroupID: groupID}
	for range g.GroupSize {
		t0 := time.Now()
		if err := s.CopyFrom(r.prefix); err != nil {
			return nil, err
		}
		tr := g.newTrajectory(r)
		var d TokenDrawer = &Sampler{P: g.Params}
		if g.Episode.Drawer != nil {
			d = g.Episode.Drawer
		}
		ep, err := g.runEpisode(ctx, te, t, s, d, rng, &episodeRecorder{tr: &tr, g: g})
		if err != nil {
			return nil, err
		}
		tr.FinishReason = ep.Finish
		g.grade(&tr, t, ep.Final, ep.Finish)
		withholdFormat(&tr, ep)
		for k, v := range ep.parts() {
			tr.RewardParts[k] = v
		}
		tr.Timings = map[string]float32{"prefill_s": float32(r.prefill.Seconds()), "decode_s": float32(time.Since(t0).Seconds()),
			"tool_s": float32(ep.toolTime.Seconds())}
		grp.Trajectories = append(grp.Trajectories, tr)
	}
	return grp, nil
}

// GreedyEpisode decodes one episode of a tool environment's task greedily (evaluation, trainer sample).
func (g *GroupSampler) GreedyEpisode(ctx context.Context, t envs.Task) (*Episode, error) {
	te := g.ToolEnv()
	if te == nil {
		return nil, fmt.Errorf("rollout: family %s has no tools", g.Family.Name())
	}
	te = envs.TaskEnv(te, t)
	r, s, err := g.episodeStart(te, GroupRequest{Task: t, GroupID: "greedy-" + t.ID, Greedy: true})
	if err != nil {
		return nil, err
	}
	defer g.episodeEnd(r, s)
	if err := s.CopyFrom(r.prefix); err != nil {
		return nil, err
	}
	greedy := &Sampler{P: SamplingParams{Temperature: 0, TopP: 1}}
	ep, err := g.runEpisode(ctx, te, t, s, greedy, nil, nil)
	if err != nil {
		return nil, err
	}
	ep.PromptTokens = r.prompt
	return ep, nil
}

// episodeStart renders the episode prompt of req's task (with the tools block), prefills it once into a
// session of the sampler's pool and takes a second session to decode the episodes in.
func (g *GroupSampler) episodeStart(te envs.ToolEnv, req GroupRequest) (*groupRun, *model.Session, error) {
	if err := g.init(); err != nil {
		return nil, nil, err
	}
	if !req.Greedy {
		if err := g.Params.Validate(); err != nil {
			return nil, nil, err
		}
	}
	prompt, err := RenderEpisodePrompt(g.Tok, te, req.Task)
	if err != nil {
		return nil, nil, fmt.Errorf("rollout: rendering task %s: %w", req.Task.ID, err)
	}
	maxLen := len(prompt) + g.MaxNewTokens
	if maxLen > g.Engine.Cfg.MaxPositionEmbeddings {
		return nil, nil, fmt.Errorf("rollout: prompt (%d tokens) + max_new_tokens (%d) exceed max_position_embeddings %d", len(prompt), g.MaxNewTokens, g.Engine.Cfg.MaxPositionEmbeddings)
	}
	prefix, err := g.session(maxLen)
	if err != nil {
		return nil, nil, err
	}
	r := &groupRun{req: req, prompt: prompt, prefix: prefix, params: g.Params}
	if err := g.prefill(r); err != nil {
		g.dec.spare = append(g.dec.spare, prefix)
		return nil, nil, err
	}
	s, err := g.session(maxLen)
	if err != nil {
		g.dec.spare = append(g.dec.spare, prefix)
		return nil, nil, err
	}
	return r, s, nil
}

// episodeEnd gives an episode's sessions back to the pool.
func (g *GroupSampler) episodeEnd(r *groupRun, s *model.Session) {
	g.dec.spare = append(g.dec.spare, r.prefix, s)
}

// grade sets the trajectory's reward from the family's verifier on the text it reads.
func (g *GroupSampler) grade(tr *data.Trajectory, t envs.Task, text, finish string) {
	rw := g.Family.Verify(t, text, finish)
	tr.Reward = float32(rw.Total)
	tr.RewardParts = map[string]float32{}
	for k, v := range rw.Parts {
		tr.RewardParts[k] = float32(v)
	}
	tr.RewardParts["correct"] = 0
	if rw.Correct {
		tr.RewardParts["correct"] = 1
	}
}

// withholdFormat applies the tool episodes' format rule to a graded trajectory: an episode that answers
// without a single tool call gets no format reward (envs reward.go: format = Format when the structure is
// right; for a tool task, a structure without a call is not right). Total = correctness + format +
// length_penalty stays the sum of its parts; a right answer without a call keeps its correctness. Without
// this rule a policy that cannot yet use the tools collects the format reward by skipping them (measured:
// greedy no_call_rate 0.06 → 0.36, rollout tool calls 0.89 → 0.22 over 16 GRPO steps of the agent recipe
// at 0 % accuracy).
func withholdFormat(tr *data.Trajectory, ep *Episode) {
	if ep.ToolCalls > 0 {
		return
	}
	tr.Reward -= tr.RewardParts[envs.PartFormat]
	tr.RewardParts[envs.PartFormat] = 0
}

// EpisodeTurns recovers the turns of a recorded episode from its completion tokens: a policy segment ends at
// the tag closing a tool-call block, and the inserted EOS and results run up to the <think> that reopens
// the reasoning; each segment's calls are parsed with the chat parser and paired, in order, with the
// results of the block that follows it. A single-turn completion is one turn without calls.
func EpisodeTurns(tok *data.Tokenizer, completion []int32) []Turn {
	closeTag := callsCloseTag(tok)
	var turns []Turn
	seg := 0
	for i := 0; i < len(completion); i++ {
		if !hasSuffix(completion[seg:i+1], closeTag) {
			continue
		}
		turn := Turn{Text: tok.Decode(completion[seg : i+1])}
		j := i + 1
		for j < len(completion) && completion[j] != data.ThinkBeg {
			j++
		}
		results := resultTexts(tok.Decode(completion[i+1 : min(j, len(completion))]))
		var calls []data.ParsedCall
		if pm, err := data.ParseCompletionIDs(tok, completion[seg:i+1], data.ModeThinking); err == nil {
			calls = pm.ToolCalls
		}
		for k, r := range results {
			c := CallRecord{Result: r}
			if k < len(calls) {
				c.Name, c.Arguments = calls[k].Name, calls[k].Arguments
			} else {
				c.Malformed = len(calls) == 0
			}
			turn.Calls = append(turn.Calls, c)
		}
		turns = append(turns, turn)
		seg, i = min(j+1, len(completion)), j
	}
	if seg < len(completion) {
		turns = append(turns, Turn{Text: tok.Decode(completion[seg:])})
	}
	return turns
}

// resultTexts returns the contents of the <result> elements of a rendered results block, in order.
func resultTexts(s string) []string {
	var out []string
	for {
		_, rest, ok := strings.Cut(s, "\n<result>")
		if !ok {
			return out
		}
		r, after, ok := strings.Cut(rest, "</result>")
		if !ok {
			return append(out, r)
		}
		out = append(out, r)
		s = after
	}
}

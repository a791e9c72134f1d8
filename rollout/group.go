// group.go: GRPO group sampling. A prompt is rendered in the DeepSeek-V3.2 chat format (thinking mode: it
// ends with <｜Assistant｜><think>), prefilled once, and G completions are sampled from copies of that cache.
// For every completion token the group records the sampler's log-probability (π_old), the kept set (Keep
// Sampling Mask) and, for every position fed to the engine, the MoE experts chosen (Keep Routing); rewards
// come from the task family's verifier.
package rollout

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/envs"
	"github.com/sparrow-rl/sparrow/model"
)

// GroupSampler samples groups with one engine. It is not safe for concurrent use: give each worker its own.
type GroupSampler struct {
	Engine       *model.Engine
	Tok          *data.Tokenizer
	Family       envs.Family
	Params       SamplingParams
	GroupSize    int
	MaxNewTokens int
	WorkerID     string

	prefix   *model.Session
	session  *model.Session
	sampler  Sampler
	moeLayer []int // decoder layer of each MoE layer, in order
}

// RenderPrompt renders a task's prompt ids: a single user turn, thinking mode, with BOS.
func RenderPrompt(tok *data.Tokenizer, t envs.Task) ([]int32, error) {
	return data.EncodeIDs(tok, []data.Message{{Role: "user", Content: t.Prompt}}, data.DefaultEncodeOptions(data.ModeThinking))
}

// CompletionText is the text a verifier reads: the completion decoded with special literals, without EOS.
func CompletionText(tok *data.Tokenizer, completion []int32) string {
	ids := completion
	if n := len(ids); n > 0 && ids[n-1] == data.EOS {
		ids = ids[:n-1]
	}
	return tok.Decode(ids)
}

func (g *GroupSampler) init(maxLen int) error {
	if g.prefix != nil && g.prefix.MaxLen >= maxLen {
		return nil
	}
	var err error
	if g.prefix, err = g.Engine.NewSession(maxLen); err != nil {
		return err
	}
	if g.session, err = g.Engine.NewSession(maxLen); err != nil {
		return err
	}
	g.sampler.P = g.Params
	c := g.Engine.Cfg
	g.moeLayer = g.moeLayer[:0]
	for l := 0; l < c.NumHiddenLayers; l++ {
		if c.IsMoE(l) {
			g.moeLayer = append(g.moeLayer, l)
		}
	}
	return nil
}

// appendExperts appends the experts the session chose at its last position, [moe_layer][k].
func (g *GroupSampler) appendExperts(dst []uint16, s *model.Session) []uint16 {
	for _, l := range g.moeLayer {
		for _, id := range s.Experts[l] {
			dst = append(dst, uint16(id))
		}
	}
	return dst
}

// Sample draws G completions of task t with the policy version the engine's weights hold.
func (g *GroupSampler) Sample(ctx context.Context, t envs.Task, groupID string, version int64, rng *rand.Rand) (*data.Group, error) {
	if err := g.Params.Validate(); err != nil {
		return nil, err
	}
	prompt, err := RenderPrompt(g.Tok, t)
	if err != nil {
		return nil, fmt.Errorf("rollout: rendering task %s: %w", t.ID, err)
	}
	maxLen := len(prompt) + g.MaxNewTokens
	if maxLen > g.Engine.Cfg.MaxPositionEmbeddings {
		return nil, fmt.Errorf("rollout: prompt (%d tokens) + max_new_tokens (%d) exceed max_position_embeddings %d", len(prompt), g.MaxNewTokens, g.Engine.Cfg.MaxPositionEmbeddings)
	}
	if err := g.init(maxLen); err != nil {
		return nil, err
	}
	start := time.Now()
	g.prefix.Reset()
	promptExperts := make([]uint16, 0, len(prompt)*len(g.moeLayer)*g.Engine.Cfg.NumExpertsPerTok)
	perPos := make([][][]int32, len(prompt))
	if err := g.prefix.PrefillBatch(prompt, perPos); err != nil {
		return nil, fmt.Errorf("rollout: prefill: %w", err)
	}
	for _, ex := range perPos {
		for _, l := range g.moeLayer {
			for _, id := range ex[l] {
				promptExperts = append(promptExperts, uint16(id))
			}
		}
	}
	prefill := time.Since(start)
	grp := &data.Group{GroupID: groupID}
	for i := 0; i < g.GroupSize; i++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		t0 := time.Now()
		s := g.session
		s.CopyFrom(g.prefix)
		tr := data.Trajectory{GroupID: groupID, PromptID: t.ID, Env: g.Family.Name(), PolicyVersion: version, WorkerID: g.WorkerID,
			PromptTokens: prompt, KeptOffsets: []int32{0}, MoELayers: len(g.moeLayer), TopK: g.Engine.Cfg.NumExpertsPerTok}
		tr.ExpertIDs = append(make([]uint16, 0, len(promptExperts)+g.MaxNewTokens*len(g.moeLayer)*tr.TopK), promptExperts...)
		if len(g.moeLayer) == 0 {
			tr.ExpertIDs, tr.TopK = nil, 0
		}
		tr.FinishReason = "length"
		for n := 0; n < g.MaxNewTokens; n++ {
			tok, lp, kept := g.sampler.Draw(s.Logits, rng)
			tr.CompletionTokens = append(tr.CompletionTokens, tok)
			tr.LogpOld = append(tr.LogpOld, lp)
			tr.LossMask = append(tr.LossMask, 1)
			tr.KeptIDs = append(tr.KeptIDs, kept...)
			tr.KeptOffsets = append(tr.KeptOffsets, int32(len(tr.KeptIDs)))
			if err := s.Step(tok, nil); err != nil {
				return nil, fmt.Errorf("rollout: decode: %w", err)
			}
			if len(g.moeLayer) > 0 {
				tr.ExpertIDs = g.appendExperts(tr.ExpertIDs, s)
			}
			if tok == data.EOS {
				tr.FinishReason = "stop"
				break
			}
		}
		text := CompletionText(g.Tok, tr.CompletionTokens)
		rw := g.Family.Verify(t, text, tr.FinishReason)
		tr.Reward = float32(rw.Total)
		tr.RewardParts = map[string]float32{}
		for k, v := range rw.Parts {
			tr.RewardParts[k] = float32(v)
		}
		if rw.Correct {
			tr.RewardParts["correct"] = 1
		} else {
			tr.RewardParts["correct"] = 0
		}
		tr.Timings = map[string]float32{"prefill_s": float32(prefill.Seconds()), "decode_s": float32(time.Since(t0).Seconds())}
		grp.Trajectories = append(grp.Trajectories, tr)
	}
	return grp, nil
}

// Greedy decodes one completion greedily (for evaluation) and returns its text and finish reason.
func (g *GroupSampler) Greedy(t envs.Task) (string, string, error) {
	prompt, err := RenderPrompt(g.Tok, t)
	if err != nil {
		return "", "", err
	}
	if err := g.init(len(prompt) + g.MaxNewTokens); err != nil {
		return "", "", err
	}
	s := g.session
	s.Reset()
	for _, id := range prompt {
		if err := s.Step(id, nil); err != nil {
			return "", "", err
		}
	}
	greedy := Sampler{P: SamplingParams{Temperature: 0, TopP: 1}}
	var out []int32
	finish := "length"
	for n := 0; n < g.MaxNewTokens; n++ {
		tok, _, _ := greedy.Draw(s.Logits, nil)
		out = append(out, tok)
		if tok == data.EOS {
			finish = "stop"
			break
		}
		if err := s.Step(tok, nil); err != nil {
			return "", "", err
		}
	}
	return CompletionText(g.Tok, out), finish, nil
}

var _ = strings.TrimSpace

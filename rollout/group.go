// group.go: GRPO group sampling. A prompt is rendered in the DeepSeek-V3.2 chat format (thinking mode: it
// ends with <｜Assistant｜><think>), prefilled once, and G completions are sampled from copies of that cache.
// For every completion token the group records the sampler's log-probability (π_old), the kept set (Keep
// Sampling Mask) and, for every position fed to the engine, the MoE experts chosen (Keep Routing); rewards
// come from the task family's verifier. A policy trained with DeepSeek Sparse Attention (stage dsa_sparse)
// decodes sparsely (Sparse), prompt included, token by token (the engine has no batched sparse prefill); its
// selected key positions per layer can be recorded at every position (RecordSelection, dsa_topk) for the
// learner to replay (Keep Selection).

package rollout

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/envs"
	"github.com/sparrow-rl/sparrow/model"
)

// SamplerConfig says how a GroupSampler decodes.
type SamplerConfig struct {
	Params       SamplingParams
	GroupSize    int
	MaxNewTokens int
	// Sparse decodes with DeepSeek Sparse Attention keeping SparseTopK keys per query (0 = model.index_topk);
	// set it when the policy was trained sparse, so that rollout and learner attend alike. RecordSelection
	// (with Sparse) records every position's selected keys per layer in the trajectory's dsa_topk.
	Sparse          bool
	SparseTopK      int
	RecordSelection bool
	// Episode says how the episodes of a tool environment (envs.ToolEnv) run: multi-turn, episode.go.
	Episode EpisodeConfig
}

// RLSamplerConfig is how the workers of an rl stage decode: its rl section's sampling, group size and
// length, with the policy's attention (sparse with sparseTopK keys, recording the selections when the
// learner replays them, rl.keep_selection).
func RLSamplerConfig(rc configs.RL, sparse bool, sparseTopK int) SamplerConfig {
	return SamplerConfig{Params: SamplingParams{Temperature: rc.Temperature, TopP: rc.TopP, TopK: rc.TopK},
		GroupSize: rc.GroupSize, MaxNewTokens: rc.MaxNewTokens, Sparse: sparse, SparseTopK: sparseTopK, RecordSelection: sparse && rc.KeepSelection,
		Episode: RLEpisodeConfig(rc)}
}

// GroupSampler samples groups with one engine. It is not safe for concurrent use: give each worker its own.
type GroupSampler struct {
	Engine   *model.Engine
	Tok      *data.Tokenizer
	Family   envs.Family
	WorkerID string
	SamplerConfig

	prefix            *model.Session
	session           *model.Session
	dprefix, dsession *model.DSASession // Sparse: prefix and session are these sessions' embedded ones
	sampler           Sampler
	moeLayer          []int // decoder layer of each MoE layer, in order
}

// NewGroupSampler returns a sampler of the family's tasks decoding with eng as c says; workerID names it in
// the trajectories it records.
func NewGroupSampler(eng *model.Engine, tok *data.Tokenizer, fam envs.Family, workerID string, c SamplerConfig) *GroupSampler {
	return &GroupSampler{Engine: eng, Tok: tok, Family: fam, WorkerID: workerID, SamplerConfig: c}
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
	if g.RecordSelection && !g.Sparse {
		return fmt.Errorf("rollout: recording DSA selections needs sparse decoding (GroupSampler.Sparse)")
	}
	if g.Sparse {
		if g.dprefix, err = g.Engine.NewDSASession(maxLen, g.SparseTopK); err != nil {
			return fmt.Errorf("rollout: sparse decoding: %w", err)
		}
		if g.dsession, err = g.Engine.NewDSASession(maxLen, g.SparseTopK); err != nil {
			return fmt.Errorf("rollout: sparse decoding: %w", err)
		}
		g.prefix, g.session = g.dprefix.Session, g.dsession.Session
	} else {
		if g.prefix, err = g.Engine.NewSession(maxLen); err != nil {
			return err
		}
		if g.session, err = g.Engine.NewSession(maxLen); err != nil {
			return err
		}
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

// step decodes one token with the session s (whose DSA session is ds when sparse), no routes forced.
func (g *GroupSampler) step(s *model.Session, ds *model.DSASession, tok int32) error {
	if g.Sparse {
		return ds.Step(tok, nil, nil)
	}
	return s.Step(tok, nil)
}

// appendSelection appends the key positions every layer selected at ds's last position, [layer][k].
func appendSelection(dst []int32, ds *model.DSASession) []int32 {
	for _, sel := range ds.Selected {
		dst = append(dst, sel...)
	}
	return dst
}

// Sample draws G completions of task t with the policy version the engine's weights hold.
func (g *GroupSampler) Sample(ctx context.Context, t envs.Task, groupID string, version int64, rng *rand.Rand) (*data.Group, error) {
	if err := g.Params.Validate(); err != nil {
		return nil, err
	}
	if te := g.ToolEnv(); te != nil {
		return g.sampleEpisodes(ctx, te, t, groupID, version, rng)
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
	var promptSel []int32
	if g.Sparse {
		for _, id := range prompt {
			if err := g.dprefix.Step(id, nil, nil); err != nil {
				return nil, fmt.Errorf("rollout: sparse prefill: %w", err)
			}
			promptExperts = g.appendExperts(promptExperts, g.prefix)
			if g.RecordSelection {
				promptSel = appendSelection(promptSel, g.dprefix)
			}
		}
	} else {
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
	}
	prefill := time.Since(start)
	grp := &data.Group{GroupID: groupID}
	for i := 0; i < g.GroupSize; i++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		t0 := time.Now()
		s := g.session
		if g.Sparse {
			if err := g.dsession.CopyFrom(g.dprefix); err != nil {
				return nil, err
			}
		} else {
			s.CopyFrom(g.prefix)
		}
		tr := data.Trajectory{GroupID: groupID, PromptID: t.ID, Env: g.Family.Name(), PolicyVersion: version, WorkerID: g.WorkerID,
			PromptTokens: prompt, KeptOffsets: []int32{0}, MoELayers: len(g.moeLayer), TopK: g.Engine.Cfg.NumExpertsPerTok}
		tr.ExpertIDs = append(make([]uint16, 0, len(promptExperts)+g.MaxNewTokens*len(g.moeLayer)*tr.TopK), promptExperts...)
		if len(g.moeLayer) == 0 {
			tr.ExpertIDs, tr.TopK = nil, 0
		}
		if g.RecordSelection {
			tr.DSALayers, tr.DSAK = len(g.dsession.Selected), g.dsession.TopK
			tr.DSATopK = append(make([]int32, 0, len(promptSel)+g.MaxNewTokens*tr.DSALayers*tr.DSAK), promptSel...)
		}
		tr.FinishReason = "length"
		for n := 0; n < g.MaxNewTokens; n++ {
			tok, lp, kept := g.sampler.Draw(s.Logits, rng)
			tr.CompletionTokens = append(tr.CompletionTokens, tok)
			tr.LogpOld = append(tr.LogpOld, lp)
			tr.LossMask = append(tr.LossMask, 1)
			tr.KeptIDs = append(tr.KeptIDs, kept...)
			tr.KeptOffsets = append(tr.KeptOffsets, int32(len(tr.KeptIDs)))
			if err := g.step(s, g.dsession, tok); err != nil {
				return nil, fmt.Errorf("rollout: decode: %w", err)
			}
			if len(g.moeLayer) > 0 {
				tr.ExpertIDs = g.appendExperts(tr.ExpertIDs, s)
			}
			if g.RecordSelection {
				tr.DSATopK = appendSelection(tr.DSATopK, g.dsession)
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
	if g.ToolEnv() != nil {
		ep, err := g.GreedyEpisode(context.Background(), t)
		if err != nil {
			return "", "", err
		}
		return ep.Final, ep.Finish, nil
	}
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
		if err := g.step(s, g.dsession, id); err != nil {
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
		if err := g.step(s, g.dsession, tok); err != nil {
			return "", "", err
		}
	}
	return CompletionText(g.Tok, out), finish, nil
}

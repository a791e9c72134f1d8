// group.go: GRPO group sampling. A prompt is rendered in the DeepSeek-V3.2 chat format (thinking mode: it
// ends with <｜Assistant｜><think>), prefilled once, and G completions are sampled from copies of that cache,
// decoded together with other groups' completions (continuous batching, batch.go).
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
	// DecodeBatch is the number of completions decoded together (rl.decode_batch; 0 = 1).
	DecodeBatch int
	// Episode says how the episodes of a tool environment (envs.ToolEnv) run: multi-turn, episode.go.
	Episode EpisodeConfig
}

// RLSamplerConfig is how the workers of an rl stage decode: its rl section's sampling, group size, length
// and decode batch, with the policy's attention (sparse with sparseTopK keys, recording the selections when
// the learner replays them, rl.keep_selection).
func RLSamplerConfig(rc configs.RL, sparse bool, sparseTopK int) SamplerConfig {
	return SamplerConfig{Params: SamplingParams{Temperature: rc.Temperature, TopP: rc.TopP, TopK: rc.TopK},
		GroupSize: rc.GroupSize, MaxNewTokens: rc.MaxNewTokens, Sparse: sparse, SparseTopK: sparseTopK, RecordSelection: sparse && rc.KeepSelection,
		DecodeBatch: rc.DecodeBatch, Episode: RLEpisodeConfig(rc)}
}

// GroupSampler samples groups with one engine, decoding up to DecodeBatch completions together (batch.go).
// It is not safe for concurrent use: give each worker its own.
type GroupSampler struct {
	Engine   *model.Engine
	Tok      *data.Tokenizer
	Family   envs.Family
	WorkerID string
	SamplerConfig

	dec      decoder
	ready    bool
	moeLayer []int // decoder layer of each MoE layer, in order
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

func (g *GroupSampler) init() error {
	if g.ready {
		return nil
	}
	if g.RecordSelection && !g.Sparse {
		return fmt.Errorf("rollout: recording DSA selections needs sparse decoding (GroupSampler.Sparse)")
	}
	if g.Sparse && g.Engine.Cfg.IndexNHeads <= 0 {
		return fmt.Errorf("rollout: sparse decoding: engine: DSA decode needs an indexer (model.index_n_heads is 0)")
	}
	c := g.Engine.Cfg
	g.moeLayer = g.moeLayer[:0]
	for l := 0; l < c.NumHiddenLayers; l++ {
		if c.IsMoE(l) {
			g.moeLayer = append(g.moeLayer, l)
		}
	}
	g.ready = true
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

// appendSelection appends the key positions every layer selected at s's last position, [layer][k].
func appendSelection(dst []int32, s *model.Session) []int32 {
	for _, sel := range s.Selected {
		dst = append(dst, sel...)
	}
	return dst
}

// Sample draws G completions of task t with the policy version the engine's weights hold, decoding them
// together (DecodeBatch at a time). The sampler must have no other group admitted.
func (g *GroupSampler) Sample(ctx context.Context, t envs.Task, groupID string, version int64, rng *rand.Rand) (*data.Group, error) {
	if te := g.ToolEnv(); te != nil {
		return g.sampleEpisodes(ctx, te, t, groupID, version, rng)
	}
	out, err := g.Run(ctx, []GroupRequest{{Task: t, GroupID: groupID, Version: version, RNG: rng}})
	if err != nil {
		return nil, err
	}
	return out[0], nil
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
	out, err := g.Run(context.Background(), []GroupRequest{{Task: t, GroupID: "greedy-" + t.ID, Greedy: true}})
	if err != nil {
		return "", "", err
	}
	tr := out[0].Trajectories[0]
	return CompletionText(g.Tok, tr.CompletionTokens), tr.FinishReason, nil
}

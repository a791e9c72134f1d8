// stream.go: the stream half of `trainer bench transport`: realistic groups (G completions of
// ~100 tokens, the model's MoE expert ids for every position, top-k kept sets) pushed through an embedded
// server's trajectory stream by a worker client and pulled and decoded by a learner, timed part by part,
// and the default model's weights published to and fetched from the object store.

package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/model"
	"github.com/sparrow-rl/sparrow/rollout/natsbus"
)

// StreamOptions shape the stream benchmark.
type StreamOptions struct {
	Model            configs.Model
	Groups           int // groups pushed through the stream
	GroupSize        int // G
	PromptTokens     int
	CompletionTokens int
	TopK             int // kept-set size per token (0 = whole vocabulary)
}

// StreamResult is what BenchStream measured.
type StreamResult struct {
	Groups        int     `json:"groups"`
	GroupSize     int     `json:"group_size"`
	Tokens        int     `json:"completion_tokens"`
	GroupBytes    float64 `json:"group_bytes_mean"`
	GroupsPerS    float64 `json:"groups_per_s"`
	MBPerS        float64 `json:"mb_per_s"`
	EncodeMs      float64 `json:"encode_ms_per_group"`
	PublishMs     float64 `json:"publish_ms_per_group"`
	DecodeMs      float64 `json:"decode_ms_per_group"`
	EndToEndMs    float64 `json:"end_to_end_ms_per_group"` // wall time / groups, encode to decoded
	WeightsBytes  int64   `json:"weights_bytes"`
	WeightsPutS   float64 `json:"weights_publish_s"`
	WeightsFetchS float64 `json:"weights_fetch_s"`
}

// BenchGroup builds a realistic group for a model config.
func BenchGroup(id string, c configs.Model, o StreamOptions, rng *rand.Rand) *data.Group {
	moe := 0
	for l := 0; l < c.NumHiddenLayers; l++ {
		if l >= c.FirstKDenseReplace {
			moe++
		}
	}
	g := &data.Group{GroupID: id}
	prompt := make([]int32, o.PromptTokens)
	for i := range prompt {
		prompt[i] = int32(rng.IntN(c.VocabSize))
	}
	for i := 0; i < o.GroupSize; i++ {
		n := o.CompletionTokens - 10 + rng.IntN(21)
		tr := data.Trajectory{GroupID: id, PromptID: "bench", Env: "math", PolicyVersion: 1, WorkerID: "bench", PromptTokens: prompt,
			KeptOffsets: []int32{0}, MoELayers: moe, TopK: c.NumExpertsPerTok, Reward: float32(rng.IntN(2)),
			RewardParts: map[string]float32{"correct": 1, "format": 0.1}, FinishReason: "stop", Timings: map[string]float32{"decode_s": 0.1}}
		for k := 0; k < n; k++ {
			tr.CompletionTokens = append(tr.CompletionTokens, int32(rng.IntN(c.VocabSize)))
			tr.LossMask = append(tr.LossMask, 1)
			tr.LogpOld = append(tr.LogpOld, -rng.Float32()*3)
			if o.TopK > 0 {
				for _, id := range rng.Perm(c.VocabSize)[:o.TopK] {
					tr.KeptIDs = append(tr.KeptIDs, int32(id))
				}
				s := tr.KeptIDs[tr.KeptOffsets[k]:]
				for a := 1; a < len(s); a++ { // insertion sort: kept sets are sorted
					for b := a; b > 0 && s[b] < s[b-1]; b-- {
						s[b], s[b-1] = s[b-1], s[b]
					}
				}
				tr.CompletionTokens[k] = s[rng.IntN(len(s))] // the sampled token lies in its kept set
			}
			tr.KeptOffsets = append(tr.KeptOffsets, int32(len(tr.KeptIDs)))
		}
		for p := 0; p < (len(prompt)+n)*moe*c.NumExpertsPerTok; p++ {
			tr.ExpertIDs = append(tr.ExpertIDs, uint16(rng.IntN(max(c.NRoutedExperts, 1))))
		}
		g.Trajectories = append(g.Trajectories, tr)
	}
	return g
}

// BenchStream runs the stream benchmark against an embedded server in a temporary directory.
func BenchStream(ctx context.Context, o StreamOptions) (StreamResult, error) {
	dir, err := os.MkdirTemp("", "sparrow-bench-nats")
	if err != nil {
		return StreamResult{}, err
	}
	defer os.RemoveAll(dir)
	b := configs.DefaultBus()
	e, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{StoreDir: filepath.Join(dir, "store"), MaxPayload: b.MaxPayload})
	if err != nil {
		return StreamResult{}, err
	}
	defer e.Shutdown()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	nc, err := natsbus.Connect(natsbus.ConnOptions{URL: e.URL(), Log: log})
	if err != nil {
		return StreamResult{}, err
	}
	defer nc.Close()
	names := natsbus.NewNames("bench", "rl")
	vocab := o.Model.VocabSize
	l, err := natsbus.NewLearner(ctx, nc, names, b, vocab, 0, log)
	if err != nil {
		return StreamResult{}, err
	}
	defer l.Close()
	w, err := natsbus.NewWorkerClient(ctx, nc, names, b, vocab, "bench", log)
	if err != nil {
		return StreamResult{}, err
	}
	defer w.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	groups := make([]*data.Group, o.Groups)
	ids := make([]string, o.Groups)
	tokens := 0
	for i := range groups {
		groups[i] = BenchGroup(fmt.Sprintf("bench-%06d", i), o.Model, o, rng)
		ids[i] = groups[i].GroupID
		for _, t := range groups[i].Trajectories {
			tokens += len(t.CompletionTokens)
		}
	}
	l.Expect(ids...) // without publishing prompts (no workers sample here)
	for _, id := range ids {
		w.Grant(id, l.JobToken(id))
	}
	start := time.Now()
	errc := make(chan error, 1)
	go func() {
		for _, g := range groups {
			if err := w.Publish(ctx, g); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	got, err := l.Collect(ctx, o.Groups)
	if err != nil {
		return StreamResult{}, err
	}
	wall := time.Since(start)
	if err := <-errc; err != nil {
		return StreamResult{}, err
	}
	for _, g := range got {
		if len(g.Trajectories) != o.GroupSize {
			return StreamResult{}, fmt.Errorf("bench: group %s came back with %d trajectories (refused as oversize?)", g.GroupID, len(g.Trajectories))
		}
	}
	_, dec, _, bytes, _ := l.Timings()
	n := float64(o.Groups)
	r := StreamResult{Groups: o.Groups, GroupSize: o.GroupSize, Tokens: tokens, GroupBytes: float64(bytes) / n,
		GroupsPerS: n / wall.Seconds(), MBPerS: float64(bytes) / 1e6 / wall.Seconds(),
		EncodeMs: float64(w.EncodeNs.Load()) / 1e6 / n, PublishMs: float64(w.PublishNs.Load()) / 1e6 / n,
		DecodeMs: dec.Seconds() * 1e3 / n, EndToEndMs: wall.Seconds() * 1e3 / n}
	// weights of the model
	p := model.NewParams(o.Model)
	p.Init(1)
	pub, err := natsbus.NewWeightPublisher(ctx, nc, names, b, natsbus.Policy{Attention: configs.AttentionDense}, log)
	if err != nil {
		return r, err
	}
	notice, err := pub.Publish(ctx, 1, p)
	if err != nil {
		return r, err
	}
	f, err := natsbus.NewWeightFetcher(nc, names, b, log)
	if err != nil {
		return r, err
	}
	if _, _, err := f.Fetch(ctx, notice); err != nil {
		return r, err
	}
	r.WeightsBytes, r.WeightsPutS, r.WeightsFetchS = notice.Bytes, pub.LastPut.Seconds(), f.LastGet.Seconds()
	return r, nil
}

// stream_test.go: the stream half of `trainer bench transport` (stream.go) with a few small groups of the tiny
// model: every group comes back whole, and the counts and rates are consistent.

package bench

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/sparrow-rl/sparrow/configs"
	"github.com/sparrow-rl/sparrow/data"
	"github.com/sparrow-rl/sparrow/model"
	"github.com/sparrow-rl/sparrow/rollout/natsbus"
)

func TestBenchStreamTiny(t *testing.T) {
	c := loadModel(t, "tiny")
	o := StreamOptions{Model: c, Groups: 4, GroupSize: 2, PromptTokens: 8, CompletionTokens: 20, TopK: 5}
	r, err := BenchStream(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if r.Groups != 4 || r.GroupSize != 2 {
		t.Fatalf("groups %d × %d, asked 4 × 2", r.Groups, r.GroupSize)
	}
	// Completions are CompletionTokens ± 10 long.
	if r.Tokens < 4*2*10 || r.Tokens > 4*2*30 {
		t.Errorf("completion tokens %d outside [%d, %d]", r.Tokens, 4*2*10, 4*2*30)
	}
	for k, v := range map[string]float64{"group_bytes_mean": r.GroupBytes, "groups_per_s": r.GroupsPerS, "mb_per_s": r.MBPerS,
		"encode_ms_per_group": r.EncodeMs, "publish_ms_per_group": r.PublishMs, "decode_ms_per_group": r.DecodeMs,
		"end_to_end_ms_per_group": r.EndToEndMs, "weights_publish_s": r.WeightsPutS, "weights_fetch_s": r.WeightsFetchS} {
		if !(v > 0) {
			t.Errorf("%s = %v, want positive", k, v)
		}
	}
	if d := r.EndToEndMs - 1e3/r.GroupsPerS; d > 1e-9 || d < -1e-9 {
		t.Errorf("end to end %v ms per group, groups/s %v", r.EndToEndMs, r.GroupsPerS)
	}
	p := model.NewParams(c)
	p.Init(1)
	if want := int64(len(natsbus.EncodeWeights(p, natsbus.Policy{Attention: configs.AttentionDense}))); r.WeightsBytes != want {
		t.Errorf("weights %d bytes published, the encoding has %d", r.WeightsBytes, want)
	}
}

// TestBenchGroupShape: a bench group has the asked size, kept sets of TopK sorted ids per completion token, and
// expert ids for every position of every MoE layer.
func TestBenchGroupShape(t *testing.T) {
	c := loadModel(t, "tiny")
	o := StreamOptions{GroupSize: 3, PromptTokens: 8, CompletionTokens: 20, TopK: 5}
	g := BenchGroup("g", c, o, rand.New(rand.NewPCG(1, 2)))
	if g.GroupID != "g" || len(g.Trajectories) != 3 {
		t.Fatalf("group %s with %d trajectories", g.GroupID, len(g.Trajectories))
	}
	moe := 0
	for l := 0; l < c.NumHiddenLayers; l++ {
		if c.IsMoE(l) {
			moe++
		}
	}
	for i, tr := range g.Trajectories {
		n := len(tr.CompletionTokens)
		if n < 10 || n > 30 || len(tr.LossMask) != n || len(tr.LogpOld) != n || len(tr.KeptOffsets) != n+1 || len(tr.KeptIDs) != 5*n {
			t.Fatalf("trajectory %d: %d tokens, mask %d, logp %d, kept offsets %d, kept ids %d", i, n, len(tr.LossMask), len(tr.LogpOld), len(tr.KeptOffsets), len(tr.KeptIDs))
		}
		for k := 0; k < n; k++ {
			s := tr.KeptIDs[tr.KeptOffsets[k]:tr.KeptOffsets[k+1]]
			for a := 1; a < len(s); a++ {
				if s[a] <= s[a-1] {
					t.Fatalf("trajectory %d token %d: kept set %v not sorted", i, k, s)
				}
			}
		}
		if want := (8 + n) * moe * c.NumExpertsPerTok; len(tr.ExpertIDs) != want || tr.MoELayers != moe {
			t.Fatalf("trajectory %d: %d expert ids over %d MoE layers, want %d over %d", i, len(tr.ExpertIDs), tr.MoELayers, want, moe)
		}
	}
	if _, err := data.EncodeGroup(g, c.VocabSize); err != nil {
		t.Fatalf("bench group does not encode: %v", err)
	}
}
